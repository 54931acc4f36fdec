"""Finding and redacting emails and phone numbers in free text (compliance.mentions)."""

from __future__ import annotations

import re
import string

import phonenumbers
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from compliance.mentions import (
    EMAIL_MARKER,
    PHONE_MARKER,
    extract_mentions,
    lookup_values,
    mentions_subject,
    phone_like_patterns,
    redact_text,
)

# Regions whose national spelling starts with a 0 (a trunk prefix, or part of the number in
# Italy): those are found without PHONE_DEFAULT_REGION.
ZERO_REGIONS = ["GB", "DE", "FR", "IT", "NL", "AU", "IE", "AT", "BE", "SE", "CH", "NZ"]
OTHER_REGIONS = ["US", "CA", "ES", "PL"]
TYPES = [phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE]


def _numbers(regions):
    numbers = []
    for region in regions:
        for number_type in TYPES:
            example = phonenumbers.example_number_for_type(region, number_type)
            if example is not None:
                numbers.append(
                    phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
                )
    return sorted(set(numbers))


ZERO_NUMBERS = [
    n
    for n in _numbers(ZERO_REGIONS)
    if phonenumbers.format_number(phonenumbers.parse(n), phonenumbers.PhoneNumberFormat.NATIONAL)
    .lstrip("(")
    .startswith("0")
]
ALL_NUMBERS = _numbers(ZERO_REGIONS + OTHER_REGIONS)

no_digits = st.text(alphabet=string.ascii_letters + " ,;!?'", max_size=30)
gaps = st.sampled_from([" ", ": ", "\n", " (", ", ", " - "])
closers = st.sampled_from([" ", ")", ". ", ", ", "!\n", "?"])
separators = st.sampled_from([" ", "-", ".", "", " - ", "/"])


def _groups(e164: str, number_format) -> list[str]:
    formatted = phonenumbers.format_number(phonenumbers.parse(e164), number_format)
    return [g for g in re.split(r"[^\d+]+", formatted) if g]


@st.composite
def spelled_phone(draw, numbers):
    """A phone number written as people write it, with the E.164 value it stands for."""
    e164 = draw(st.sampled_from(numbers))
    sep = draw(separators)
    style = draw(st.sampled_from(["e164", "plus", "double_zero", "plus_trunk", "national"]))
    if style == "e164":
        return e164, e164
    international = _groups(e164, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    country, rest = international[0].lstrip("+"), international[1:]
    if style == "plus":
        return sep.join(["+" + country, *rest]), e164
    if style == "double_zero":
        prefix = draw(st.sampled_from(["00" + country, f"(00{country})"]))
        return sep.join([prefix, *rest]), e164
    national = _groups(e164, phonenumbers.PhoneNumberFormat.NATIONAL)
    if style == "plus_trunk" and national[0].startswith("0") and not rest[0].startswith("0"):
        return sep.join([f"+{country} (0){rest[0]}", *rest[1:]]), e164
    if national[0].startswith("0") or draw(st.booleans()):
        first = national[0]
        if draw(st.booleans()):
            first = f"({first})"
        return sep.join([first, *national[1:]]), e164
    return sep.join(["+" + country, *rest]), e164


@st.composite
def email(draw):
    local = draw(st.from_regex(r"[a-z0-9]([a-z0-9_+-]|\.[a-z0-9]){0,15}", fullmatch=True))
    labels = draw(
        st.lists(
            st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True),
            min_size=1,
            max_size=3,
        )
    )
    tld = draw(st.from_regex(r"[a-z]{2,6}", fullmatch=True))
    return f"{local}@{'.'.join([*labels, tld])}"


def _random_case(draw, value: str) -> str:
    flips = draw(st.lists(st.booleans(), min_size=len(value), max_size=len(value)))
    return "".join(c.upper() if flip else c for c, flip in zip(value, flips, strict=True))


@given(data=st.data(), address=email(), before=no_digits, after=no_digits)
def test_an_email_is_found_in_any_case_and_redacted_alone(data, address, before, after):
    written = _random_case(data.draw, address)
    text = before + data.draw(gaps) + written + data.draw(closers) + after

    assert ("email", address) in extract_mentions(text)
    redacted, replaced = redact_text(text, emails=[address], phones=[])
    assert replaced == 1
    assert EMAIL_MARKER in redacted
    assert address not in redacted.lower()
    assert redacted.startswith(before) and redacted.endswith(after)


