"""Identities given as sha256, md5 or sha1 of the normalized value are matched against the
stored identities, whose digests are kept on every path that writes one."""

from __future__ import annotations

import hashlib

import pytest
from django.apps import apps
from django.db.models import F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compliance.models import SubjectIdentity
from compliance.selectors import subject_find_by_hashed_identity, subject_identity_find_by_hash
from compliance.services import subject_create, subject_get_or_create
from dsar import services as dsar_services
from integrations.opendsr.models import OpenDsrRequest
from tests.factories import SubjectFactory
from tests.integrations.opendsr.conftest import post_request, spec_request

pytestmark = pytest.mark.django_db

ALGORITHMS = ["sha256", "md5", "sha1"]


def digest(algorithm: str, value: str) -> str:
    return hashlib.new(algorithm, value.encode()).hexdigest()


def assert_digests_match(identity: SubjectIdentity) -> None:
    identity.refresh_from_db()
    assert identity.value_sha256 == digest("sha256", identity.value)
    assert identity.value_sha1 == digest("sha1", identity.value)
    assert identity.value_md5 == digest("md5", identity.value)


# --- every path that writes an identity keeps its digests --------------------------------------


def test_the_factory_and_save_fill_the_digests():
    subject = SubjectFactory(identities={"email": "ana@example.com"})
    for identity in subject.identities.all():
        assert_digests_match(identity)
    identity = subject.identities.get(type="email")
    identity.value = "ana.new@example.com"
    identity.save(update_fields=["value"])
    assert_digests_match(identity)


def test_subject_create_fills_the_digests_through_bulk_create():
    subject = subject_create(
        identities={"email": "Bo@Example.com", "phone": "+44 20 7946 0958", "customer_id": "C-9"},
        actor="test",
    )
    assert subject.identities.count() == 3
    for identity in subject.identities.all():
        assert_digests_match(identity)


def test_subject_get_or_create_fills_the_digests_through_get_or_create():
    subject, _ = subject_get_or_create(identities={"email": "cy@example.com"}, actor="test")
    subject, created = subject_get_or_create(
        identities={"email": "cy@example.com", "customer_id": "C-10"}, actor="test"
    )
    assert not created
    for identity in subject.identities.all():
        assert_digests_match(identity)


def test_an_update_of_the_value_updates_the_digests():
    subject = SubjectFactory(identities={"email": "old@example.com"})
    SubjectIdentity.objects.filter(subject=subject, type="email").update(value="new@example.com")
    assert_digests_match(subject.identities.get(type="email"))


def test_bulk_update_of_the_value_updates_the_digests():
    subject = SubjectFactory(identities={"email": "old@example.com"})
    identity = subject.identities.get(type="email")
    identity.value = "bulk@example.com"
    SubjectIdentity.objects.bulk_update([identity], ["value"])
    assert_digests_match(identity)


def test_an_update_to_an_expression_is_refused_rather_than_leaving_stale_digests():
    SubjectFactory()
    with pytest.raises(TypeError):
        SubjectIdentity.objects.update(value=F("type"))


def test_a_rectification_keeps_the_digests_of_the_corrected_identity():
    subject = SubjectFactory(identities={"email": "typo@exmaple.com"})
    dsar_services.request_create(
        type="rectification",
        identity={"email": "typo@exmaple.com"},
        channel="api",
        actor="test",
        pre_verified=True,
        details={
            "corrections": [{"type": "email", "old": "typo@exmaple.com", "new": "ok@example.com"}]
        },
    )
    identity = subject.identities.get(type="email")
    assert identity.value == "ok@example.com"
    assert_digests_match(identity)


def test_the_data_migration_fills_rows_written_before_it():
    import importlib

    migration = importlib.import_module("compliance.migrations.0005_identity_hashes")
    subject = SubjectFactory(identities={"email": "before@example.com"})
    SubjectIdentity.objects.filter(subject=subject).update(
        value_sha256="", value_sha1="", value_md5=""
    )
    migration.fill_digests(apps, None)
    for identity in subject.identities.all():
        assert_digests_match(identity)


# --- matching -------------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_the_selector_finds_a_subject_by_each_digest_in_either_case(algorithm):
    ana = SubjectFactory(identities={"email": "ana@example.com"})
    hexdigest = digest(algorithm, "ana@example.com")
    for given_digest in (hexdigest, hexdigest.upper()):
        assert (
            subject_find_by_hashed_identity(
                identity_type="email", hash_format=algorithm, digest=given_digest
            )
            == ana
        )
    # The type is part of the key: the same digest under another type is nobody.
    assert (
        subject_find_by_hashed_identity(
            identity_type="phone", hash_format=algorithm, digest=hexdigest
        )
        is None
    )
    assert (
        subject_identity_find_by_hash(
            identity_type="email", hash_format=algorithm, digest=digest(algorithm, "x@y.com")
        )
        is None
    )


