"""The portal's pages: what a customer sees, that they see only their own, and the
safety and accessibility rules every page keeps."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from tests.factories import ConversationFactory, DisclosureFactory, MessageFactory
from tests.portal.conftest import ANA_EMAIL, sign_in

pytestmark = pytest.mark.django_db

EXPECTED_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)


class PageAudit(HTMLParser):
    """Collects what the safety and accessibility checks look at."""

    def __init__(self):
        super().__init__()
        self.inline_scripts = 0
        self.script_srcs: list[str] = []
        self.style_blocks = 0
        self.style_attrs = 0
        self.event_handlers = 0
        self.landmarks: set[str] = set()
        self.html_lang = ""
        self.label_for: set[str] = set()
        self.inputs: list[tuple[str, str]] = []  # (id, type)
        self.inputs_wrapped_by_label: set[str] = set()
        self.skip_link = False
        self.forms: list[dict] = []
        self._in_label = 0
        self._open_script = False

    def handle_starttag(self, tag, attrs):
        attr = dict(attrs)
        if any(name.startswith("on") for name in attr):
            self.event_handlers += 1
        if "style" in attr:
            self.style_attrs += 1
        if tag == "html":
            self.html_lang = attr.get("lang", "")
        elif tag == "script":
            if attr.get("src"):
                self.script_srcs.append(attr["src"])
            else:
                self._open_script = True
                self.inline_scripts += 1
        elif tag == "style":
            self.style_blocks += 1
        elif tag in ("header", "nav", "main", "footer"):
            self.landmarks.add(tag)
        elif tag == "label":
            self._in_label += 1
            if attr.get("for"):
                self.label_for.add(attr["for"])
        elif tag in ("input", "textarea", "select"):
            kind = attr.get("type", "text") if tag == "input" else tag
            if kind not in ("hidden", "submit"):
                self.inputs.append((attr.get("id", ""), kind))
                if self._in_label:
                    self.inputs_wrapped_by_label.add(attr.get("id", ""))
        elif tag == "a" and attr.get("href") == "#main" and not self.forms:
            self.skip_link = True
        elif tag == "form":
            self.forms.append({"method": attr.get("method", "get").lower(), "csrf": False})
        if tag == "input" and attr.get("name") == "csrfmiddlewaretoken" and self.forms:
            self.forms[-1]["csrf"] = True

    def handle_endtag(self, tag):
        if tag == "label":
            self._in_label -= 1


def audit(response) -> PageAudit:
    parser = PageAudit()
    parser.feed(response.content.decode())
    return parser


def assert_safe_and_accessible(response) -> None:
    page = audit(response)
    assert response["Content-Security-Policy"] == EXPECTED_CSP
    assert "no-store" in response["Cache-Control"]
    assert page.inline_scripts == 0, "inline <script> found"
    assert page.style_blocks == 0 and page.style_attrs == 0, "inline style found"
    assert page.event_handlers == 0, "inline event handler found"
    assert all(src.startswith("/static/") for src in page.script_srcs)
    assert page.html_lang == "en"
    assert {"header", "nav", "main", "footer"} <= page.landmarks
    assert page.skip_link
    for input_id, kind in page.inputs:
        assert input_id in page.label_for or input_id in page.inputs_wrapped_by_label, (
            f"a {kind} input without a label"
        )
    for form in page.forms:
        if form["method"] == "post":
            assert form["csrf"], "a POST form without a CSRF token"


# --- Every page ---------------------------------------------------------------------------


def test_the_signed_out_pages_are_safe_and_accessible(client, mailoutbox, ana):
    assert_safe_and_accessible(client.get("/"))
    assert_safe_and_accessible(client.get("/portal/sign-in/"))
    assert_safe_and_accessible(client.post("/portal/sign-in/", {"identity": "???"}))
    client.post("/portal/sign-in/", {"identity": ANA_EMAIL})
    assert_safe_and_accessible(client.get("/portal/sign-in/code/"))
    assert_safe_and_accessible(client.post("/portal/sign-in/code/", {"code": "12"}))


def test_the_signed_in_pages_are_safe_and_accessible(ana_client, ana):
    conversation = ana.test_conversations[0]
    answer = conversation.messages.get(role="assistant")
    for url in (
        "/",
        "/portal/conversations/",
        f"/portal/conversations/{conversation.pk}/",
        f"/portal/conversations/{conversation.pk}/answers/{answer.pk}/report/",
    ):
        response = ana_client.get(url)
        assert response.status_code == 200, url
        assert_safe_and_accessible(response)


def test_the_api_and_the_admin_get_no_portal_policy(client, db):
    assert "Content-Security-Policy" not in client.get("/healthz")


def test_a_page_that_does_not_exist_under_the_portal_still_gets_the_policy(client, db):
    response = client.get("/portal/nothing-here/")
    assert response.status_code == 404
    assert response["Content-Security-Policy"] == EXPECTED_CSP


def test_signed_in_pages_send_a_stranger_to_sign_in(client, ana):
    conversation = ana.test_conversations[0]
    for url in ("/portal/conversations/", f"/portal/conversations/{conversation.pk}/"):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"] == "/portal/sign-in/"


# --- "Your data" ----------------------------------------------------------------------------


def test_home_shows_each_assistant_with_counts_dates_and_the_ai_notice(ana_client, ana):
    system = ana.test_conversations[0].system
    newer = DisclosureFactory(system=system, version=2, text="This is an AI. It can err.")
    ConversationFactory(system=system, subject=ana, disclosure=newer)
    ConversationFactory(system=system, subject=ana, disclosure=None)

    page = ana_client.get("/").content.decode()
    assert "Shop Assistant" in page
    assert "<dd>4</dd>" in page
    first = ana.test_conversations[0].started_at
    assert first.strftime("%-d %B %Y") in page
    assert "You are chatting with an AI assistant." in page
    assert "Notice version 1, shown in 2 conversations." in page
    assert "This is an AI. It can err." in page
    assert "Notice version 2, shown in 1 conversation." in page
    assert "For 1 conversation we have no record of which notice was shown." in page


def test_home_shows_nothing_of_another_customer(ana_client, ana, bo):
    page = ana_client.get("/").content.decode()
    assert "Travel Assistant" not in page


def test_a_customer_without_conversations_is_told_so(client, mailoutbox, db):
    from tests.factories import SubjectFactory

    SubjectFactory(identities={"email": "new@example.com"})
    sign_in(client, mailoutbox, "new@example.com")
    assert b"We have no conversations with you on record." in client.get("/").content


# --- Conversations ------------------------------------------------------------------------


def test_the_conversation_list_shows_only_the_customers_own(ana_client, ana, bo):
    page = ana_client.get("/portal/conversations/").content.decode()
    for conversation in ana.test_conversations:
        assert f"/portal/conversations/{conversation.pk}/" in page
    for conversation in bo.test_conversations:
        assert f"/portal/conversations/{conversation.pk}/" not in page


def test_the_conversation_list_filters_by_assistant(ana_client, ana):
    other = ConversationFactory(subject=ana)
    page = ana_client.get("/portal/conversations/?system=shop-assistant").content.decode()
    assert f"/portal/conversations/{other.pk}/" not in page
    assert f"/portal/conversations/{ana.test_conversations[0].pk}/" in page


def test_a_conversation_shows_its_messages_and_notice(ana_client, ana):
    conversation = ana.test_conversations[0]
    page = ana_client.get(f"/portal/conversations/{conversation.pk}/").content.decode()
    assert "Where is my parcel? (ana@example.com)" in page
    assert "Your parcel was delivered yesterday." in page
    assert "notice version 1" in page
    assert "Report this answer" in page


def test_message_text_is_escaped(ana_client, ana):
    conversation = ana.test_conversations[0]
    MessageFactory(conversation=conversation, sequence=9, text="<script>alert(1)</script>")
    page = ana_client.get(f"/portal/conversations/{conversation.pk}/").content.decode()
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_another_customers_conversation_is_not_found(ana_client, bo):
    for conversation in bo.test_conversations:
        assert ana_client.get(f"/portal/conversations/{conversation.pk}/").status_code == 404


def test_an_unlinked_conversation_is_not_found(ana_client, db):
    orphan = ConversationFactory(subject=None)
    assert ana_client.get(f"/portal/conversations/{orphan.pk}/").status_code == 404


def test_another_customers_answer_cannot_be_opened_for_a_report(ana_client, ana, bo):
    own = ana.test_conversations[0]
    theirs = bo.test_conversations[0]
    their_answer = theirs.messages.get(role="assistant")
    urls = [
        f"/portal/conversations/{theirs.pk}/answers/{their_answer.pk}/report/",
        # Own conversation id, someone else's message id.
        f"/portal/conversations/{own.pk}/answers/{their_answer.pk}/report/",
    ]
    for url in urls:
        assert ana_client.get(url).status_code == 404
        assert ana_client.post(url, {f"m{their_answer.pk}-category": "wrong"}).status_code == 404
    assert not their_answer.flags.exists()


def test_the_customers_own_message_cannot_be_reported(ana_client, ana):
    conversation = ana.test_conversations[0]
    question = conversation.messages.get(role="customer")
    url = f"/portal/conversations/{conversation.pk}/answers/{question.pk}/report/"
    assert ana_client.get(url).status_code == 404
