"""The DPO's admin for the core domain: what it shows, what it refuses, whom it refuses."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import pytest
from django.contrib.auth import get_user_model
from django.contrib.messages import get_messages
from django.db import connection

from compliance.audit import audit_record
from compliance.demo import seed_dpo
from compliance.models import (
    AIDisclosure,
    ApiClient,
    AuditEvent,
    DataSubject,
    LogSource,
    System,
)
from compliance.services import api_client_create, api_key_issue, disclosure_publish
from tests.factories import (
    ConversationFactory,
    MessageFactory,
    SubjectFactory,
    SystemFactory,
)

pytestmark = pytest.mark.django_db

SCRIPT = "<script>alert(1)</script>"


class _FormReader(HTMLParser):
    """Collects what a browser would submit from the admin's change form."""

    def __init__(self):
        super().__init__()
        self.data: list[tuple[str, str]] = []
        self._select: str | None = None
        self._textarea: str | None = None
        self._text: list[str] = []
        self._in_form = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form" and a.get("id", "").endswith("_form"):
            self._in_form = True
        if not self._in_form:
            return
        name = a.get("name")
        if tag == "input" and name:
            kind = a.get("type", "text")
            if kind in ("submit", "button", "file", "image"):
                return
            if kind in ("checkbox", "radio") and "checked" not in a:
                return
            self.data.append((name, a.get("value", "on" if kind == "checkbox" else "")))
        elif tag == "select" and name:
            self._select = name
        elif tag == "option" and self._select and "selected" in a:
            self.data.append((self._select, a.get("value", "")))
        elif tag == "textarea" and name:
            self._textarea, self._text = name, []

    def handle_data(self, data):
        if self._textarea:
            self._text.append(data)

    def handle_endtag(self, tag):
        if tag == "select":
            self._select = None
        elif tag == "textarea" and self._textarea:
            self.data.append((self._textarea, "".join(self._text).removeprefix("\n")))
            self._textarea = None
        elif tag == "form":
            self._in_form = False


def form_data(response, **overrides) -> dict:
    reader = _FormReader()
    reader.feed(response.content.decode())
    data: dict[str, list[str]] = {}
    for name, value in reader.data:
        data.setdefault(name, []).append(value)
    for name, value in overrides.items():
        data[name] = value if isinstance(value, list) else [value]
    return data


@pytest.fixture
def dpo(client):
    seed_dpo(password="privacy-demo")
    user = get_user_model().objects.get(username="dpo")
    assert user.is_superuser
    client.force_login(user)
    return client


@pytest.fixture
def world(db):
    system = SystemFactory(slug="shop-assistant", name="Shop assistant")
    disclosure_publish(system=system, text="You are chatting with an AI.", actor="test")
    subject = SubjectFactory(identities={"email": "ana@example.com"})
    conversation = ConversationFactory(system=system, subject=subject)
    MessageFactory(conversation=conversation, sequence=0, text=f"Hi {SCRIPT}")
    client = api_client_create(name="crm", scopes=["subjects:read"], actor="test")
    api_key_issue(client=client, actor="test")
    return {"system": system, "subject": subject, "conversation": conversation, "client": client}


PAGES = {
    "datasubject": lambda w: w["subject"].pk,
    "system": lambda w: w["system"].pk,
    "conversation": lambda w: w["conversation"].pk,
    "auditevent": lambda w: AuditEvent.objects.order_by("id").first().pk,
    "apiclient": lambda w: w["client"].pk,
}


@pytest.mark.parametrize("model", list(PAGES))
def test_the_dpo_can_open_the_changelist_and_the_change_page(dpo, world, model):
    changelist = dpo.get(f"/admin/compliance/{model}/")
    assert changelist.status_code == 200
    change = dpo.get(f"/admin/compliance/{model}/{PAGES[model](world)}/change/")
    assert change.status_code == 200


def test_the_changelists_search_finds_a_subject_by_an_identity(dpo, world):
    response = dpo.get("/admin/compliance/datasubject/", {"q": "ana@example.com"})
    assert response.status_code == 200
    assert str(world["subject"].pk)[:8] in response.content.decode()


