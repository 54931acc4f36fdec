"""Connectors to the places conversation logs live; see ``base`` and docs/connectors.md."""

from compliance.connectors import builtin, jsonl, sql  # noqa: F401 - they register themselves
from compliance.connectors.base import (
    ERASED_MARKER,
    KEYED,
    MENTION,
    Connector,
    Counts,
    EraseResult,
    ErasureStrategy,
    PurgeBatch,
    PurgeStrategy,
    Record,
    Skipped,
    SourceUnavailable,
    SubjectKeys,
    connector_class,
    get_connector,
)

__all__ = [
    "ERASED_MARKER",
    "KEYED",
    "MENTION",
    "Connector",
    "Counts",
    "EraseResult",
    "ErasureStrategy",
    "PurgeBatch",
    "PurgeStrategy",
    "Record",
    "Skipped",
    "SourceUnavailable",
    "SubjectKeys",
    "connector_class",
    "get_connector",
]
