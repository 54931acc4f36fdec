"""Minimisation at ingest (GDPR Art. 5(1)(c)): what a system's logs must never keep is
redacted before a message is stored, and counted per system."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ValidationError
from hypothesis import given, settings
from hypothesis import strategies as st

from compliance.ingest import conversations_ingest
from compliance.minimisation import (
    CARD_RANGES,
    MinimisationCategory,
    luhn_valid,
    minimise_text,
    minimise_text_counted,
)
from compliance.models import Message, RedactionCount, System
from compliance.services import ConflictError
from tests.factories import SubjectFactory, SystemFactory

ALL = list(MinimisationCategory.values)
START = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def redact(text: str, categories=ALL) -> tuple[str, dict[str, int]]:
    return minimise_text_counted(text=text, categories=categories)


def assert_redacted(text: str, secret: str, category: str) -> None:
    out, counts = redact(text)
    label = {
        "payment_card": "[redacted: payment card]",
        "iban": "[redacted: IBAN]",
        "national_id": "[redacted: national ID]",
        "one_time_code": "[redacted: one-time code]",
        "password": "[redacted: password]",
    }[category]
    assert label in out, out
    assert secret not in out, out
    assert counts == {category: 1}


# --- One test per category, several real-looking formats -------------------------------------


@pytest.mark.parametrize(
    "text, secret",
    [
        ("My card is 4111 1111 1111 1111, expiry 12/27.", "4111 1111 1111 1111"),
        ("card: 5555-5555-5555-4444 thanks", "5555-5555-5555-4444"),
        ("It's 5105105105105100", "5105105105105100"),
        ("amex 3782 822463 10005", "3782 822463 10005"),
        ("Discover 6011 1111 1111 1117 please", "6011 1111 1111 1117"),
        ("the old visa 4222222222222", "4222222222222"),
        ("JCB 3530 1113 3330 0000", "3530 1113 3330 0000"),
        ("Diners 3622 720627 1667", "3622 720627 1667"),
        ("mastercard 2223 0031 2200 3222", "2223 0031 2200 3222"),
    ],
)
def test_payment_card_numbers_are_redacted_in_every_grouping(text, secret):
    assert_redacted(text, secret, "payment_card")


@pytest.mark.parametrize(
    "text, secret",
    [
        ("Refund to DE89 3704 0044 0532 0130 00 please", "DE89 3704 0044 0532 0130 00"),
        ("IBAN DE89370400440532013000.", "DE89370400440532013000"),
        ("GB82 WEST 1234 5698 7654 32", "GB82 WEST 1234 5698 7654 32"),
        ("my iban is gb82west12345698765432", "gb82west12345698765432"),
        ("NL91ABNA0417164300", "NL91ABNA0417164300"),
        ("FR14 2004 1010 0505 0001 3M02 606 merci", "FR14 2004 1010 0505 0001 3M02 606"),
        ("es: ES91 2100 0418 4502 0005 1332", "ES91 2100 0418 4502 0005 1332"),
        ("BE68 5390 0754 7034", "BE68 5390 0754 7034"),
    ],
)
def test_ibans_are_redacted_with_or_without_spaces(text, secret):
    assert_redacted(text, secret, "iban")


@pytest.mark.parametrize(
    "text, secret",
    [
        # US Social Security number
        ("my ssn is 078-05-1120", "078-05-1120"),
        ("SSN 219 09 9999", "219 09 9999"),
        ("social security number: 219099999", "219099999"),
        # UK National Insurance number
        ("NI number AB 12 34 56 C", "AB 12 34 56 C"),
        ("NINO: JG103758A", "JG103758A"),
        # German tax id (Steuer-IdNr)
        ("Steuer-ID 86 095 742 719", "86 095 742 719"),
        ("meine IdNr 65929970489", "65929970489"),
        # French NIR, mainland and Corsica
        ("NIR 1 85 05 78 006 084 91", "1 85 05 78 006 084 91"),
        ("sécu 185057800608491", "185057800608491"),
        ("2 69 02 2A 934 173 49", "2 69 02 2A 934 173 49"),
        # Spanish DNI and NIE
        ("DNI 12345678Z", "12345678Z"),
        ("dni 87654321-X", "87654321-X"),
        ("NIE X1234567L", "X1234567L"),
        ("NIE Y-1234567-X", "Y-1234567-X"),
        # Italian codice fiscale
        ("CF RSSMRA85T10A562S", "RSSMRA85T10A562S"),
        ("codice fiscale mrtmtt91d08f205j", "mrtmtt91d08f205j"),
        # Dutch BSN, 11-proof, after its name
        ("mijn BSN is 111222333", "111222333"),
        ("burgerservicenummer: 1234.56.782", "1234.56.782"),
    ],
)
def test_national_id_numbers_are_redacted(text, secret):
    assert_redacted(text, secret, "national_id")


@pytest.mark.parametrize(
    "text, secret",
    [
        ("Your verification code is 482913.", "482913"),
        ("OTP: 1234", "1234"),
        ("the code was 123-456", "123-456"),
        ("my PIN is 0000", "0000"),
        ("TAN 12345678 bitte", "12345678"),
        ("one-time password 5520", "5520"),
        ("Ihr Bestätigungscode lautet 739201", "739201"),
    ],
)
def test_one_time_codes_are_redacted(text, secret):
    assert_redacted(text, secret, "one_time_code")


@pytest.mark.parametrize(
    "text, secret",
    [
        ("my password is hunter2", "hunter2"),
        ("Password: Tr0ub4dor&3 (sorry)", "Tr0ub4dor&3"),
        ("pw: abc123", "abc123"),
        ("pwd=qwerty!", "qwerty!"),
        ('my password is "correct horse battery staple" ok', "correct horse battery staple"),
        ("Passwort ist Geheim123", "Geheim123"),
        ("mon mot de passe est soleil2024", "soleil2024"),
        ("contraseña: gato99", "gato99"),
    ],
)
def test_passwords_typed_into_the_chat_are_redacted(text, secret):
    assert_redacted(text, secret, "password")


# --- What must stay --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Order 1234567890123 shipped yesterday",
        "Your order #4000123456789 is on its way",  # Luhn fails
        "order number 123456789 placed on 2024-05-01",
        "Invoice 2024-000123-77 for $1,299.00",
        "It cost €49,99 or 1.299,00 EUR with VAT",
        "See you on 12.03.2025 at 14:30:00",
        "Call me on +49 30 123456789 or +1 (415) 555-2671",
        "UK office: 020 7946 0958",
        "tracking 1Z999AA10123456784",
        "zip code 94103 please",
        "error code 5001 again",
        "promo code 2024 did not work",
        "I forgot my password and need a reset link",
        "my boarding pass is gate 12",
        "DE89 3704 0044 0532 0130 01 (made up, bad check digits)",
        "Steuernummer 12/345/67890",
        "Room 1234, 5678 steps away",
        "customer 123456782 (no BSN keyword)",
    ],
)
def test_order_numbers_dates_prices_and_phone_numbers_are_left_alone(text):
    assert redact(text) == (text, {})


def test_a_message_with_several_categories_counts_each():
    text = (
        "card 4111 1111 1111 1111, iban DE89 3704 0044 0532 0130 00, "
        "pw: hunter2, code 4821, ssn 078-05-1120"
    )
    out, counts = redact(text)
    assert counts == {
        "payment_card": 1,
        "iban": 1,
        "password": 1,
        "one_time_code": 1,
        "national_id": 1,
    }
    for secret in ("4111", "DE89", "hunter2", "4821", "078-05"):
        assert secret not in out


def test_only_the_categories_a_system_chose_are_redacted():
    text = "card 4111 1111 1111 1111 and pw: hunter2"
    out, counts = redact(text, categories=["password"])
    assert out == "card 4111 1111 1111 1111 and pw: [redacted: password]"
    assert counts == {"password": 1}
    assert redact(text, categories=[]) == (text, {})


# --- Property: every valid card number, however grouped, is redacted -------------------------


@st.composite
def card_numbers(draw) -> str:
    width, low, high, lengths = draw(st.sampled_from(CARD_RANGES))
    prefix = str(draw(st.integers(low, high))).zfill(width)
    length = draw(st.sampled_from(lengths))
    body = prefix + "".join(str(draw(st.integers(0, 9))) for _ in range(length - len(prefix) - 1))
    for check in "0123456789":
        if luhn_valid(body + check):
            return body + check
    raise AssertionError("some check digit always satisfies Luhn")


@st.composite
def grouped(draw, digits: str) -> str:
    out = []
    i = 0
    while i < len(digits):
        size = draw(st.integers(1, 8))
        out.append(digits[i : i + size])
        i += size
    separators = [draw(st.sampled_from(["", " ", "-"])) for _ in out[1:]]
    text = out[0]
    for sep, group in zip(separators, out[1:], strict=True):
        text += sep + group
    return text


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_valid_card_numbers_in_random_groupings_are_always_redacted(data):
    digits = data.draw(card_numbers())
    written = data.draw(grouped(digits))
    before = data.draw(st.sampled_from(["", "my card ", "Card: ", "(", "paid with "]))
    after = data.draw(st.sampled_from(["", " thanks", ".", ", exp 12/27", ")"]))
    out, counts = redact(before + written + after)
    assert out == before + "[redacted: payment card]" + after
    assert counts == {"payment_card": 1}


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=["Nd"]), max_size=300))
def test_text_without_digits_or_password_words_comes_back_unchanged(text):
    words = ("pw", "pass", "kennwort", "contrase", "wachtwoord")
    if not any(word in text.lower() for word in words):
        assert redact(text) == (text, {})


# --- Per-system setting and counts at ingest --------------------------------------------------


def test_new_systems_redact_every_category(db):
    assert SystemFactory().minimise_categories == ALL


def test_an_unknown_category_is_a_validation_error(db):
    system = SystemFactory.build(minimise_categories=["payment_card", "horoscope"])
    with pytest.raises(ValidationError) as info:
        system.full_clean()
    assert "horoscope" in str(info.value)


def _batch(system: System, texts: list[str], conversation_id: str = "c-1", **extra) -> dict:
    return {
        "system": system.slug,
        "conversation_id": conversation_id,
        "subject": {"customer_id": f"cust-{conversation_id}"},
        "messages": [
            {"sequence": n, "role": "customer", "text": t, "sent_at": START + timedelta(seconds=n)}
            for n, t in enumerate(texts)
        ],
        **extra,
    }


def _counts(system: System) -> dict[str, int]:
    return dict(RedactionCount.objects.filter(system=system).values_list("category", "count"))


@pytest.mark.django_db(transaction=True)
def test_ingest_stores_the_redacted_text_and_counts_per_system_once_per_call():
    shop = SystemFactory(slug="shop")
    bank = SystemFactory(slug="bank", minimise_categories=["password"])
    conversations_ingest(
        conversations=[
            _batch(shop, ["card 4111 1111 1111 1111", "pw: hunter2", "hello", "otp 1234"]),
            _batch(bank, ["card 4111 1111 1111 1111", "pw: hunter2"], conversation_id="c-2"),
        ],
        actor="test",
    )
    texts = dict(
        Message.objects.values_list("conversation__system__slug", "text").filter(sequence=0)
    )
    assert texts == {
        "shop": "card [redacted: payment card]",
        "bank": "card 4111 1111 1111 1111",  # this system chose passwords only
    }
    assert not Message.objects.filter(text__contains="hunter2").exists()
    assert _counts(shop) == {"payment_card": 1, "password": 1, "one_time_code": 1}
    assert _counts(bank) == {"password": 1}

    conversations_ingest(
        conversations=[_batch(shop, ["card 5555 5555 5555 4444"], conversation_id="c-3")],
        actor="test",
    )
    assert _counts(shop) == {"payment_card": 2, "password": 1, "one_time_code": 1}


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_ingest_counts_nothing():
    shop = SystemFactory(slug="shop")
    SubjectFactory(external_id="C-a")
    SubjectFactory(external_id="C-b", identities={"email": "b@example.com"})
    doomed = [
        _batch(shop, ["pw: hunter2", "card 4111 1111 1111 1111"], conversation_id="c-1"),
        {
            **_batch(shop, ["hello"], conversation_id="c-2"),
            # These identities belong to two subjects: the whole batch is refused.
            "subject": {"customer_id": "C-a", "email": "b@example.com"},
        },
    ]
    with pytest.raises(ConflictError):
        conversations_ingest(conversations=doomed, actor="test")
    assert _counts(shop) == {}

    conversations_ingest(conversations=[_batch(shop, ["pw: x1"], "c-9")], actor="test")
    assert _counts(shop) == {"password": 1}


@pytest.mark.django_db(transaction=True)
def test_minimise_text_outside_a_transaction_counts_at_once():
    shop = SystemFactory(slug="shop")
    assert minimise_text(system=shop, text="otp 987654") == "otp [redacted: one-time code]"
    assert _counts(shop) == {"one_time_code": 1}


@pytest.mark.django_db
def test_a_dpo_chooses_a_systems_categories_on_its_admin_page(client):
    from django.urls import reverse

    from tests.factories import StaffUserFactory

    client.force_login(StaffUserFactory())
    system = SystemFactory(slug="shop")
    page = client.get(reverse("admin:compliance_system_change", args=[system.pk]))
    assert page.status_code == 200 and "Never keep in logs" in page.content.decode()
    response = client.post(
        reverse("admin:compliance_system_change", args=[system.pk]),
        {
            "name": system.name,
            "slug": system.slug,
            "owner_contact": system.owner_contact,
            "role": system.role,
            "minimise_categories": ["password", "payment_card"],
            "disclosures-TOTAL_FORMS": "0",
            "disclosures-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    system.refresh_from_db()
    assert sorted(system.minimise_categories) == ["password", "payment_card"]
