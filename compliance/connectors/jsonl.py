"""A folder of JSONL files, one conversation per line, as many plugins write them.

Field names are the DPO's (dotted paths reach into nested objects: ``customer.email``).
A line that is not a JSON object with a list of messages is *broken*: it is skipped, kept
as it is, and reported (``Connector.skipped``, ``Counts.skipped``, ``EraseResult.skipped``);
it never stops the run. A file is only ever replaced whole: the new version is written to a
temporary file in the same folder, flushed and fsynced, renamed over the old one
(``os.replace`` is atomic on POSIX) and the folder fsynced, so a crash leaves either the old
file or the new one, never half of each.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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
    common_config,
    config_identity_type,
    config_str,
    register_connector,
    reject_unknown_keys,
)
from compliance.identities import InvalidIdentity, normalize_identity
from compliance.mentions import redact_text, subject_spans
from compliance.models import ConnectorKind
from compliance.services import ServiceError

_KNOWN = {
    "path",
    "glob",
    "subject_field",
    "identity_type",
    "messages_field",
    "text_field",
    "timestamp_field",
    "conversation_id_field",
    "role_field",
    "redact_fields",
}
_DEFAULTS = {
    "glob": "*.jsonl",
    "messages_field": "messages",
    "text_field": "text",
    "timestamp_field": "sent_at",
    "conversation_id_field": "id",
    "role_field": "role",
}
# Attempts to rewrite a file that a plugin keeps appending to while we read it.
_REWRITE_ATTEMPTS = 3
_MISSING = object()


class _Broken(Exception):
    pass


def _get(obj: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        if not isinstance(obj, dict) or part not in obj:
            return _MISSING
        obj = obj[part]
    return obj


def _clear(obj: dict, path: tuple[str, ...]) -> bool:
    *parents, leaf = path
    for part in parents:
        obj = obj.get(part) if isinstance(obj, dict) else None
        if not isinstance(obj, dict):
            return False
    if isinstance(obj, dict) and obj.get(leaf) is not None:
        obj[leaf] = None
        return True
    return False


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            return datetime.fromtimestamp(value, tz=UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    # A time without an offset is taken as UTC, like the rest of the service stores time.
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _dump(obj: dict, raw: bytes) -> bytes:
    ending = b"\r\n" if raw.endswith(b"\r\n") else b"\n"
    return json.dumps(obj, ensure_ascii=False).encode() + ending


@dataclass
class _Tally:
    keyed: int = 0
    mentions: int = 0
    affected: int = 0
    skipped: list[Skipped] = field(default_factory=list)


@dataclass
class _Line:
    """One parsed conversation line."""

    obj: dict
    messages: list
    subject: str | None


@register_connector
class JsonlConnector(Connector):
    kind = ConnectorKind.JSONL

    @classmethod
    def validate_config(cls, config: dict) -> dict:
        reject_unknown_keys(config, _KNOWN)
        path = config_str(config, "path")
        if not os.path.isabs(path):
            raise ServiceError("path must be an absolute folder path.", field="config.path")
        pattern = config_str(config, "glob", default=_DEFAULTS["glob"])
        if pattern.startswith("/") or ".." in Path(pattern).parts:
            raise ServiceError(
                "glob is a pattern inside the folder (e.g. *.jsonl or **/*.jsonl).",
                field="config.glob",
            )
        normalized: dict[str, Any] = {
            **common_config(config),
            "path": path,
            "glob": pattern,
            "subject_field": config_str(config, "subject_field"),
            "identity_type": config_identity_type(config),
        }
        for key in ("messages_field", "text_field", "timestamp_field"):
            normalized[key] = config_str(config, key, default=_DEFAULTS[key])
        for key in ("conversation_id_field", "role_field"):
            normalized[key] = config_str(config, key, default=_DEFAULTS[key])
        redact = config.get("redact_fields", [normalized["subject_field"]])
        if not isinstance(redact, list) or not all(isinstance(f, str) and f for f in redact):
            raise ServiceError(
                "redact_fields is a list of field names (dotted paths).",
                field="config.redact_fields",
            )
        normalized["redact_fields"] = redact
        return normalized

    def __init__(self, source):
        super().__init__(source)
        c = self.config
        self._root = Path(c["path"])
        self._subject_path = tuple(c["subject_field"].split("."))
        self._redact_paths = [tuple(f.split(".")) for f in c["redact_fields"]]

    # --- reading ------------------------------------------------------------------------

    def _files(self) -> list[Path]:
        if not self._root.is_dir():
            raise SourceUnavailable("The folder of this source does not exist or is no folder.")
        if not os.access(self._root, os.R_OK | os.X_OK):
            raise SourceUnavailable("The folder of this source cannot be read.")
        files = []
        for path in sorted(self._root.glob(self.config["glob"])):
            if path.is_symlink():
                # Renaming over a link would replace the link, not the file it points to.
                self.skipped.append(Skipped(self._name(path), "symbolic link, not followed"))
            elif path.is_file():
                files.append(path)
        return files

    def _name(self, path: Path) -> str:
        return str(path.relative_to(self._root))

    def _parse(self, raw: bytes) -> _Line | None:
        """The conversation on this line; None for a blank line; _Broken if unreadable."""
        if not raw.strip():
            return None
        try:
            obj = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise _Broken("not valid JSON") from None
        if not isinstance(obj, dict):
            raise _Broken("not a JSON object")
        messages = obj.get(self.config["messages_field"], [])
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            raise _Broken("the messages field is not a list of objects")
        subject = _get(obj, self._subject_path)
        normalized = None
        if isinstance(subject, str | int) and not isinstance(subject, bool):
            try:
                normalized = normalize_identity(self.config["identity_type"], str(subject))
            except InvalidIdentity:
                normalized = None
        return _Line(obj=obj, messages=messages, subject=normalized)

    def _scan(self, path: Path) -> Iterator[tuple[int, _Line]]:
        name = self._name(path)
        try:
            with path.open("rb") as handle:
                for lineno, raw in enumerate(handle, 1):
                    try:
                        line = self._parse(raw)
                    except _Broken as exc:
                        self.skipped.append(Skipped(f"{name}:{lineno}", str(exc)))
                        continue
                    if line is not None:
                        yield lineno, line
        except OSError as exc:
            raise SourceUnavailable(f"{name} cannot be read ({exc.strerror}).") from None

    def _text(self, message: dict) -> str:
        text = message.get(self.config["text_field"])
        return text if isinstance(text, str) else ("" if text is None else str(text))

    def _keyed(self, line: _Line, keys: SubjectKeys) -> bool:
        return line.subject is not None and line.subject in keys.values(
            self.config["identity_type"]
        )

    def _records(self, name: str, lineno: int, line: _Line, match: str, keys: SubjectKeys):
        c = self.config
        conversation = line.obj.get(c["conversation_id_field"])
        conversation_id = str(conversation) if conversation is not None else f"{name}:{lineno}"
        for index, message in enumerate(line.messages):
            text = self._text(message)
            extra: dict[str, Any] = {"file": name, "line": lineno, "message_index": index}
            if match == MENTION:
                spans = subject_spans(text, emails=keys.emails, phones=keys.phones)
                if not spans:
                    continue
                extra["mentioned"] = sorted({s.type for s in spans})
            role = message.get(c["role_field"])
            yield Record(
                source_id=self.source.pk,
                record_id=f"{conversation_id}#{index}",
                conversation_id=conversation_id,
                sent_at=_parse_time(message.get(c["timestamp_field"])),
                role=str(role) if role is not None else "",
                text=text,
                match=match,
                extra=extra,
            )

    def find(self, keys: SubjectKeys) -> Iterator[Record]:
        self._reset()
        if not (keys.values(self.config["identity_type"]) or keys.emails or keys.phones):
            return
        for path in self._files():
            name = self._name(path)
            for lineno, line in self._scan(path):
                match = KEYED if self._keyed(line, keys) else MENTION
                if match == MENTION and not (keys.emails or keys.phones):
                    continue
                yield from self._records(name, lineno, line, match, keys)

    def count(self, keys: SubjectKeys) -> Counts:
        counts = super().count(keys)
        return Counts(keyed=counts.keyed, mentions=counts.mentions, skipped=len(self.skipped))

    # --- writing ------------------------------------------------------------------------

    def _rewrite(
        self, path: Path, edit: Callable[[int, bytes, _Line, _Tally], bytes | None], *, write=True
    ) -> _Tally:
        """Run ``edit`` over every conversation line and, if any line changed, replace the
        file atomically. ``edit`` returns the line's new bytes, ``raw`` unchanged, or None
        to drop it. Broken and blank lines are kept as they are."""
        name = self._name(path)
        for _attempt in range(_REWRITE_ATTEMPTS):
            tally = _Tally()
            before = os.stat(path)
            fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            try:
                changed = False
                with path.open("rb") as source, os.fdopen(fd, "wb") as out:
                    # Plugins that lock their log files wait for us; the others are caught
                    # by the size/mtime check below.
                    fcntl.flock(source.fileno(), fcntl.LOCK_EX)
                    for lineno, raw in enumerate(source, 1):
                        try:
                            line = self._parse(raw)
                        except _Broken as exc:
                            tally.skipped.append(Skipped(f"{name}:{lineno}", str(exc)))
                            line = None
                        new = raw if line is None else edit(lineno, raw, line, tally)
                        if new is not raw:
                            changed = True
                        if new is not None:
                            out.write(new)
                    if not (changed and write):
                        return tally
                    out.flush()
                    os.fchmod(out.fileno(), before.st_mode & 0o7777)
                    os.fsync(out.fileno())
                    after = os.stat(path)
                    if (after.st_size, after.st_mtime_ns, after.st_ino) != (
                        before.st_size,
                        before.st_mtime_ns,
                        before.st_ino,
                    ):
                        continue  # appended to while we read: read it again
                    os.replace(temp, path)
                directory = os.open(path.parent, os.O_RDONLY)
                try:
                    os.fsync(directory)
                finally:
                    os.close(directory)
                return tally
            except OSError as exc:
                raise SourceUnavailable(f"{name} cannot be rewritten ({exc.strerror}).") from None
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temp)
        raise SourceUnavailable(f"{name} kept changing while it was rewritten; try again.")

    def erase(self, keys: SubjectKeys, *, strategy: str) -> EraseResult:
        self._reset()
        self._check_strategy(strategy, ErasureStrategy)
        if not (keys.values(self.config["identity_type"]) or keys.emails or keys.phones):
            return EraseResult(keyed=0, mentions=0)
        text_field = self.config["text_field"]

        def edit(lineno: int, raw: bytes, line: _Line, tally: _Tally) -> bytes | None:
            if self._keyed(line, keys):
                tally.keyed += len(line.messages)
                if strategy == ErasureStrategy.DELETE:
                    return None
                for message in line.messages:
                    message[text_field] = ERASED_MARKER
                # Unlinked from the subject, so a second run finds nothing to do.
                for path in self._redact_paths:
                    _clear(line.obj, path)
                return _dump(line.obj, raw)
            changed = False
            for message in line.messages:
                redacted, replaced = redact_text(
                    self._text(message), emails=keys.emails, phones=keys.phones
                )
                if replaced:
                    message[text_field] = redacted
                    tally.mentions += 1
                    changed = True
            return _dump(line.obj, raw) if changed else raw

        keyed = mentions = 0
        for path in self._files():
            tally = self._rewrite(path, edit)
            keyed += tally.keyed
            mentions += tally.mentions
            self.skipped.extend(tally.skipped)
        return EraseResult(keyed=keyed, mentions=mentions, skipped=len(self.skipped))

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
        """One batch per file (a file is replaced whole), in name order; ``batch_size`` does
        not apply. The cursor is the file's name."""
        self._reset()
        self._check_strategy(strategy, PurgeStrategy)
        if older_than.tzinfo is None:
            raise ServiceError("Give the cut-off with a UTC offset.", field="older_than")
        c = self.config
        identity_type = c["identity_type"]
        held_ids = {v for k in exclude for v in k.values(identity_type)}
        held_emails = tuple(e for k in exclude for e in k.emails)
        held_phones = tuple(p for k in exclude for p in k.phones)

        def old(message: dict, tally: _Tally, where: str) -> bool:
            sent_at = _parse_time(message.get(c["timestamp_field"]))
            if sent_at is None:
                # Without a time we cannot know it is past retention: keep it, report it.
                tally.skipped.append(Skipped(where, "a message without a readable time"))
                return False
            if held_emails or held_phones:
                text = self._text(message)
                if subject_spans(text, emails=held_emails, phones=held_phones):
                    return False
            return sent_at < older_than

        def edit(lineno: int, raw: bytes, line: _Line, tally: _Tally) -> bytes | None:
            if line.subject is not None and line.subject in held_ids:
                return raw
            where = f"{name}:{lineno}"
            flags = [old(m, tally, where) for m in line.messages]
            if strategy == PurgeStrategy.DELETE:
                if not any(flags):
                    return raw
                kept = [m for m, is_old in zip(line.messages, flags, strict=True) if not is_old]
                tally.affected += len(line.messages) - len(kept)
                if not kept:
                    return None
                line.obj[c["messages_field"]] = kept
                return _dump(line.obj, raw)
            if strategy == PurgeStrategy.REDACT:
                changed = False
                for message, is_old in zip(line.messages, flags, strict=True):
                    if is_old and message.get(c["text_field"]) != ERASED_MARKER:
                        message[c["text_field"]] = ERASED_MARKER
                        tally.affected += 1
                        changed = True
                return _dump(line.obj, raw) if changed else raw
            # DETACH: only a conversation entirely past retention loses its subject.
            if not line.messages or not all(flags) or line.subject is None:
                return raw
            for path in self._redact_paths:
                _clear(line.obj, path)
            tally.affected += len(line.messages)
            return _dump(line.obj, raw)

        for path in self._files():
            name = self._name(path)
            if resume_after is not None and name <= resume_after:
                continue
            tally = self._rewrite(path, edit, write=not dry_run)
            self.skipped.extend(tally.skipped)
            yield PurgeBatch(
                affected=tally.affected,
                cursor=name,
                dry_run=dry_run,
                skipped=len(tally.skipped),
            )

    def health(self) -> str | None:
        try:
            self._files()
        except SourceUnavailable as exc:
            return exc.reason
        return None
