"""The access / portability package: one ZIP written as a stream, memory flat however many
records (each source's records were written by its task to a JSONL part file, and are
copied from there entry by entry):

- ``data.json``: every record, machine-readable (GDPR Art. 20, Art. 15(3)); written
  incrementally, never built in memory;
- ``sources/<n>-<name>.csv``: one CSV per source, for a spreadsheet;
- ``report.html``: what a person can read (GDPR Art. 15(1)): what is held and where, from
  which plugins and when, purposes, categories, recipients, retention, the source of the
  data, the AI disclosure shown in each conversation (EU AI Act Art. 50), the consent
  history, and the rights with how to complain;
- ``manifest.json``: SHA-256 and size of every other file.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.text import slugify

from compliance.connectors import Record
from compliance.models import AIDisclosure, DataSubject, System
from compliance.retention.selectors import retention_period_for_source
from dsar.models import DataSubjectRequest, Regulation, SourceTask, SourceTaskStatus
from dsar.sources import part_path, request_dir

FORMAT = "privacy-compliance-export/1"
CSV_COLUMNS = ["record_id", "conversation_id", "sent_at", "role", "match", "text", "extra"]
# The report lists conversations one per row; beyond this many it says how many more there
# are (data.json has all of them).
REPORT_MAX_CONVERSATIONS = 2000
CHUNK = 1024 * 1024


def record_as_dict(record: Record) -> dict:
    # By hand, not dataclasses.asdict: that deep-copies every value and was half the
    # export's time.
    return {
        "source_id": record.source_id,
        "record_id": record.record_id,
        "conversation_id": record.conversation_id,
        "sent_at": record.sent_at.isoformat() if record.sent_at else None,
        "role": record.role,
        "text": record.text,
        "match": record.match,
        "extra": record.extra,
    }


@dataclass(frozen=True)
class Package:
    path: Path
    sha256: str
    size: int


class _Entry:
    """A file being written into the ZIP, hashed on the way. Small writes are gathered into
    chunks of up to BUFFER bytes: compressing line by line costs more than the lines."""

    BUFFER = 256 * 1024

    def __init__(self, raw):
        self.raw = raw
        self.sha = hashlib.sha256()
        self.size = 0
        self.pending: list[bytes] = []
        self.pending_size = 0

    def write(self, text: str) -> None:
        data = text.encode("utf-8")
        self.pending.append(data)
        self.pending_size += len(data)
        if self.pending_size >= self.BUFFER:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        chunk = b"".join(self.pending)
        self.pending, self.pending_size = [], 0
        self.sha.update(chunk)
        self.size += len(chunk)
        self.raw.write(chunk)


class _Manifest:
    def __init__(self, zf: zipfile.ZipFile):
        self.zf = zf
        self.files: list[dict] = []

    @contextmanager
    def open(self, name: str) -> Iterator[_Entry]:
        # force_zip64: the size is unknown when the entry starts and may pass 2 GiB.
        with self.zf.open(name, "w", force_zip64=True) as raw:
            entry = _Entry(raw)
            yield entry
            entry.flush()
        self.files.append({"name": name, "sha256": entry.sha.hexdigest(), "size": entry.size})


def _retention_of(task: SourceTask) -> dict | None:
    # GDPR Art. 15(1)(d): the period for which the data will be stored, per kind of record.
    period = retention_period_for_source(task.source)
    if period is None:
        return None
    return {"days": period["days"], "action": period["action"], "policy": period["policy"]}


def _source_meta(task: SourceTask) -> dict:
    return {
        "source_id": task.source_id,
        "retention": _retention_of(task),
        "name": task.source.name,
        "system": task.source.system.slug,
        "system_name": task.source.system.name,
        "connector": task.source.connector,
        "status": task.status,
        "records": task.records_found or 0,
        "error": task.error if task.status == SourceTaskStatus.FAILED else None,
    }


def _subject_block(subject: DataSubject | None, request: DataSubjectRequest) -> dict:
    if subject is None:
        return {"identities": [{"type": request.identity_type, "value": request.identity_value}]}
    return {
        "id": str(subject.pk),
        "display_name": subject.display_name,
        "jurisdiction": subject.jurisdiction,
        "restricted_since": subject.restricted_at.isoformat() if subject.restricted_at else None,
        "identities": [
            {"type": i.type, "value": i.value, "verified": i.verified}
            for i in subject.identities.order_by("type", "value")
        ],
    }


def _consent_history(subject: DataSubject | None) -> list[dict]:
    if subject is None:
        return []
    try:
        from consent.selectors import subject_consent_history
    except ImportError:
        return []
    return [
        {
            "purpose": event.purpose.slug,
            "purpose_name": event.purpose.name,
            "action": event.action,
            "source": event.source,
            "notice_version": event.notice.version if event.notice else None,
            "occurred_at": event.occurred_at.isoformat(),
            "receipt_id": str(event.receipt_id),
        }
        for event in subject_consent_history(subject=subject).iterator()
    ]


def _statements(subject: DataSubject | None) -> list[dict]:
    if subject is None:
        return []
    return [
        {"text": s.text, "created_at": s.created_at.isoformat()}
        for s in subject.supplementary_statements.all()
    ]


def _write_data_json(
    out: _Entry, request: DataSubjectRequest, tasks: list[SourceTask], head: dict
) -> None:
    opening = json.dumps(head, ensure_ascii=False, default=str)
    out.write(opening[:-1] + ', "sources": [')
    for index, task in enumerate(tasks):
        if index:
            out.write(",")
        meta = json.dumps(_source_meta(task), ensure_ascii=False)
        out.write(f'{{"source": {meta}, "records": [')
        part = part_path(task)
        if task.status == SourceTaskStatus.DONE and part.exists():
            with open(part, encoding="utf-8") as lines:
                for number, line in enumerate(lines):
                    out.write(("," if number else "") + line.rstrip("\n"))
        out.write("]}")
    out.write("]}")


def _csv_name(index: int, task: SourceTask) -> str:
    return f"sources/{index + 1:02d}-{slugify(task.source.name) or 'source'}.csv"


class _Summary:
    """What the report needs from the records, gathered while the CSVs are written."""

    def __init__(self):
        self.conversations: dict[tuple[int, str], dict] = {}
        self.more_conversations = 0

    def add(self, task: SourceTask, row: dict) -> None:
        key = (task.source_id, row["conversation_id"])
        entry = self.conversations.get(key)
        if entry is None:
            if len(self.conversations) >= REPORT_MAX_CONVERSATIONS:
                self.more_conversations += 1
                return
            entry = self.conversations[key] = {
                "source": task.source.name,
                "system": task.source.system.name,
                "system_id": task.source.system_id,
                "conversation_id": row["conversation_id"],
                "messages": 0,
                "mentions": 0,
                "first": row["sent_at"],
                "last": row["sent_at"],
                "disclosure": None,
            }
        entry["messages"] += 1
        if row["match"] != "keyed":
            entry["mentions"] += 1
        if row["sent_at"]:
            entry["first"] = min(filter(None, [entry["first"], row["sent_at"]]))
            entry["last"] = max(filter(None, [entry["last"], row["sent_at"]]))
        extra = row.get("extra") or {}
        if entry["disclosure"] is None and extra.get("disclosure_version"):
            entry["disclosure"] = {
                "version": extra.get("disclosure_version"),
                "text": extra.get("disclosure_text", ""),
                "shown_at": extra.get("disclosure_shown_at"),
            }


def _write_csv(out: _Entry, task: SourceTask, summary: _Summary) -> None:
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    part = part_path(task)
    if task.status != SourceTaskStatus.DONE or not part.exists():
        return
    with open(part, encoding="utf-8") as lines:
        for line in lines:
            row = json.loads(line)
            summary.add(task, row)
            writer.writerow(
                [
                    row.get("record_id"),
                    row.get("conversation_id"),
                    row.get("sent_at") or "",
                    row.get("role"),
                    row.get("match"),
                    row.get("text"),
                    json.dumps(row.get("extra") or {}, ensure_ascii=False, default=str),
                ]
            )


def _disclosure_texts(summary: _Summary) -> None:
    """Records carry the version of the AI disclosure shown in their conversation (EU AI Act
    Art. 50); the report quotes the text of that version."""
    texts: dict[tuple[int, int], str] = {}
    for entry in summary.conversations.values():
        disclosure = entry["disclosure"]
        if disclosure is None or disclosure["text"]:
            continue
        key = (entry["system_id"], disclosure["version"])
        if key not in texts:
            found = AIDisclosure.objects.filter(system_id=key[0], version=key[1]).first()
            texts[key] = found.text if found else ""
        disclosure["text"] = texts[key]


def _systems_block(tasks: list[SourceTask]) -> list[dict]:
    system_ids = {t.source.system_id for t in tasks if (t.records_found or 0) > 0}
    systems = System.objects.filter(pk__in=system_ids).prefetch_related("data_categories")
    purposes_by_system: dict[int, list[dict]] = {}
    try:
        from consent.models import Purpose
    except ImportError:
        Purpose = None
    if Purpose is not None:
        for purpose in Purpose.objects.filter(systems__in=system_ids).distinct():
            for system_id in purpose.systems.filter(pk__in=system_ids).values_list("pk", flat=True):
                purposes_by_system.setdefault(system_id, []).append(
                    {
                        "name": purpose.name,
                        "description": purpose.description,
                        "lawful_basis": purpose.get_lawful_basis_display(),
                        "third_party": purpose.third_party_name,
                    }
                )
    return [
        {
            "name": system.name,
            "description": system.description,
            "role": system.get_role_display(),
            "categories": [c.name for c in system.data_categories.all()],
            "recipients": system.recipients,
            "purposes": purposes_by_system.get(system.pk, []),
            "owner_contact": system.owner_contact,
        }
        for system in systems
    ]


def build_export_package(*, request: DataSubjectRequest, tasks: list[SourceTask]) -> Package:
    """Write the package next to the request's parts and return where it is. Unsafe inside
    a transaction: it may run for minutes."""
    subject = DataSubject.objects.filter(pk=request.subject_id).first()
    directory = request_dir(request.pk)
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"export-{uuid.uuid4().hex}.zip"
    temporary = final.with_suffix(".zip.tmp")
    generated_at = timezone.now()
    consent_history = _consent_history(subject)
    statements = _statements(subject)
    head = {
        "format": FORMAT,
        "generated_at": generated_at.isoformat(),
        "request": {
            "id": str(request.pk),
            "type": request.type,
            "regulation": request.regulation,
            "received_at": request.received_at.isoformat(),
        },
        "subject": _subject_block(subject, request),
        "supplementary_statements": statements,
        "consent_history": consent_history,
    }
    summary = _Summary()
    with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        manifest = _Manifest(zf)
        with manifest.open("data.json") as out:
            _write_data_json(out, request, tasks, head)
        csv_files = []
        for index, task in enumerate(tasks):
            name = _csv_name(index, task)
            csv_files.append(name)
            with manifest.open(name) as out:
                _write_csv(out, task, summary)
        _disclosure_texts(summary)
        report = render_to_string(
            "dsar/report.html",
            {
                "request": request,
                "generated_at": generated_at,
                "subject": head["subject"],
                "sources": [_source_meta(t) | {"summary": t.summary} for t in tasks],
                "systems": _systems_block(tasks),
                "conversations": sorted(
                    summary.conversations.values(), key=lambda c: c["first"] or ""
                ),
                "more_conversations": summary.more_conversations,
                "consent_history": consent_history,
                "statements": statements,
                "csv_files": csv_files,
                "is_gdpr": request.regulation == Regulation.GDPR,
                "retention_statement": settings.DSAR_RETENTION_STATEMENT,
                "automated_decisions_statement": settings.DSAR_AUTOMATED_DECISIONS_STATEMENT,
                "supervisory_authority": settings.DSAR_SUPERVISORY_AUTHORITY,
                "privacy_contact": settings.DSAR_PRIVACY_CONTACT,
                "site_name": settings.DSAR_SITE_NAME,
            },
        )
        with manifest.open("report.html") as out:
            out.write(report)
        with zf.open("manifest.json", "w") as raw:
            raw.write(
                json.dumps(
                    {
                        "format": FORMAT,
                        "request_id": str(request.pk),
                        "generated_at": generated_at.isoformat(),
                        "files": manifest.files,
                    },
                    indent=2,
                ).encode()
            )
    with open(temporary, "rb") as written:
        os.fsync(written.fileno())
        digest = hashlib.sha256()
        while chunk := written.read(CHUNK):
            digest.update(chunk)
    os.replace(temporary, final)
    return Package(path=final, sha256=digest.hexdigest(), size=final.stat().st_size)
