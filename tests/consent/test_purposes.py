"""Purposes and their versioned notices; the append-only history; the purpose list API;
the DPO's admin."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from compliance.models import AppendOnlyError, AuditEvent
from compliance.services import ConflictError, ServiceError
from consent import services
from consent.models import ConsentEvent, LawfulBasis, Purpose, PurposeNotice
from tests.consent.helpers import assert_error
from tests.factories import SubjectFactory

pytestmark = pytest.mark.django_db


def create(**overrides) -> Purpose:
    fields = {
        "slug": "newsletter",
        "name": "Newsletter",
        "description": "A monthly newsletter.",
        "lawful_basis": LawfulBasis.CONSENT,
        "notice_text": "May we send you our newsletter?",
        "actor": "test",
    }
    return services.purpose_create(**{**fields, **overrides})


def test_a_purpose_is_created_with_notice_v1_and_an_audit_event():
    purpose = create()
    assert [(n.version, n.text) for n in purpose.notices.all()] == [
        (1, "May we send you our newsletter?")
    ]
    audit = AuditEvent.objects.get(action="purpose.created")
    assert audit.detail == {"slug": "newsletter", "lawful_basis": "consent", "notice_version": 1}


@pytest.mark.parametrize(
    "overrides",
    [{"notice_text": " "}, {"lawful_basis": "whim"}, {"description": ""}, {"slug": ""}],
)
def test_a_purpose_without_what_customers_need_is_refused(overrides):
    with pytest.raises(ServiceError):
        create(**overrides)
    assert not Purpose.objects.filter(slug="newsletter").exists()


def test_a_second_purpose_with_the_same_slug_is_a_conflict():
    create()
    with pytest.raises(ConflictError):
        create(name="Other")


def test_a_new_text_is_a_new_version_and_the_old_one_stays():
    purpose = create()
    notice = services.purpose_notice_publish(purpose=purpose, text="New words.", actor="test")
    assert notice.version == 2
    assert list(purpose.notices.order_by("version").values_list("text", flat=True)) == [
        "May we send you our newsletter?",
        "New words.",
    ]
    again = services.purpose_notice_publish(purpose=purpose, text=" New words. ", actor="test")
    assert again.pk == notice.pk
    assert purpose.notices.count() == 2


def test_a_published_notice_cannot_be_changed():
    notice = create().notices.get()
    notice.text = "rewritten"
    with pytest.raises(AppendOnlyError):
        notice.save()
    assert PurposeNotice.objects.get(pk=notice.pk).text == "May we send you our newsletter?"


def test_a_consent_event_can_be_neither_changed_nor_deleted():
    purpose = create()
    event = services.consent_grant(
        subject=SubjectFactory(), purpose=purpose, source="portal", actor="test"
    )
    event.action = "withdraw"
    with pytest.raises(AppendOnlyError):
        event.save()
    with pytest.raises(AppendOnlyError):
        event.delete()
    assert ConsentEvent.objects.get(pk=event.pk).action == "grant"


def test_erasing_a_subject_takes_its_consent_history_with_it():
    purpose = create()
    subject = SubjectFactory()
    services.consent_grant(subject=subject, purpose=purpose, source="portal", actor="test")
    subject.delete()
    assert not ConsentEvent.objects.exists()


def test_an_objection_turns_off_every_legitimate_interest_purpose_once(purposes, eu_customer):
    events = services.consent_object_legitimate_interests(
        subject=eu_customer, actor="test", source="portal"
    )
    assert sorted(e.purpose.slug for e in events) == ["analytics", "conversation-logging"]
    again = services.consent_object_legitimate_interests(
        subject=eu_customer, actor="test", source="portal"
    )
    assert again == []


def test_the_purpose_list_shows_the_current_notice(reader, purposes):
    response = reader.get("/api/v1/consent/purposes/")
    assert response.status_code == 200
    by_slug = {p["slug"]: p for p in response.json()}
    assert by_slug["marketing"]["notice_version"] == 2
    assert by_slug["marketing"]["notice"] == "v2"
    assert by_slug["sale-and-sharing"]["sold_or_shared"] is True
    assert by_slug["sensitive-pi-use"]["sensitive"] is True


def test_the_purpose_list_needs_consent_read(make_api, purposes):
    assert_error(make_api("consent:write").get("/api/v1/consent/purposes/"), 403)


# --- admin ------------------------------------------------------------------------------------


# The notices inline is read-only: the form posts none of its rows.
NO_INLINE_ROWS = {"notices-TOTAL_FORMS": "0", "notices-INITIAL_FORMS": "0"}


@pytest.fixture
def dpo(client):
    user = get_user_model().objects.create_superuser("dpo", "dpo@example.com", "pw")
    client.force_login(user)
    return client


def test_a_new_notice_text_in_the_admin_publishes_a_new_version(dpo, purposes):
    purpose = purposes["marketing"]
    url = f"/admin/consent/purpose/{purpose.pk}/change/"
    form = {
        "slug": purpose.slug,
        "name": "Offers by email",
        "description": purpose.description,
        "lawful_basis": purpose.lawful_basis,
        "receipt_category": purpose.receipt_category,
        "third_party_name": "",
        "new_notice_text": "Third wording.",
        **NO_INLINE_ROWS,
    }
    response = dpo.post(url, form)
    assert response.status_code == 302, response.context["errors"]
    purpose.refresh_from_db()
    assert purpose.name == "Offers by email"
    assert list(purpose.notices.order_by("version").values_list("text", flat=True)) == [
        "v1",
        "v2",
        "Third wording.",
    ]
    assert AuditEvent.objects.filter(action="purpose.notice_published").exists()


def test_the_admin_refuses_a_new_purpose_without_a_notice(dpo, purposes):
    form = {
        "slug": "quiz",
        "name": "Quiz",
        "description": "A quiz.",
        "lawful_basis": "consent",
        "receipt_category": "Core Function",
        **NO_INLINE_ROWS,
    }
    response = dpo.post("/admin/consent/purpose/add/", form)
    assert response.status_code == 200
    assert not Purpose.objects.filter(slug="quiz").exists()
    response = dpo.post("/admin/consent/purpose/add/", {**form, "new_notice_text": "Quiz?"})
    assert response.status_code == 302
    assert Purpose.objects.get(slug="quiz").notices.get().version == 1


def test_consent_evidence_is_read_only_and_searchable_by_identity(
    dpo, purposes, eu_customer, ca_customer
):
    services.consent_grant(
        subject=eu_customer, purpose=purposes["marketing"], source="portal", actor="test"
    )
    services.consent_grant(
        subject=ca_customer, purpose=purposes["ai-improvement"], source="portal", actor="test"
    )
    for model in ("consentevent", "consentstate"):
        page = dpo.get(f"/admin/consent/{model}/", {"q": "eva@example.de"})
        assert page.status_code == 200
        assert page.context["cl"].result_count == 1
        assert str(eu_customer.pk)[:8] in page.content.decode()
        assert dpo.get(f"/admin/consent/{model}/", {"q": "not-a-uuid"}).status_code == 200
        assert dpo.get(f"/admin/consent/{model}/add/").status_code == 403
    event = ConsentEvent.objects.get(subject=eu_customer)
    assert dpo.post(f"/admin/consent/consentevent/{event.pk}/change/", {}).status_code == 403
    assert dpo.post(f"/admin/consent/consentevent/{event.pk}/delete/", {}).status_code == 403