@given(data=st.data(), spelled=spelled_phone(ZERO_NUMBERS), before=no_digits, after=no_digits)
def test_a_phone_number_is_found_in_its_common_spellings_without_a_region(
    data, spelled, before, after
):
    written, e164 = spelled
    text = before + data.draw(gaps) + written + data.draw(closers) + after

    assert extract_mentions(text) & lookup_values(emails=[], phones=[e164]), written
    redacted, replaced = redact_text(text, emails=[], phones=[e164])
    assert replaced == 1, written
    assert PHONE_MARKER in redacted
    assert not mentions_subject(redacted, emails=[], phones=[e164])
    assert redacted.startswith(before) and redacted.endswith(after)


@hypothesis_settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), spelled=spelled_phone(["+12015550123", "+14155550123"]))
def test_a_phone_number_without_trunk_prefix_is_found_with_the_default_region(
    data, spelled, settings
):
    settings.PHONE_DEFAULT_REGION = "US"
    written, e164 = spelled
    text = "call me" + data.draw(gaps) + written + data.draw(closers) + "thanks"

    assert ("phone", e164) in extract_mentions(text), written
    redacted, _ = redact_text(text, emails=[], phones=[e164])
    assert not mentions_subject(redacted, emails=[], phones=[e164])


@st.composite
def harmless_text(draw):
    """Words and small numbers, never two numbers in a row: nothing that is an identifier."""
    words = draw(
        st.lists(
            st.one_of(
                st.from_regex(r"[A-Za-z]{1,10}", fullmatch=True),
                st.integers(min_value=0, max_value=999).map(str),
            ),
            max_size=20,
        )
    )
    cleaned = []
    for word in words:
        if cleaned and word.isdigit() and cleaned[-1].isdigit():
            continue
        cleaned.append(word)
    return " ".join(cleaned)


@given(text=harmless_text())
def test_text_without_identifiers_mentions_nobody(text):
    assert extract_mentions(text) == set()


@given(address=email(), spelled=spelled_phone(ALL_NUMBERS), filler=no_digits)
def test_redacting_twice_changes_nothing_the_second_time(address, spelled, filler):
    written, e164 = spelled
    text = f"{filler} {address} {written} {filler}"
    once, _ = redact_text(text, emails=[address], phones=[e164])
    twice, replaced = redact_text(once, emails=[address], phones=[e164])
    assert twice == once
    assert replaced == 0


@given(e164=st.sampled_from(ALL_NUMBERS), sep=separators)
def test_like_patterns_match_the_standard_groupings(e164, sep):
    national = _groups(e164, phonenumbers.PhoneNumberFormat.NATIONAL)
    international = _groups(e164, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    spellings = [sep.join(national), sep.join(international), e164, "00" + e164[1:]]
    patterns = [
        re.compile(".*".join(re.escape(part) for part in p.split("%")), re.S)
        for p in phone_like_patterns(e164)
    ]
    for spelling in spellings:
        assert any(p.search(f"x {spelling} y") for p in patterns), spelling


def test_another_address_that_contains_the_subjects_is_left_alone():
    text = "write to joanna@example.com or anna@example.com.au, not ANNA@example.com."
    redacted, replaced = redact_text(text, emails=["anna@example.com"], phones=[])
    assert replaced == 1
    assert redacted == ("write to joanna@example.com or anna@example.com.au, not [redacted email].")


def test_another_number_that_contains_the_subjects_digits_is_left_alone():
    text = "ref 442079460958123 or +44 20 7946 0958"
    redacted, replaced = redact_text(text, emails=[], phones=["+442079460958"])
    assert replaced == 1
    assert redacted == "ref 442079460958123 or [redacted phone]"


def test_two_numbers_written_one_after_the_other_are_both_found():
    found = extract_mentions("call 020 7946 0958 0207 946 0959")
    assert found == {("phone", "national:2079460958"), ("phone", "national:2079460959")}


@pytest.mark.parametrize(
    "text",
    [
        "order 12345678 placed on 2024-01-15 at 10:30",
        "my card ends in 4242 and the total is 1234.56",
        "version 10.0.19045.3803",
    ],
)
def test_dates_amounts_and_codes_are_not_phone_numbers(text):
    assert extract_mentions(text) == set()


@pytest.mark.parametrize("text", ["due 05.03.2024", "born 01/02/1990", "on 2024-01-05"])
def test_dates_with_a_leading_zero_are_not_national_numbers(text):
    assert extract_mentions(text) == set()