def test_message_text_with_markup_is_shown_escaped(dpo, world):
    response = dpo.get(f"/admin/compliance/conversation/{world['conversation'].pk}/change/")
    page = response.content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert SCRIPT not in page
    assert 'name="_save"' not in page  # conversations are evidence: read-only


def test_publishing_a_disclosure_in_the_system_admin_adds_a_version_and_keeps_the_old(dpo, world):
    system = world["system"]
    url = f"/admin/compliance/system/{system.pk}/change/"
    data = form_data(
        dpo.get(url), new_disclosure_text="You are talking to an AI; ask for a human any time."
    )
    response = dpo.post(url, data)
    assert response.status_code == 302, response.content.decode()[:3000]
    versions = list(
        AIDisclosure.objects.filter(system=system)
        .order_by("version")
        .values_list("version", "text")
    )
    assert versions == [
        (1, "You are chatting with an AI."),
        (2, "You are talking to an AI; ask for a human any time."),
    ]
    event = AuditEvent.objects.get(action="disclosure.published", detail__version=2)
    assert event.actor.startswith("user:")


def test_saving_a_system_without_a_new_text_publishes_nothing(dpo, world):
    system = world["system"]
    url = f"/admin/compliance/system/{system.pk}/change/"
    response = dpo.post(url, form_data(dpo.get(url), name="Shop assistant v2"))
    assert response.status_code == 302
    assert AIDisclosure.objects.filter(system=system).count() == 1
    assert System.objects.get(pk=system.pk).name == "Shop assistant v2"
    assert AuditEvent.objects.filter(action="system.updated", target_id=str(system.pk)).exists()


def test_a_subjects_name_changed_in_the_admin_goes_through_the_service(dpo, world):
    subject = world["subject"]
    url = f"/admin/compliance/datasubject/{subject.pk}/change/"
    response = dpo.post(url, form_data(dpo.get(url), display_name="Ana María"))
    assert response.status_code == 302, response.content.decode()[:3000]
    assert DataSubject.objects.get(pk=subject.pk).display_name == "Ana María"
    event = AuditEvent.objects.get(action="subject.updated")
    assert "Ana" not in str(event.detail)


def test_subjects_and_systems_cannot_be_deleted_in_the_admin(dpo, world):
    for model, pk in (("datasubject", world["subject"].pk), ("system", world["system"].pk)):
        assert dpo.get(f"/admin/compliance/{model}/{pk}/delete/").status_code == 403
    assert DataSubject.objects.filter(pk=world["subject"].pk).exists()


# --- the audit trail ------------------------------------------------------------------------


def test_an_audit_event_cannot_be_changed_in_the_admin(dpo, world):
    event = AuditEvent.objects.order_by("id").first()
    url = f"/admin/compliance/auditevent/{event.pk}/change/"
    page = dpo.get(url)
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    response = dpo.post(url, {"actor": "someone-else", "action": "forged", "_save": "Save"})
    assert response.status_code == 403
    assert AuditEvent.objects.get(pk=event.pk).actor == event.actor


def test_an_audit_event_cannot_be_added_or_deleted_in_the_admin(dpo, world):
    event = AuditEvent.objects.order_by("id").first()
    count = AuditEvent.objects.count()
    assert dpo.get("/admin/compliance/auditevent/add/").status_code == 403
    assert dpo.get(f"/admin/compliance/auditevent/{event.pk}/delete/").status_code == 403
    assert (
        dpo.post(f"/admin/compliance/auditevent/{event.pk}/delete/", {"post": "yes"}).status_code
        == 403
    )
    response = dpo.post(
        "/admin/compliance/auditevent/",
        {"action": "delete_selected", "_selected_action": [event.pk], "post": "yes"},
    )
    assert response.status_code in (200, 302)
    assert AuditEvent.objects.count() == count


def _verify_via_admin(dpo) -> list[str]:
    event = AuditEvent.objects.order_by("id").first()
    response = dpo.post(
        "/admin/compliance/auditevent/",
        {"action": "verify_chain", "_selected_action": [event.pk], "index": 0},
        follow=True,
    )
    assert response.status_code == 200
    return [str(m) for m in get_messages(response.wsgi_request)]


