"""Email addresses and phone numbers that people type into the free text of a chat.

Customers write their contact details into conversations that are not keyed to them (a
colleague's chat, an anonymous chat, a chat under another account). GDPR Art. 15 and 17
reach those mentions too, so every connector looks for a subject's identifiers in message
text, and erasure redacts them there.

Values are normalized exactly like ``SubjectIdentity`` values (``compliance.identities``):
emails lower-cased, phone numbers in E.164. A phone number written in national form
(``020 7946 0958``) cannot be put into E.164 without knowing its country; unless
``PHONE_DEFAULT_REGION`` makes it a valid number, it is also kept as a *national key*,
``national:`` + its digits without the trunk ``0`` (``national:2079460958``), which
``phone_lookup_values`` derives from a subject's E.164 number in the same way.

Ingest extracts mentions of every stored message, so the no-candidate path (no ``@`` and
no run of seven digits) must stay one or two regex scans. Ingest skips this module (and
minimisation) for text without "@", digits or a password keyword
(``compliance.minimisation.may_hold_identifiers``): a detector added here that needs neither
"@" nor a digit must be added to that pre-check too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import phonenumbers
from django.conf import settings

from compliance.identities import InvalidIdentity, normalize_email, normalize_phone
from compliance.models import IdentityType

EMAIL = IdentityType.EMAIL.value
PHONE = IdentityType.PHONE.value
NATIONAL_PREFIX = "national:"

EMAIL_MARKER = "[redacted email]"
PHONE_MARKER = "[redacted phone]"
MARKERS = {EMAIL: EMAIL_MARKER, PHONE: PHONE_MARKER}

_EMAIL_RE = re.compile(
    r"(?<![A-Za-z0-9._%+'-])"
    r"[A-Za-z0-9][A-Za-z0-9._%+'-]*@"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+"
)
# A digit, then 6 to 29 more digits each after at most four separators: seven or more
# digits written the way people write phone numbers (+44 (0)20 7946-0958, 0044.20...),
# long enough to hold two numbers written one after the other.
_PHONE_RE = re.compile(r"(?<![\w+])\+?\(?\d(?:[ \t.\-/()\u00a0]{0,4}\d){6,29}(?!\d)")
_NON_DIGIT = re.compile(r"\D")
MIN_PHONE_DIGITS = 7
MAX_PHONE_DIGITS = 17
# A national number with its trunk prefix is 8 to 13 digits in the countries that write one
# (SE 8-10, UK 11, FR 10, DE 10-13, IT 9-11); shorter zero-led runs are codes. Dates
# (05.03.2024) are zero-led too, and are told apart by their shape.
_NATIONAL_DIGITS = range(8, 14)
_DATE = re.compile(r"^\(?\d{1,4}[./-]\d{1,2}[./-]\d{1,4}\)?$")


@dataclass(frozen=True, slots=True)
class Span:
    start: int
    end: int
    type: str
    value: str


def _region() -> str | None:
    return getattr(settings, "PHONE_DEFAULT_REGION", None) or None


def national_key(digits: str) -> str:
    """The region-free key of a national spelling: its digits without one trunk ``0``."""
    return NATIONAL_PREFIX + (digits[1:] if digits.startswith("0") else digits)


def _international(raw: str) -> bool:
    return raw.startswith("+") or raw.lstrip("(").startswith("00")


def _phone_value(raw: str, digits: str, region: str | None) -> str | None:
    """The normalized value of one candidate, or None if it is not a phone number."""
    if region or _international(raw):
        try:
            return normalize_phone(raw, region=region)
        except InvalidIdentity:
            pass
    if (
        not _international(raw)
        and digits.startswith("0")
        and len(digits) in _NATIONAL_DIGITS
        and not _DATE.match(raw)
    ):
        return national_key(digits)
    return None


def _split_glued(raw: str, region: str | None) -> list[tuple[int, int, str]]:
    """Two numbers written one after the other (``020 7946 0958 0207 946 0959``) form one
    candidate; try each separator as the boundary between them."""
    for gap in re.finditer(r"[ \t\u00a0/]+", raw):
        left, right = raw[: gap.start()], raw[gap.end() :]
        left_value = _phone_value(left, _NON_DIGIT.sub("", left), region)
        right_value = _phone_value(right, _NON_DIGIT.sub("", right), region)
        if left_value and right_value:
            return [(0, gap.start(), left_value), (gap.end(), len(raw), right_value)]
    return []


def _phone_spans(text: str, region: str | None) -> list[Span]:
    spans: list[Span] = []
    for match in _PHONE_RE.finditer(text):
        raw = match.group()
        digits = _NON_DIGIT.sub("", raw)
        if len(digits) < MIN_PHONE_DIGITS:
            continue
        value = _phone_value(raw, digits, region) if len(digits) <= MAX_PHONE_DIGITS else None
        if value is not None:
            spans.append(Span(match.start(), match.end(), PHONE, value))
        elif len(digits) >= 2 * MIN_PHONE_DIGITS:
            spans.extend(
                Span(match.start() + start, match.start() + end, PHONE, value)
                for start, end, value in _split_glued(raw, region)
            )
    if region:
        # With a default region, libphonenumber's matcher also finds national spellings the
        # cheap pass cannot parse (unusual groupings, extensions). It costs ~50 µs, so it only
        # runs on text that already has a candidate.
        for found in phonenumbers.PhoneNumberMatcher(text, region):
            value = phonenumbers.format_number(found.number, phonenumbers.PhoneNumberFormat.E164)
            spans.append(Span(found.start, found.end, PHONE, value))
    return spans


def find_spans(text: str) -> list[Span]:
    """Every email address and phone number in ``text`` with its position, normalized."""
    spans: list[Span] = []
    if "@" in text:
        for match in _EMAIL_RE.finditer(text):
            try:
                value = normalize_email(match.group())
            except InvalidIdentity:
                continue
            spans.append(Span(match.start(), match.end(), EMAIL, value))
    if _PHONE_RE.search(text) is not None:
        spans.extend(_phone_spans(text, _region()))
    return spans


def extract_mentions(text: str) -> set[tuple[str, str]]:
    """The ``(type, normalized value)`` pairs mentioned in ``text``."""
    return {(span.type, span.value) for span in find_spans(text)}


def phone_lookup_values(e164: str) -> set[str]:
    """What a subject's phone number can appear as among extracted mentions."""
    values = {e164}
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return values
    values.add(national_key(phonenumbers.national_significant_number(parsed)))
    return values


