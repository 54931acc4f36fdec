"""The OpenDSR request parser: any JSON is either a checked submission or an OpenDsrInvalid
(a 400), never another exception (a 500); and an error never repeats an identity value."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from integrations.opendsr.parsing import (
    OpenDsrInvalid,
    parse_rfc3339,
    submission_parse,
)
from tests.integrations.opendsr.conftest import SPEC_EXAMPLE, spec_request

NOW = datetime(2026, 11, 27, 12, tzinfo=UTC)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=20), children, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = sorted(SPEC_EXAMPLE)


def parse(data, major=2):
    return submission_parse(data, major=major, now=NOW)


@settings(max_examples=300, deadline=None)
@given(value=json_values)
def test_any_json_document_is_a_submission_or_a_400(value):
    try:
        parse(value)
    except OpenDsrInvalid as exc:
        assert exc.message


@settings(max_examples=300, deadline=None)
@given(field=st.sampled_from(FIELDS), value=json_values)
def test_any_value_in_any_field_of_the_example_is_a_submission_or_a_400(field, value):
    body = spec_request()
    body[field] = value
    try:
        parse(body)
    except OpenDsrInvalid as exc:
        assert exc.message


@settings(max_examples=200, deadline=None)
@given(
    key=st.sampled_from(["identity_type", "identity_value", "identity_format"]),
    value=json_values,
    secret=st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=12, max_size=20),
)
def test_an_error_about_an_identity_never_repeats_its_value(key, value, secret):
    identity = {
        "identity_type": "email",
        "identity_value": f"{secret}@example",
        "identity_format": "raw",
    }
    identity[key] = value
    try:
        parse(spec_request(subject_identities=[identity]))
    except OpenDsrInvalid as exc:
        assert secret not in exc.message


def test_the_specification_example_parses_to_its_fields():
    submission = parse(dict(SPEC_EXAMPLE))
    assert submission.regulation == "gdpr"
    assert submission.subject_request_id == uuid.UUID("a7551968-d5d6-44b2-9831-815ac9017798")
    assert submission.subject_request_type == "erasure"
    assert submission.submitted_time == datetime(2018, 10, 2, 15, tzinfo=UTC)
    assert submission.api_version == "2.0"
    assert submission.status_callback_urls == ("https://examplecontroller.com/opendsr/callbacks",)
    ((identity),) = submission.identities
    assert (identity.identity_type, identity.identity_format, identity.value) == (
        "email",
        "raw",
        "johndoe@example.com",
    )


def test_raw_identities_are_normalized_and_digests_lower_cased():
    digest = hashlib.new("sha1", b"ana@example.com", usedforsecurity=False).hexdigest().upper()
    submission = parse(
        spec_request(
            subject_identities=[
                {
                    "identity_type": "email",
                    "identity_value": " Ana@Example.COM ",
                    "identity_format": "raw",
                },
                {
                    "identity_type": "phone_number",
                    "identity_value": "+44 (20) 7946-0958",
                    "identity_format": "raw",
                },
                {"identity_type": "email", "identity_value": digest, "identity_format": "sha1"},
            ]
        )
    )
    assert [i.value for i in submission.identities] == [
        "ana@example.com",
        "+442079460958",
        digest.lower(),
    ]


def test_the_same_identity_twice_counts_once_and_callback_urls_are_deduplicated():
    identity = {
        "identity_type": "email",
        "identity_value": "a@example.com",
        "identity_format": "raw",
    }
    submission = parse(
        spec_request(
            subject_identities=[identity, dict(identity)],
            status_callback_urls=["https://c.example/cb", "https://c.example/cb"],
        )
    )
    assert len(submission.identities) == 1
    assert submission.status_callback_urls == ("https://c.example/cb",)


def test_v1_takes_a_request_without_regulation_and_v2_does_not():
    body = spec_request(api_version="1.0")
    del body["regulation"]
    assert parse(body, major=1).regulation is None
    with pytest.raises(OpenDsrInvalid, match="regulation field is required"):
        parse(spec_request(regulation=None) | {"api_version": "2.0"})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2018-10-02T15:00:00Z", datetime(2018, 10, 2, 15, tzinfo=UTC)),
        ("2018-10-02t15:00:00z", datetime(2018, 10, 2, 15, tzinfo=UTC)),
        ("2018-10-02T17:00:00+02:00", datetime(2018, 10, 2, 15, tzinfo=UTC)),
        ("2018-10-02T15:00:00.123456789Z", datetime(2018, 10, 2, 15, 0, 0, 123456, tzinfo=UTC)),
    ],
)
def test_rfc3339_times_are_read_with_their_offset(text, expected):
    assert parse_rfc3339(text, field="submitted_time") == expected


@pytest.mark.parametrize(
    "text", ["2018-10-02", "2018-10-02T15:00:00", "2018-10-02 15:00:00Z", "2018-13-02T15:00:00Z"]
)
def test_times_without_an_offset_or_impossible_ones_are_refused(text):
    with pytest.raises(OpenDsrInvalid):
        parse_rfc3339(text, field="submitted_time")


def test_an_unknown_field_is_named_only_when_it_looks_like_a_field_name():
    with pytest.raises(OpenDsrInvalid) as caught:
        parse(spec_request() | {"ana@example.com": 1, "group_id": "g"})
    assert caught.value.message == "Unknown fields: (a field), group_id."
