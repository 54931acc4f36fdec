"""The JSONL folder connector: one conversation per line, files rewritten atomically,
broken lines skipped and reported."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from compliance.connectors import (
    ERASED_MARKER,
    KEYED,
    MENTION,
    ErasureStrategy,
    PurgeStrategy,
    SourceUnavailable,
    SubjectKeys,
    get_connector,
)
from compliance.connectors.jsonl import JsonlConnector
from compliance.services import ServiceError
from tests.factories import LogSourceFactory

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 1, 10, 9, 0, tzinfo=UTC)
ANA = SubjectKeys(customer_ids=("C-ana",), emails=("ana@example.com",), phones=("+442079460958",))
BOB = SubjectKeys(customer_ids=("C-bob",), emails=("bob@example.com",))


def conversation(cid, email, *texts, start=T0, step=timedelta(minutes=1), name="Someone"):
    return {
        "conversation": cid,
        "customer": {"email": email, "name": name} if email else None,
        "turns": [
            {
                "body": text,
                "at": (start + n * step).isoformat(),
                "from": "customer" if n % 2 == 0 else "bot",
            }
            for n, text in enumerate(texts)
        ],
    }


def write(path: Path, *lines) -> None:
    path.write_text(
        "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    )


def parse_lines(text: str) -> list:
    """Each line as JSON where it parses, else as the raw string."""
    out = []
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            out.append(line)
    return out


def read(path: Path) -> list:
    return parse_lines(path.read_text())


@pytest.fixture
def folder(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    return logs


@pytest.fixture
def source(folder):
    return LogSourceFactory(
        connector="jsonl",
        config={
            "path": str(folder),
            "subject_field": "customer.email",
            "identity_type": "email",
            "messages_field": "turns",
            "text_field": "body",
            "timestamp_field": "at",
            "conversation_id_field": "conversation",
            "role_field": "from",
            "redact_fields": ["customer"],
        },
    )


@pytest.fixture
def logs(folder):
    write(
        folder / "2026-01-10.jsonl",
        conversation("a1", "Ana@Example.com", "Where is my parcel?", "On its way.", name="Ana"),
        conversation("b1", "bob@example.com", "My wife ANA@example.com ordered", "Noted."),
        "{this line is broken",
    )
    write(
        folder / "2026-01-11.jsonl",
        conversation("x1", None, "call me on 020 7946 0958 please"),
        conversation("b2", "bob@example.com", "nothing about her, diana@example.com"),
        "[1, 2, 3]",
    )
    write(folder / "notes.txt", "ana@example.com is not in a log file")
    return folder


def test_it_finds_keyed_conversations_and_mentions_and_reports_broken_lines(source, logs):
    connector = get_connector(source)
    records = list(connector.find(ANA))

    keyed = [r for r in records if r.match == KEYED]
    mentions = [r for r in records if r.match == MENTION]
    assert [(r.conversation_id, r.role, r.text) for r in keyed] == [
        ("a1", "customer", "Where is my parcel?"),
        ("a1", "bot", "On its way."),
    ]
    assert keyed[0].sent_at == T0
    assert keyed[0].extra == {"file": "2026-01-10.jsonl", "line": 1, "message_index": 0}
    assert [(r.conversation_id, r.extra["mentioned"]) for r in mentions] == [
        ("b1", ["email"]),
        ("x1", ["phone"]),
    ]
    assert [(s.location, s.reason) for s in connector.skipped] == [
        ("2026-01-10.jsonl:3", "not valid JSON"),
        ("2026-01-11.jsonl:3", "not a JSON object"),
    ]


def test_count_and_export_agree_with_find(source, logs):
    connector = get_connector(source)
    counts = connector.count(ANA)
    assert (counts.keyed, counts.mentions, counts.skipped) == (2, 2, 2)
    assert [len(b) for b in connector.export(ANA, batch_size=3)] == [3, 1]


def test_erase_with_delete_drops_the_subjects_lines_and_redacts_mentions_only(source, logs):
    other_file = (logs / "2026-01-11.jsonl").read_text()

    result = get_connector(source).erase(ANA, strategy=ErasureStrategy.DELETE)

    assert (result.keyed, result.mentions, result.skipped) == (2, 2, 2)
    first = read(logs / "2026-01-10.jsonl")
    assert [c["conversation"] for c in first[:-1]] == ["b1"]
    assert first[0]["turns"][0]["body"] == "My wife [redacted email] ordered"
    assert first[0]["turns"][1]["body"] == "Noted."
    assert first[-1] == "{this line is broken"  # kept as it was
    second = read(logs / "2026-01-11.jsonl")
    assert second[0]["turns"][0]["body"] == "call me on [redacted phone] please"
    assert second[1:] == parse_lines(other_file)[1:]
    assert (logs / "notes.txt").read_text().startswith("ana@example.com")
    assert get_connector(source).count(ANA).total == 0
    assert get_connector(source).count(BOB).keyed == 3


def test_erase_with_redact_keeps_the_line_without_text_or_customer(source, logs):
    result = get_connector(source).erase(ANA, strategy=ErasureStrategy.REDACT)

    assert result.keyed == 2
    kept = read(logs / "2026-01-10.jsonl")[0]
    assert kept["conversation"] == "a1"
    assert kept["customer"] is None  # the whole customer object, name included
    assert [t["body"] for t in kept["turns"]] == [ERASED_MARKER, ERASED_MARKER]
    assert get_connector(source).count(ANA).total == 0


@pytest.mark.parametrize("strategy", ErasureStrategy.values)
def test_erasing_twice_does_no_harm_and_leaves_files_alone(source, logs, strategy):
    connector = get_connector(source)
    connector.erase(ANA, strategy=strategy)
    before = {p.name: (p.read_bytes(), p.stat().st_ino) for p in logs.iterdir()}

    again = connector.erase(ANA, strategy=strategy)

    assert (again.keyed, again.mentions) == (0, 0)
    assert {p.name: (p.read_bytes(), p.stat().st_ino) for p in logs.iterdir()} == before


def test_a_file_without_the_subject_is_never_rewritten(source, logs):
    write(logs / "2026-01-12.jsonl", conversation("b3", "bob@example.com", "hi"))
    inode = (logs / "2026-01-12.jsonl").stat().st_ino

    get_connector(source).erase(ANA, strategy=ErasureStrategy.DELETE)

    assert (logs / "2026-01-12.jsonl").stat().st_ino == inode
    assert not [p for p in logs.iterdir() if p.name.endswith(".tmp")]


def test_a_rewritten_file_keeps_its_permissions(source, logs):
    path = logs / "2026-01-10.jsonl"
    path.chmod(0o640)

    get_connector(source).erase(ANA, strategy=ErasureStrategy.DELETE)

    assert path.stat().st_mode & 0o777 == 0o640


def test_a_missing_folder_is_reported_as_unavailable(source, folder):
    folder.rmdir()
    connector = get_connector(source)
    with pytest.raises(SourceUnavailable):
        list(connector.find(ANA))
    assert connector.health() is not None


def test_a_subfolder_pattern_is_followed(source, logs):
    nested = logs / "2026" / "01"
    nested.mkdir(parents=True)
    write(nested / "a.jsonl", conversation("a9", "ana@example.com", "nested"))
    source.config = {**source.config, "glob": "**/*.jsonl"}

    found = {r.conversation_id for r in get_connector(source).find(ANA) if r.match == KEYED}

    assert found == {"a1", "a9"}


def test_a_symlinked_file_is_reported_not_followed(source, logs, tmp_path):
    outside = tmp_path / "outside.jsonl"
    write(outside, conversation("o1", "ana@example.com", "outside"))
    os.symlink(outside, logs / "link.jsonl")
    connector = get_connector(source)

    found = {r.conversation_id for r in connector.find(ANA)}

    assert "o1" not in found
    assert ("link.jsonl", "symbolic link, not followed") in {
        (s.location, s.reason) for s in connector.skipped
    }


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"path": "relative"}, "config.path"),
        ({"identity_type": "shoe_size"}, "config.identity_type"),
        ({"glob": "../*.jsonl"}, "config.glob"),
        ({"subject_field": ""}, "config.subject_field"),
        ({"redact_fields": "customer"}, "config.redact_fields"),
        ({"dsn": "postgresql://x"}, "config.dsn"),
    ],
)
def test_bad_config_is_refused_naming_the_field(config, field):
    base = {"path": "/var/logs", "subject_field": "email", "identity_type": "email"}
    with pytest.raises(ServiceError) as info:
        JsonlConnector.validate_config({**base, **config})
    assert info.value.field == field


def test_defaults_fill_in_the_field_names():
    config = JsonlConnector.validate_config(
        {"path": "/var/logs", "subject_field": "user.phone", "identity_type": "phone"}
    )
    assert config["glob"] == "*.jsonl"
    assert config["messages_field"] == "messages"
    assert config["redact_fields"] == ["user.phone"]


# --- purge ---------------------------------------------------------------------------------


@pytest.fixture
def aged(folder):
    day = timedelta(days=1)
    write(
        folder / "a.jsonl",
        conversation("a-old", "ana@example.com", *[f"ana {n}" for n in range(5)], step=day),
        "broken{",
    )
    write(folder / "b.jsonl", conversation("b-old", "bob@example.com", "bob 0", "bob 1", step=day))
    write(
        folder / "c.jsonl",
        conversation("anon", None, "I am ana@example.com", start=T0 + timedelta(hours=1)),
        conversation("bob-new", "bob@example.com", "bob new", start=T0 + timedelta(days=40)),
    )
    return folder


def bodies(path: Path, cid: str) -> list[str]:
    for item in read(path):
        if isinstance(item, dict) and item["conversation"] == cid:
            return [t["body"] for t in item["turns"]]
    return []


def test_purge_deletes_exactly_the_messages_older_than_the_cutoff(source, aged):
    cutoff = T0 + timedelta(days=2)

    batches = list(get_connector(source).purge(older_than=cutoff, strategy="delete"))

    assert [(b.cursor, b.affected, b.skipped) for b in batches] == [
        ("a.jsonl", 2, 1),
        ("b.jsonl", 2, 0),
        ("c.jsonl", 1, 0),
    ]
    assert bodies(aged / "a.jsonl", "a-old") == ["ana 2", "ana 3", "ana 4"]
    assert read(aged / "b.jsonl") == []
    assert [c["conversation"] for c in read(aged / "c.jsonl")] == ["bob-new"]
    assert read(aged / "a.jsonl")[-1] == "broken{"


def test_purge_skips_held_subjects_and_messages_mentioning_them(source, aged):
    list(
        get_connector(source).purge(
            older_than=T0 + timedelta(days=30), strategy="delete", exclude=[ANA]
        )
    )
    assert len(bodies(aged / "a.jsonl", "a-old")) == 5
    assert bodies(aged / "c.jsonl", "anon") == ["I am ana@example.com"]
    assert read(aged / "b.jsonl") == []


def test_an_interrupted_purge_resumes_after_the_last_file_done(source, aged):
    connector = get_connector(source)
    cutoff = T0 + timedelta(days=30)
    run = connector.purge(older_than=cutoff, strategy=PurgeStrategy.REDACT)
    first = next(run)
    run.close()
    assert (first.cursor, first.affected) == ("a.jsonl", 5)
    a_after_first = (aged / "a.jsonl").read_bytes()

    rest = list(
        connector.purge(older_than=cutoff, strategy=PurgeStrategy.REDACT, resume_after="a.jsonl")
    )

    assert [(b.cursor, b.affected) for b in rest] == [("b.jsonl", 2), ("c.jsonl", 1)]
    assert (aged / "a.jsonl").read_bytes() == a_after_first
    assert bodies(aged / "c.jsonl", "bob-new") == ["bob new"]
    again = list(connector.purge(older_than=cutoff, strategy=PurgeStrategy.REDACT))
    assert sum(b.affected for b in again) == 0


def test_a_dry_run_counts_and_changes_nothing(source, aged):
    before = {p.name: p.read_bytes() for p in aged.iterdir()}
    batches = list(
        get_connector(source).purge(
            older_than=T0 + timedelta(days=2), strategy="delete", dry_run=True
        )
    )
    assert sum(b.affected for b in batches) == 5
    assert {p.name: p.read_bytes() for p in aged.iterdir()} == before


def test_purge_detach_unlinks_only_conversations_entirely_past_the_cutoff(source, aged):
    cutoff = T0 + timedelta(days=3)

    batches = list(get_connector(source).purge(older_than=cutoff, strategy="detach"))

    assert sum(b.affected for b in batches) == 2
    bob = read(aged / "b.jsonl")[0]
    assert bob["customer"] is None and [t["body"] for t in bob["turns"]] == ["bob 0", "bob 1"]
    assert read(aged / "a.jsonl")[0]["customer"]["email"] == "ana@example.com"


def test_a_message_without_a_readable_time_is_kept_and_reported(source, folder):
    line = conversation("t1", "bob@example.com", "when?")
    line["turns"][0]["at"] = "last Tuesday"
    write(folder / "t.jsonl", line)

    batches = list(
        get_connector(source).purge(older_than=T0 + timedelta(days=999), strategy="delete")
    )

    assert [(b.affected, b.skipped) for b in batches] == [(0, 1)]
    assert bodies(folder / "t.jsonl", "t1") == ["when?"]