def lookup_values(*, emails: Iterable[str], phones: Iterable[str]) -> set[tuple[str, str]]:
    """The ``(type, value)`` pairs that mean "this subject is mentioned"."""
    pairs = {(EMAIL, email) for email in emails}
    for phone in phones:
        pairs.update((PHONE, value) for value in phone_lookup_values(phone))
    return pairs


def _group_digits(formatted: str) -> list[str]:
    return [
        g for g in (_NON_DIGIT.sub("", part) for part in re.split(r"[\s\-.()/]+", formatted)) if g
    ]


def phone_like_patterns(e164: str) -> list[str]:
    """``LIKE`` patterns that find a phone number in its common spellings (any separators,
    brackets, ``+44``/``0044``/``(0)``/national ``0`` prefixes) when its digits are grouped
    the way the country writes them or not at all. For sources that cannot use the mention
    index; every row they find is confirmed with ``find_spans``."""
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return [f"%{escape_like(e164)}%"]
    national = _group_digits(
        phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)
    )
    international = _group_digits(
        phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    )
    patterns = {
        "%" + "%".join(international) + "%",
        "%" + "%".join(national) + "%",
        "%" + phonenumbers.national_significant_number(parsed) + "%",
    }
    return sorted(patterns)


def escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def email_like_patterns(email: str) -> list[str]:
    return [f"%{escape_like(email)}%"]


_LOCAL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789._%+'-")
_DOMAIN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")


def _occurrences(haystack: str, needle: str) -> Iterator[int]:
    start = haystack.find(needle)
    while start != -1:
        yield start
        start = haystack.find(needle, start + 1)


def _email_bounded(lowered: str, start: int, end: int) -> bool:
    if start > 0 and lowered[start - 1] in _LOCAL_CHARS:
        return False
    if end < len(lowered):
        after = lowered[end]
        if after in _DOMAIN_CHARS:
            return False
        if after == "." and end + 1 < len(lowered) and lowered[end + 1] in _DOMAIN_CHARS:
            return False
    return True


def _literal_spans(text: str, *, emails: Iterable[str], phones: Iterable[str]) -> list[Span]:
    """Exact spellings the extractor may have missed (a region-dependent national form):
    the email, the E.164 number, its digits and its national digits, bounded by non-digits.
    Plain substring search: compiling a pattern per identifier would cost more than it finds."""
    spans: list[Span] = []
    lowered = text.lower() if emails else text
    for email in emails:
        for start in _occurrences(lowered, email):
            end = start + len(email)
            if _email_bounded(lowered, start, end):
                spans.append(Span(start, end, EMAIL, email))
    for phone in phones:
        spellings = {phone, phone.lstrip("+"), "00" + phone.lstrip("+")}
        try:
            nsn = phonenumbers.national_significant_number(phonenumbers.parse(phone, None))
            spellings.update({nsn, "0" + nsn})
        except phonenumbers.NumberParseException:
            pass
        for spelling in spellings:
            if len(_NON_DIGIT.sub("", spelling)) < MIN_PHONE_DIGITS:
                continue
            for start in _occurrences(text, spelling):
                end = start + len(spelling)
                if start > 0 and text[start - 1] in "0123456789+":
                    continue
                if end < len(text) and text[end].isdigit():
                    continue
                spans.append(Span(start, end, PHONE, phone))
    return spans


def subject_spans(text: str, *, emails: Iterable[str], phones: Iterable[str]) -> list[Span]:
    """Where this subject's emails and phone numbers appear in ``text``."""
    emails, phones = tuple(emails), tuple(phones)
    wanted = lookup_values(emails=emails, phones=phones)
    spans = [s for s in find_spans(text) if (s.type, s.value) in wanted]
    spans.extend(_literal_spans(text, emails=emails, phones=phones))
    return spans


def mentions_subject(text: str, *, emails: Iterable[str], phones: Iterable[str]) -> bool:
    return bool(subject_spans(text, emails=emails, phones=phones))


def redact_text(text: str, *, emails: Iterable[str], phones: Iterable[str]) -> tuple[str, int]:
    """Replace every spelling of this subject's emails and phone numbers with a marker,
    keeping the rest of the text (it may be someone else's message: GDPR Art. 17 reaches the
    subject's data in it, not the message). Returns the new text and the number of
    replacements; redacting twice changes nothing the second time."""
    spans = sorted(
        subject_spans(text, emails=emails, phones=phones), key=lambda s: (s.start, -s.end)
    )
    if not spans:
        return text, 0
    merged: list[Span] = []
    for span in spans:
        if merged and span.start < merged[-1].end:
            last = merged[-1]
            merged[-1] = Span(last.start, max(last.end, span.end), last.type, last.value)
        else:
            merged.append(span)
    parts: list[str] = []
    position = 0
    for span in merged:
        parts.append(text[position : span.start])
        parts.append(MARKERS[span.type])
        position = span.end
    parts.append(text[position:])
    return "".join(parts), len(merged)