def test_the_verify_chain_action_reports_an_intact_chain(dpo, world):
    count = AuditEvent.objects.count()
    messages = _verify_via_admin(dpo)
    assert any("intact" in m and str(count) in m for m in messages), messages


def test_the_verify_chain_action_reports_a_broken_chain_and_where(dpo, world):
    audit_record(actor="test", action="one.more")
    victim = AuditEvent.objects.order_by("id")[1]
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE compliance_auditevent SET actor = 'user:999' WHERE id = %s", [victim.pk]
        )
    messages = _verify_via_admin(dpo)
    assert any("broken" in m and str(victim.pk) in m for m in messages), messages


# --- who may use the admin ------------------------------------------------------------------


@pytest.mark.parametrize("model", list(PAGES))
def test_a_staff_user_without_permissions_is_refused(client, world, model):
    clerk = get_user_model().objects.create_user("clerk", password="x", is_staff=True)
    client.force_login(clerk)
    assert client.get(f"/admin/compliance/{model}/").status_code == 403
    assert client.get(f"/admin/compliance/{model}/{PAGES[model](world)}/change/").status_code == 403


def test_a_staff_user_without_permissions_cannot_run_the_verify_action(client, world):
    clerk = get_user_model().objects.create_user("clerk", password="x", is_staff=True)
    client.force_login(clerk)
    response = client.post(
        "/admin/compliance/auditevent/",
        {"action": "verify_chain", "_selected_action": [AuditEvent.objects.first().pk]},
    )
    assert response.status_code == 403


def test_a_staff_user_cannot_publish_a_disclosure_without_change_permission(client, world):
    from django.contrib.auth.models import Permission

    clerk = get_user_model().objects.create_user("clerk", password="x", is_staff=True)
    clerk.user_permissions.add(Permission.objects.get(codename="view_system"))
    client.force_login(clerk)
    url = f"/admin/compliance/system/{world['system'].pk}/change/"
    assert client.get(url).status_code == 200
    response = client.post(url, {"name": "x", "new_disclosure_text": "Hijacked text."})
    assert response.status_code == 403
    assert AIDisclosure.objects.filter(system=world["system"]).count() == 1


def test_an_anonymous_visitor_is_sent_to_the_login_page(client, world):
    response = client.get("/admin/compliance/auditevent/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_the_demo_dpo_can_log_in_with_the_demo_password(client):
    seed_dpo(password="privacy-demo")
    assert client.login(username="dpo", password="privacy-demo")
    assert client.get("/admin/").status_code == 200


def test_issuing_a_key_in_the_admin_shows_it_once_and_stores_its_digest(dpo, world):
    client = world["client"]
    response = dpo.post(
        "/admin/compliance/apiclient/",
        {"action": "issue_key", "_selected_action": [client.pk], "index": 0},
        follow=True,
    )
    messages = [str(m) for m in get_messages(response.wsgi_request)]
    shown = [m for m in messages if "pcs_" in m]
    assert len(shown) == 1
    raw = shown[0].split("<code>")[1].split("</code>")[0]
    assert ApiClient.objects.get(pk=client.pk).keys.count() == 2
    assert not ApiClient.objects.get(pk=client.pk).keys.filter(digest=raw).exists()


def test_a_log_source_configured_in_the_admin_is_audited_without_its_settings(dpo, world):
    response = dpo.post(
        "/admin/compliance/logsource/add/",
        {
            "system": world["system"].pk,
            "name": "Chat files",
            "connector": "jsonl",
            "config": json.dumps(
                {
                    "path": "/srv/chat-logs/secret-folder",
                    "subject_field": "customer.email",
                    "identity_type": "email",
                }
            ),
            "enabled": "on",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    source = LogSource.objects.get(name="Chat files")
    event = AuditEvent.objects.get(action="log_source.created", target_id=str(source.pk))
    assert event.detail["connector"] == "jsonl"
    assert "path" in event.detail["config_keys"]
    assert "secret-folder" not in str(event.detail)
