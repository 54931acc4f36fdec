"""The one interface every log source speaks. The DSAR engine and the retention engine use
nothing else: find, export, erase, count, purge and health (see docs/connectors.md).

A *record* is one message. It belongs to a subject in one of two ways:

* ``keyed``: the source ties it to the subject (the conversation's subject in the built-in
  store, the identity column of an external table, the subject field of a JSONL line);
* ``mention``: the subject's email address or phone number is written in the text of a
  message that is not keyed to them (customers type them into other people's chats).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from typing import Any, ClassVar
from uuid import UUID

from django.db import models
from django.utils.translation import gettext_lazy as _

from compliance.models import DataSubject, IdentityType, LogSource, SubjectIdentity
from compliance.services import ServiceError

KEYED = "keyed"
MENTION = "mention"
ERASED_MARKER = "[erased]"


class SourceUnavailable(Exception):
    """The source cannot be worked on now (unreachable database, missing folder, a
    configuration that does not fit the data). ``reason`` is safe to show and store: it
    never holds a DSN, a password or personal data."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class ErasureStrategy(models.TextChoices):
    DELETE = "delete", _("Delete the records")
    REDACT = "redact", _("Redact in place, keeping the rest of the record")


class PurgeStrategy(models.TextChoices):
    DELETE = "delete", _("Delete the records")
    REDACT = "redact", _("Replace the text with a marker, keep the record")
    DETACH = "detach", _("Keep the text, unlink it from the subject")


@dataclass(frozen=True)
class SubjectKeys:
    """Everything a subject can be found by, normalized like ``SubjectIdentity`` values.
    Load it before the subject's identities are erased: it is the only way back to them."""

    subject_id: UUID | None = None
    customer_ids: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()
    phones: tuple[str, ...] = ()

    @classmethod
    def for_subject(cls, subject: DataSubject) -> SubjectKeys:
        by_type: dict[str, set[str]] = {t: set() for t in IdentityType.values}
        for identity_type, value in SubjectIdentity.objects.filter(subject=subject).values_list(
            "type", "value"
        ):
            by_type.setdefault(identity_type, set()).add(value)
        if subject.external_id:
            by_type[IdentityType.CUSTOMER_ID].add(subject.external_id)
        return cls(
            subject_id=subject.pk,
            customer_ids=tuple(sorted(by_type[IdentityType.CUSTOMER_ID])),
            emails=tuple(sorted(by_type[IdentityType.EMAIL])),
            phones=tuple(sorted(by_type[IdentityType.PHONE])),
        )

    def values(self, identity_type: str) -> tuple[str, ...]:
        return {
            IdentityType.CUSTOMER_ID: self.customer_ids,
            IdentityType.EMAIL: self.emails,
            IdentityType.PHONE: self.phones,
        }[identity_type]

    @property
    def is_empty(self) -> bool:
        return not (self.subject_id or self.customer_ids or self.emails or self.phones)

    def __repr__(self) -> str:
        # Never the identifiers: keys end up in tracebacks and task logs.
        return (
            f"SubjectKeys(subject_id={self.subject_id}, customer_ids={len(self.customer_ids)}, "
            f"emails={len(self.emails)}, phones={len(self.phones)})"
        )


@dataclass(frozen=True)
class Record:
    source_id: int
    record_id: str
    conversation_id: str
    # Aware; None only where the source gives no readable time (a JSONL message without one).
    sent_at: datetime | None
    role: str
    text: str
    match: str  # KEYED or MENTION
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Counts:
    keyed: int
    mentions: int
    # Parts of the source that could not be read (broken JSONL lines); they may hold data.
    skipped: int = 0

    @property
    def total(self) -> int:
        return self.keyed + self.mentions


@dataclass(frozen=True)
class EraseResult:
    keyed: int
    mentions: int
    skipped: int = 0


@dataclass(frozen=True)
class PurgeBatch:
    """One committed step of a purge. Pass ``cursor`` back as ``resume_after`` to continue an
    interrupted run where it stopped."""

    affected: int
    cursor: str
    dry_run: bool = False
    skipped: int = 0


@dataclass(frozen=True)
class Skipped:
    """Something a connector could not read: where (``file.jsonl:17``) and why, never what."""

    location: str
    reason: str


