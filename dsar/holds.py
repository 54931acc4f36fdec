"""The hook through which legal holds stop an erasure (GDPR Art. 17(3): legal obligation,
legal claims, archiving...), answered by the retention app's legal holds.

Contract:
- called when an erasure starts, once, inside the transaction that creates its source tasks;
- returns ``{log_source_id: reason}`` for every enabled log source whose data for this
  request's subject must be kept; the reason is shown to the subject, so it names the
  exception that applies (e.g. "GDPR Art. 17(3)(e): defence of legal claims") and holds
  no personal data;
- a source named here gets a task in state ``held``: nothing in it is erased, it is not
  counted against completion, and the certificate and the completion notice list it with
  its reason. The subject row itself is then kept as well, so the erasure can be run again
  when the hold is lifted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dsar.models import DataSubjectRequest


def held_sources_for(request: DataSubjectRequest) -> dict[int, str]:
    """Log sources a legal hold covers for this request's subject."""
    from compliance.retention.selectors import held_sources_for_subject

    if request.subject_id is None:
        return {}
    return held_sources_for_subject(subject=request.subject_id)
