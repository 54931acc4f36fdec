"""The DSAR side of the connector interface (compliance.connectors): which keys a request
searches by, which erasure strategy a source uses, and where export parts are written."""

from __future__ import annotations

import shutil
from pathlib import Path

from django.conf import settings

from compliance.connectors import ErasureStrategy, SubjectKeys
from compliance.models import IdentityType, LogSource
from dsar.models import DataSubjectRequest, SourceTask

ERASURE_STRATEGY_KEY = "erasure_strategy"


def keys_for(request: DataSubjectRequest) -> SubjectKeys:
    """Every identity of the matched subject; for a request that matched nobody, the one
    identity it was filed with (its data may still sit in logs, e.g. typed into chats)."""
    if request.subject_id is not None:
        return SubjectKeys.for_subject(request.subject)
    value = request.identity_value
    if not value:
        return SubjectKeys()
    return SubjectKeys(
        customer_ids=(value,) if request.identity_type == IdentityType.CUSTOMER_ID else (),
        emails=(value,) if request.identity_type == IdentityType.EMAIL else (),
        phones=(value,) if request.identity_type == IdentityType.PHONE else (),
    )


class StrategyMisconfigured(ValueError):
    """The source's erasure_strategy is not one we know: retrying will not help."""


def erasure_strategy_for(source: LogSource) -> str:
    """Per source, set by the DPO in the LogSource config: delete (default) or redact in place
    where the rest of the record must stay (e.g. an external system needs its rows)."""
    value = (source.config or {}).get(ERASURE_STRATEGY_KEY) or ErasureStrategy.DELETE
    if value not in ErasureStrategy.values:
        raise StrategyMisconfigured(
            f"The source's {ERASURE_STRATEGY_KEY} must be one of: "
            f"{', '.join(ErasureStrategy.values)}."
        )
    return value


def request_dir(request_id: object) -> Path:
    """Private files of a request (export parts, packages). Under VAR_DIR, never under
    MEDIA_ROOT: nothing here may be served without the signed link check."""
    return Path(settings.DSAR_FILES_DIR) / str(request_id)


def part_path(task: SourceTask) -> Path:
    return request_dir(task.request_id) / "parts" / f"{task.pk}.jsonl"


def remove_parts(request_id: object) -> None:
    shutil.rmtree(request_dir(request_id) / "parts", ignore_errors=True)


def remove_request_files(request_id: object) -> None:
    shutil.rmtree(request_dir(request_id), ignore_errors=True)