class Connector(ABC):
    """Reads and changes one LogSource. Instances are cheap and hold no connection of their
    own (the SQL connector reuses one idle connection per DSN and thread); ``skipped`` lists
    what the last operation could not read."""

    kind: ClassVar[str]

    def __init__(self, source: LogSource):
        self.source = source
        try:
            self.config = self.validate_config(source.config or {})
        except ServiceError as exc:
            raise SourceUnavailable(
                f"The source is misconfigured: {exc.message} ({exc.field})"
            ) from None
        self.skipped: list[Skipped] = []

    @classmethod
    @abstractmethod
    def validate_config(cls, config: dict) -> dict:
        """Return the normalized config, or raise ServiceError naming the bad field."""

    @abstractmethod
    def find(self, keys: SubjectKeys) -> Iterator[Record]:
        """Every record of the subject, keyed ones first, streamed."""

    def export(self, keys: SubjectKeys, *, batch_size: int = 1000) -> Iterator[list[Record]]:
        """``find`` in lists of at most ``batch_size``; memory stays flat however many."""
        if batch_size < 1:
            raise ValueError("batch_size must be positive")
        records = self.find(keys)
        while batch := list(islice(records, batch_size)):
            yield batch

    @abstractmethod
    def erase(self, keys: SubjectKeys, *, strategy: str) -> EraseResult:
        """Erase the subject's records with ``strategy`` (an ErasureStrategy). Keyed records
        are deleted, or redacted to ``[erased]`` and unlinked from the subject; mentions are
        always redacted in place, whatever the strategy, because the rest of the message
        belongs to someone else. Idempotent: a second run finds nothing and returns zeros."""

    def count(self, keys: SubjectKeys) -> Counts:
        keyed = mentions = 0
        for record in self.find(keys):
            if record.match == KEYED:
                keyed += 1
            else:
                mentions += 1
        return Counts(keyed=keyed, mentions=mentions, skipped=len(self.skipped))

    @abstractmethod
    def purge(
        self,
        *,
        older_than: datetime,
        strategy: str,
        batch_size: int = 2000,
        exclude: Sequence[SubjectKeys] = (),
        dry_run: bool = False,
        resume_after: str | None = None,
    ) -> Iterator[PurgeBatch]:
        """Retention: delete, redact or detach (a PurgeStrategy) records sent before
        ``older_than``, in key order, one transaction per yielded batch. Records of the
        subjects in ``exclude`` (legal holds, GDPR Art. 17(3)) are left alone, both keyed and
        mentioning them. Unsafe to call inside a transaction: each batch must commit."""

    def health(self) -> str | None:
        """None if the source can be worked on, else the reason it cannot."""
        return None

    # --- helpers for subclasses ---------------------------------------------------------

    def _reset(self) -> None:
        self.skipped = []

    def _check_strategy(self, strategy: str, allowed: type[models.TextChoices]) -> str:
        if strategy not in allowed.values:
            raise ServiceError(
                f"Unknown strategy; use one of: {', '.join(allowed.values)}.", field="strategy"
            )
        return strategy


# --- config validation helpers ---------------------------------------------------------------

_IDENTIFIER = re.compile(r"^[^\x00-\x1f\x7f]{1,63}$")


# Settings every source accepts, whatever its connector: ``erasure_strategy`` is the DPO's
# choice per source (delete, or redact in place where the rest of a record must stay); the
# DSAR engine reads it and passes it to ``erase``.
COMMON_KEYS = {"erasure_strategy"}


def common_config(config: dict) -> dict:
    strategy = config.get("erasure_strategy") or ErasureStrategy.DELETE
    if strategy not in ErasureStrategy.values:
        raise ServiceError(
            f"erasure_strategy must be one of: {', '.join(ErasureStrategy.values)}.",
            field="config.erasure_strategy",
        )
    return {"erasure_strategy": str(strategy)}


def reject_unknown_keys(config: dict, known: set[str]) -> None:
    if not isinstance(config, dict):
        raise ServiceError("The configuration must be a JSON object.", field="config")
    known = known | COMMON_KEYS
    unknown = sorted(set(config) - known)
    if unknown:
        raise ServiceError(
            f"Unknown settings: {', '.join(unknown)}. Known: {', '.join(sorted(known))}.",
            field=f"config.{unknown[0]}",
        )


def config_str(config: dict, key: str, *, default: str | None = None) -> str:
    value = config.get(key, default)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ServiceError(f"Give {key}.", field=f"config.{key}")
    if not isinstance(value, str):
        raise ServiceError(f"{key} must be a string.", field=f"config.{key}")
    return value.strip()


def config_optional_str(config: dict, key: str) -> str | None:
    if config.get(key) in (None, ""):
        return None
    return config_str(config, key)


def config_identifier(config: dict, key: str, *, required: bool = True) -> str | None:
    value = config_str(config, key) if required else config_optional_str(config, key)
    if value is not None and not _IDENTIFIER.match(value):
        raise ServiceError(
            f"{key} must be a column name of 1 to 63 printable characters.",
            field=f"config.{key}",
        )
    return value


def config_identity_type(config: dict, key: str = "identity_type") -> str:
    value = config_str(config, key)
    if value not in IdentityType.values:
        raise ServiceError(
            f"{key} must be one of: {', '.join(IdentityType.values)}.", field=f"config.{key}"
        )
    return value


def config_bool(config: dict, key: str, *, default: bool) -> bool:
    value = config.get(key, default)
    if not isinstance(value, bool):
        raise ServiceError(f"{key} must be true or false.", field=f"config.{key}")
    return value


# --- registry --------------------------------------------------------------------------------

_REGISTRY: dict[str, type[Connector]] = {}


def register_connector(cls: type[Connector]) -> type[Connector]:
    _REGISTRY[cls.kind] = cls
    return cls


def connector_class(kind: str) -> type[Connector]:
    """The connector class for a ``ConnectorKind`` value; ServiceError if there is none."""
    try:
        return _REGISTRY[kind]
    except KeyError:
        raise ServiceError(
            f"Unknown connector; use one of: {', '.join(sorted(_REGISTRY))}.", field="connector"
        ) from None


def get_connector(source: LogSource) -> Connector:
    """The connector for a LogSource, its config validated. Raises SourceUnavailable if the
    config does not validate (the DPO must fix it in the admin)."""
    try:
        cls = connector_class(source.connector)
    except ServiceError as exc:
        raise SourceUnavailable(exc.message) from None
    return cls(source)