def test_the_selector_refuses_an_unknown_hash_format():
    with pytest.raises(ValueError):
        subject_find_by_hashed_identity(identity_type="email", hash_format="crc32", digest="0")


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize(
    ("opendsr_type", "stored_type", "stored", "normalized"),
    [
        ("email", "email", "ana@example.com", "ana@example.com"),
        ("controller_customer_id", "customer_id", "C-4711", "C-4711"),
        ("phone_number", "phone", "+442079460958", "+442079460958"),
    ],
)
def test_a_hashed_identity_in_an_opendsr_request_is_matched_to_the_stored_one(
    controller, algorithm, opendsr_type, stored_type, stored, normalized
):
    extra = {} if stored_type == "customer_id" else {stored_type: stored}
    ana = SubjectFactory(external_id="C-4711", identities=extra)
    body = spec_request(
        subject_identities=[
            {
                "identity_type": opendsr_type,
                "identity_value": digest(algorithm, normalized),
                "identity_format": algorithm,
            }
        ]
    )
    assert post_request(controller, body).status_code == 201
    dsr = OpenDsrRequest.objects.get().request
    assert dsr.subject == ana
    # Filed under the stored identity, so the log sources are searched by its value.
    assert (dsr.identity_type, dsr.identity_value) == (stored_type, normalized)


def test_a_digest_of_the_unnormalized_value_matches_nobody(controller):
    SubjectFactory(identities={"email": "ana@example.com"})
    body = spec_request(
        subject_identities=[
            {
                "identity_type": "email",
                "identity_value": digest("sha256", "Ana@Example.com "),
                "identity_format": "sha256",
            }
        ]
    )
    assert post_request(controller, body).status_code == 201
    assert OpenDsrRequest.objects.get().request.subject is None


def test_a_digest_that_matches_nobody_gets_the_answer_a_match_gets(controller, builtin_source):
    from tests.dsar.support import run_all

    SubjectFactory(identities={"email": "ana@example.com"})
    answers = []
    for email in ("ana@example.com", "nobody@example.com"):
        body = spec_request(
            subject_request_type="access",
            subject_identities=[
                {
                    "identity_type": "email",
                    "identity_value": digest("sha256", email),
                    "identity_format": "sha256",
                }
            ],
        )
        response = post_request(controller, body)
        answers.append((response.status_code, sorted(response.json())))
        dsr = OpenDsrRequest.objects.get(subject_request_id=body["subject_request_id"]).request
        # Both are carried out to the end; the stranger's finds nothing to export.
        assert run_all(dsr) == "completed"
        status = controller.get(f"/opendsr/v2/requests/{body['subject_request_id']}").json()
        answers.append((status["request_status"], status["results_url"] is not None))
    assert answers[0] == answers[2]
    assert answers[1] == answers[3] == ("completed", True)
    unknown = OpenDsrRequest.objects.get(subject_request_id=body["subject_request_id"]).request
    assert unknown.subject is None
    assert unknown.identity_value == f"sha256:{digest('sha256', 'nobody@example.com')}"


def test_a_hashed_erasure_of_a_stranger_completes_like_any_other(controller, builtin_source):
    from tests.dsar.support import run_all

    body = spec_request(
        subject_identities=[
            {
                "identity_type": "email",
                "identity_value": digest("md5", "nobody@example.com"),
                "identity_format": "md5",
            }
        ]
    )
    post_request(controller, body)
    dsr = OpenDsrRequest.objects.get().request
    dsar_services.request_approve(request=dsr, actor="user:1")
    assert run_all(dsr) == "completed"


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    local=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789._-", min_size=1, max_size=20),
    algorithm=st.sampled_from(ALGORITHMS),
)
def test_any_stored_email_is_found_by_each_of_its_digests(local, algorithm):
    value = f"x{local}x@example.com"
    identity = SubjectIdentity.objects.filter(type="email", value=value).first()
    if identity is None:
        identity = SubjectFactory(identities={"email": value}).identities.get(type="email")
    found = subject_identity_find_by_hash(
        identity_type="email", hash_format=algorithm, digest=digest(algorithm, value)
    )
    assert found == identity
