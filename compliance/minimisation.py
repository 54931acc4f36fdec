"""Data minimisation at ingest (GDPR Art. 5(1)(c)): categories a system's logs must never
keep are redacted before a message is stored.

Each system lists the categories to redact in ``System.minimise_categories`` (all of them by
default). A redaction leaves a marker naming what was removed, e.g.
``[redacted: payment card]``, so a reader of the log knows something was there.

What is detected (see docs/retention.md for the full list and its limits):

* ``payment_card``: 13 to 19 digits starting 2-6 (the card networks' major industry
  identifiers), in any grouping with single spaces or dashes, that pass the Luhn check.
* ``iban``: a known country code, two check digits and the country's BBAN length, with or
  without spaces, that pass the ISO 13616 mod-97 check.
* ``national_id``: US SSN (``123-45-6789``, ``123 45 6789``, or nine digits after "SSN"),
  UK National Insurance number, German tax id (Steuer-IdNr, ISO 7064 check digit and digit
  pattern), French NIR (with its key), Spanish DNI and NIE (check letter), Italian codice
  fiscale (check character), Dutch BSN (11-proof, after "BSN" or "burgerservicenummer").
* ``one_time_code``: 4 to 8 digits after "code", "OTP", "PIN", "TAN", "verification code"
  and the like (not after "zip code", "postal code", "error code", ...).
* ``password``: what follows "password is", "my password:", "pw:", "pwd=", "Passwort ist",
  "mot de passe :", "contraseña es", "wachtwoord:" (one word, or a quoted phrase).

Cost: most messages contain neither two adjacent digits nor a password keyword; for them
the work is one regex scan and one lowercase substring search. Only messages that pass that
gate meet the per-category patterns, and only a pattern's matches meet the checksums.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING

from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

if TYPE_CHECKING:
    from compliance.models import System

logger = logging.getLogger(__name__)


class MinimisationCategory(models.TextChoices):
    PAYMENT_CARD = "payment_card", _("Payment card numbers")
    IBAN = "iban", _("Bank account numbers (IBAN)")
    NATIONAL_ID = "national_id", _("National identification numbers")
    ONE_TIME_CODE = "one_time_code", _("One-time codes (OTP, PIN, TAN)")
    PASSWORD = "password", _("Passwords typed into the chat")


# The words inside the marker; stable, because readers and exports may look for them.
MARKER_LABELS = {
    MinimisationCategory.PAYMENT_CARD: "payment card",
    MinimisationCategory.IBAN: "IBAN",
    MinimisationCategory.NATIONAL_ID: "national ID",
    MinimisationCategory.ONE_TIME_CODE: "one-time code",
    MinimisationCategory.PASSWORD: "password",
}


def marker(category: str) -> str:
    return f"[redacted: {MARKER_LABELS[category]}]"


def minimisation_default_categories() -> list[str]:
    """Default for new systems: redact every category (privacy by default, Art. 25(2))."""
    return list(MinimisationCategory.values)


def validate_minimise_categories(value: object) -> None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValidationError(_("Give a list of minimisation categories."))
    unknown = sorted(set(value) - set(MinimisationCategory.values))
    if unknown:
        raise ValidationError(
            _("Unknown minimisation categories: %(unknown)s. Known: %(known)s."),
            params={
                "unknown": ", ".join(unknown),
                "known": ", ".join(MinimisationCategory.values),
            },
        )


# --- Checksums -------------------------------------------------------------------------------


def luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        d = ord(char) - 48
        if index % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


# ISO 13616 registry: total IBAN length per country.
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20,
    "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30,
    "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22,
    "SA": 24, "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23,
    "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip


def iban_valid(iban: str) -> bool:
    """``iban`` without spaces, upper case."""
    if IBAN_LENGTHS.get(iban[:2]) != len(iban) or not iban[2:4].isdigit():
        return False
    rearranged = iban[4:] + iban[:4]
    number = "".join(str(int(c, 36)) for c in rearranged)
    return int(number) % 97 == 1


def steuer_id_valid(digits: str) -> bool:
    """German Steuerliche Identifikationsnummer: 11 digits, no leading zero; among the first
    ten exactly one digit occurs two or three times (the others at most once); the last is
    an ISO 7064 MOD 11,10 check digit."""
    if len(digits) != 11 or digits[0] == "0":
        return False
    counts = sorted((digits[:10].count(d) for d in set(digits[:10])), reverse=True)
    if counts[0] not in (2, 3) or (len(counts) > 1 and counts[1] != 1):
        return False
    product = 10
    for char in digits[:10]:
        total = (int(char) + product) % 10 or 10
        product = (total * 2) % 11
    check = 11 - product
    return (0 if check == 10 else check) == int(digits[10])


def nir_valid(body: str, key: str) -> bool:
    """French NIR: 13 characters (Corsica's departments 2A/2B count as 19/18) and a key
    of 97 minus the number modulo 97."""
    number = body.replace("2A", "19").replace("2B", "18")
    if not number.isdigit():
        return False
    return 97 - int(number) % 97 == int(key)


_DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"


def dni_valid(number: str, letter: str) -> bool:
    return _DNI_LETTERS[int(number) % 23] == letter.upper()


_CF_ODD = dict(
    zip(
        "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ",
        [1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20,
         11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24, 23],
        strict=True,
    )
)  # fmt: skip


def codice_fiscale_valid(code: str) -> bool:
    code = code.upper()
    total = 0
    for index, char in enumerate(code[:15]):
        if index % 2 == 0:
            total += _CF_ODD[char]
        else:
            total += int(char) if char.isdigit() else ord(char) - 65
    return chr(65 + total % 26) == code[15]


def bsn_valid(digits: str) -> bool:
    """Dutch BSN 11-proof: sum of digits weighted 9..2, minus the last, divisible by 11."""
    digits = digits.zfill(9)
    if len(digits) != 9 or digits == "000000000":
        return False
    total = sum(int(d) * w for d, w in zip(digits[:8], range(9, 1, -1), strict=True))
    return (total - int(digits[8])) % 11 == 0


def ssn_valid(area: str, group: str, serial: str) -> bool:
    return area != "000" and area != "666" and area[0] != "9" and group != "00" and serial != "0000"


# --- Detectors -------------------------------------------------------------------------------
#
# Each detector rewrites the text and returns it with the number of redactions. They run one
# after another on the progressively redacted text; markers contain no digits, so a marker is
# never taken for a candidate by the next detector.

Detector = Callable[[str], tuple[str, int]]


def _replace(
    pattern: re.Pattern[str],
    text: str,
    check: Callable[[re.Match[str]], bool],
    category: str,
    group: int = 0,
) -> tuple[str, int]:
    count = 0
    label = marker(category)

    def substitute(match: re.Match[str]) -> str:
        nonlocal count
        if not check(match):
            return match.group(0)
        count += 1
        whole = match.group(0)
        start = match.start(group) - match.start(0)
        end = match.end(group) - match.start(0)
        return whole[:start] + label + whole[end:]

    return pattern.sub(substitute, text), count


_CARD = re.compile(r"(?<![\d+])(?<!\d[ -])[2-6](?:[ -]?\d){12,18}(?![ -]?\d)")

# Issuer prefixes and lengths of the card networks (ISO/IEC 7812 IIN ranges as published by
# the networks): Luhn alone lets one random number in ten through, the prefix and length
# table keeps most order and invoice numbers out.
_ANY = tuple(range(13, 20))
CARD_RANGES: list[tuple[int, int, int, tuple[int, ...]]] = [
    # (prefix digits, lowest prefix, highest prefix, lengths)
    (1, 4, 4, (13, 16, 19)),  # Visa
    (2, 51, 55, (16,)),  # Mastercard
    (4, 2221, 2720, (16,)),  # Mastercard 2-series
    (4, 2200, 2204, (16, 17, 18, 19)),  # Mir
    (2, 34, 34, (15,)),  # American Express
    (2, 37, 37, (15,)),
    (3, 300, 305, (14, 15, 16, 17, 18, 19)),  # Diners Club
    (2, 36, 36, (14, 15, 16, 17, 18, 19)),
    (2, 38, 39, (14, 15, 16, 17, 18, 19)),
    (4, 3528, 3589, (16, 17, 18, 19)),  # JCB
    (2, 50, 50, _ANY),  # Maestro
    (2, 56, 69, _ANY),  # Maestro, Discover, UnionPay, RuPay and the rest of the 6-series
]


def card_number_valid(digits: str) -> bool:
    """13 to 19 digits in a card network's range that pass the Luhn check."""
    if not 13 <= len(digits) <= 19:
        return False
    for width, low, high, lengths in CARD_RANGES:
        if low <= int(digits[:width]) <= high and len(digits) in lengths:
            return luhn_valid(digits)
    return False


def _card_ok(match: re.Match[str]) -> bool:
    return card_number_valid(match.group(0).replace(" ", "").replace("-", ""))


def redact_payment_cards(text: str) -> tuple[str, int]:
    return _replace(_CARD, text, _card_ok, MinimisationCategory.PAYMENT_CARD)


_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?: ?[A-Za-z0-9]){11,30}")


def redact_ibans(text: str) -> tuple[str, int]:
    """The pattern may run on into the next word ("... 0130 00 please"): the country's
    length decides where the IBAN ends, and the character after it must not continue it."""
    out: list[str] = []
    last = 0
    count = 0
    label = marker(MinimisationCategory.IBAN)
    for match in _IBAN.finditer(text):
        candidate = match.group(0)
        length = IBAN_LENGTHS.get(candidate[:2].upper())
        if length is None:
            continue
        seen = 0
        end = None
        for offset, char in enumerate(candidate):
            if char != " ":
                seen += 1
                if seen == length:
                    end = offset + 1
                    break
        if end is None:
            continue
        stop = match.start() + end
        if stop < len(text) and text[stop].isalnum():
            continue
        if not iban_valid(candidate[:end].replace(" ", "").upper()):
            continue
        out.append(text[last : match.start()])
        out.append(label)
        last = stop
        count += 1
    if not count:
        return text, 0
    out.append(text[last:])
    return "".join(out), count


_SSN = re.compile(r"(?<![\d-])(\d{3})([- ])(\d{2})\2(\d{4})(?![\d-])")
_SSN_KEYWORD = re.compile(
    r"\b(?:ssn|social\s+security(?:\s+(?:number|no\.?|#))?)\b\D{0,15}?(?<!\d)(\d{9})(?!\d)",
    re.IGNORECASE,
)
_NINO = re.compile(r"\b([A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]) ?(\d{2}) ?(\d{2}) ?(\d{2}) ?([A-D])\b")
_NINO_NEVER = {"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"}
_STEUER_ID = re.compile(r"(?<![\d-])([1-9]\d) ?(\d{3}) ?(\d{3}) ?(\d{3})(?![\d-])")
_NIR = re.compile(
    r"(?<![\dA-Za-z])([1-478]) ?(\d{2}) ?(\d{2}) ?(\d{2}|2[AB]) ?(\d{3}) ?(\d{3}) ?(\d{2})(?!\d)"
)
_DNI = re.compile(r"(?<![\dA-Za-z])(\d{8})[ -]?([A-Za-z])(?![A-Za-z0-9])")
_NIE = re.compile(r"(?<![A-Za-z0-9])([XYZxyz])[ -]?(\d{7})[ -]?([A-Za-z])(?![A-Za-z0-9])")
_CF_DIGIT = r"[\dLMNP-Vlmnp-v]"  # omocodia: digits may be replaced by these letters
_CODICE_FISCALE = re.compile(
    rf"(?<![A-Za-z0-9])[A-Za-z]{{6}}{_CF_DIGIT}{{2}}[A-EHLMPR-Ta-ehlmpr-t]{_CF_DIGIT}{{2}}"
    rf"[A-Za-z]{_CF_DIGIT}{{3}}[A-Za-z](?![A-Za-z0-9])"
)
_BSN = re.compile(
    r"\b(?:bsn|burgerservicenummer|sofi-?nummer|citizen\s+service\s+number)\b\D{0,20}?"
    r"(?<!\d)(\d{4}[ .]?\d{2}[ .]?\d{3}|\d{8})(?!\d)",
    re.IGNORECASE,
)


def _digits(match: re.Match[str], *groups: int) -> str:
    return "".join(match.group(g) for g in groups)


def _nie_ok(match: re.Match[str]) -> bool:
    # The NIE's leading X, Y or Z stands for 0, 1 or 2 in the check-letter computation.
    prefix = "XYZ".index(match.group(1).upper())
    return dni_valid(f"{prefix}{match.group(2)}", match.group(3))


def _run_steps(text: str, steps) -> tuple[str, int]:
    total = 0
    for pattern, check, group in steps:
        text, count = _replace(pattern, text, check, MinimisationCategory.NATIONAL_ID, group)
        total += count
    return text, total


def _national_id(pattern: re.Pattern[str], check: Callable[[re.Match[str]], bool]) -> Detector:
    """A detector of one national id recognisable by its shape and check digits alone."""

    def detect(text: str) -> tuple[str, int]:
        return _replace(pattern, text, check, MinimisationCategory.NATIONAL_ID)

    return detect


redact_ssns = _national_id(_SSN, lambda m: ssn_valid(m.group(1), m.group(3), m.group(4)))
redact_ninos = _national_id(_NINO, lambda m: m.group(1) not in _NINO_NEVER)
redact_steuer_ids = _national_id(_STEUER_ID, lambda m: steuer_id_valid(_digits(m, 1, 2, 3, 4)))
redact_nirs = _national_id(_NIR, lambda m: nir_valid(_digits(m, 1, 2, 3, 4, 5, 6), m.group(7)))
redact_dnis = _national_id(_DNI, lambda m: dni_valid(m.group(1), m.group(2)))
redact_nies = _national_id(_NIE, _nie_ok)


def redact_national_ids(text: str) -> tuple[str, int]:
    """Every national id of the list, whatever the message looks like (for callers outside
    the gated ``minimise_text_counted``)."""
    total = 0
    for detector in (
        redact_keyed_national_ids, redact_ssns, redact_ninos, redact_steuer_ids, redact_nirs,
        redact_dnis, redact_nies, redact_codici_fiscali,
    ):  # fmt: skip
        text, count = detector(text)
        total += count
    return text, total


def redact_keyed_national_ids(text: str) -> tuple[str, int]:
    """Bare nine-digit SSNs and BSNs: only after their name, or every order number with a
    lucky check digit would go."""
    return _run_steps(
        text,
        [
            (
                _SSN_KEYWORD,
                lambda m: ssn_valid(m.group(1)[:3], m.group(1)[3:5], m.group(1)[5:]),
                1,
            ),
            (_BSN, lambda m: bsn_valid(re.sub(r"[ .]", "", m.group(1))), 1),
        ],
    )


_OTP = re.compile(
    r"\b(?:code|codes|otp|pin|tan|passcode|one[- ]time\s+(?:code|password|pin)|"
    r"bestätigungscode|sicherheitscode|einmalcode|codice|c[óo]digo)\b"
    r"[^\d\n]{0,20}?(?<!\d)(\d(?:[ -]?\d){3,7})(?![ -]?\d)",
    re.IGNORECASE,
)
# "zip code 10115" or "error code 4040" are not one-time codes.
_NOT_OTP_BEFORE = re.compile(
    r"\b(?:zip|postal|post|postcode|area|country|dialling|dialing|promo|promotion|discount|"
    r"voucher|coupon|gift|tracking|product|error|status|sort|source|bank|swift|branch|"
    r"tax|zone|region)\W*$",
    re.IGNORECASE,
)


def redact_codici_fiscali(text: str) -> tuple[str, int]:
    """Italian tax codes: letters and digits mixed, so they pass no digit-cluster gate."""
    return _replace(
        _CODICE_FISCALE,
        text,
        lambda m: codice_fiscale_valid(m.group(0)),
        MinimisationCategory.NATIONAL_ID,
    )


def redact_one_time_codes(text: str) -> tuple[str, int]:
    def check(match: re.Match[str]) -> bool:
        before = text[max(0, match.start() - 20) : match.start()]
        return _NOT_OTP_BEFORE.search(before) is None

    return _replace(_OTP, text, check, MinimisationCategory.ONE_TIME_CODE, 1)


_PASSWORD = re.compile(
    r"\b(?:password|passwort|passwd|passcode|pass\s+word|pwd?|kennwort|mot\s+de\s+passe|"
    r"contrase[ñn]a|wachtwoord)\b"
    r"(?:\s+(?:is\s+now|would\s+be|is|was|ist|war|lautet|est|es)\b|\s*[:=])\s*[:=]?\s*"
    r"(\"[^\"\n]{1,100}\"|'[^'\n]{1,100}'|“[^”\n]{1,100}”|«[^»\n]{1,100}»|\S{1,100})",
    re.IGNORECASE,
)


def redact_passwords(text: str) -> tuple[str, int]:
    return _replace(_PASSWORD, text, lambda m: True, MinimisationCategory.PASSWORD, 1)


# Keywords a detector needs (in the lower-cased message); checked with substring searches,
# which cost far less than the keyword-led patterns themselves.
_PASSWORD_WORDS = (
    "passw", "passc", "pass word", "pw", "kennwort", "mot de passe", "contrase", "wachtwoord",
)  # fmt: skip
_ID_WORDS = ("ssn", "social security", "bsn", "burgerservice", "sofi", "citizen service")
_OTP_WORDS = ("code", "codice", "digo", "otp", "pin", "tan", "one-time", "one time")
_CORSICA = ("2a", "2b")

# (category, digits the message's longest digit run must have, keywords it must contain,
# detector). A digit run is digits joined by at most one space, dot, dash or slash: a card
# needs 13, an SSN 9 ("078-05-1120"), a NINO 6 ("12 34 56"), and so on; the run is measured
# once per message, so a phone number or an order number meets only the few patterns it
# could be. Order matters: a password may hold digits that would otherwise look like a
# one-time code, and an IBAN's digits like a card, so the more specific detectors run first.
#
# Where a value lies inside one digit run (plus a letter or two around it), the detector's
# pattern is first tried on a short window around each long-enough run only: a phone number
# in a long message then costs a few short searches instead of a scan per pattern.
DETECTORS: list[tuple[str, int, tuple[str, ...], re.Pattern[str] | None, Detector]] = [
    (MinimisationCategory.PASSWORD, 0, _PASSWORD_WORDS, None, redact_passwords),
    (MinimisationCategory.IBAN, 6, (), None, redact_ibans),
    (MinimisationCategory.PAYMENT_CARD, 13, (), _CARD, redact_payment_cards),
    (MinimisationCategory.NATIONAL_ID, 8, _ID_WORDS, None, redact_keyed_national_ids),
    (MinimisationCategory.NATIONAL_ID, 9, (), _SSN, redact_ssns),
    (MinimisationCategory.NATIONAL_ID, 6, (), _NINO, redact_ninos),
    (MinimisationCategory.NATIONAL_ID, 11, (), _STEUER_ID, redact_steuer_ids),
    (MinimisationCategory.NATIONAL_ID, 13, (), _NIR, redact_nirs),
    # Corsica's NIR ("2 69 02 2A 934 173 49") spans two digit runs.
    (MinimisationCategory.NATIONAL_ID, 6, _CORSICA, None, redact_nirs),
    (MinimisationCategory.NATIONAL_ID, 8, (), _DNI, redact_dnis),
    (MinimisationCategory.NATIONAL_ID, 7, (), _NIE, redact_nies),
    # Three digits in a row: "RSSMRA85T10A562S" (an omocodic code may have fewer: missed).
    (MinimisationCategory.NATIONAL_ID, 3, (), None, redact_codici_fiscali),
    (MinimisationCategory.ONE_TIME_CODE, 4, _OTP_WORDS, None, redact_one_time_codes),
]
# Letters a windowed value may have around its digit run: "AB 12 34 56 C", "X-1234567-L".
_WINDOW_BEFORE, _WINDOW_AFTER = 4, 3
_DIGIT_RUN = re.compile(r"\d(?:[ ./-]?\d)+")
_SEPARATORS = str.maketrans("", "", " ./-")


def _has_digit(text: str) -> bool:
    # Ten substring searches beat one regex scan on the many messages without any digit.
    return (
        "0" in text or "1" in text or "2" in text or "3" in text or "4" in text
        or "5" in text or "6" in text or "7" in text or "8" in text or "9" in text
    )  # fmt: skip


def _has_password_word(lowered: str) -> bool:
    return (
        "passw" in lowered or "passc" in lowered or "pass word" in lowered or "pw" in lowered
        or "kennwort" in lowered or "mot de passe" in lowered or "contrase" in lowered
        or "wachtwoord" in lowered
    )  # fmt: skip


_ANY_DIGIT = re.compile(r"\d")


def may_hold_identifiers(text: str) -> bool:
    """False only if neither minimisation (any category) nor mention extraction
    (``compliance.mentions``) can find anything in ``text``, so ingest may skip both.

    Every detector here but the password one needs two digits (``minimise_text_counted``
    returns early without them), the password one a keyword of ``_has_password_word``; a
    mentioned email needs an "@", a phone number digits (``\\d``, so any script's digits:
    non-ASCII text is also searched with a regex). Costs well under a microsecond on the
    many chat messages with none of these, where the two scans cost several."""
    if "@" in text or _has_digit(text):
        return True
    if not text.isascii() and _ANY_DIGIT.search(text) is not None:
        return True
    return _has_password_word(text.lower())


def _digit_runs(text: str) -> list[tuple[int, int, int]]:
    """(start, end, number of digits) of every run of two digits or more."""
    return [
        (run.start(), run.end(), len(run.group().translate(_SEPARATORS)))
        for run in _DIGIT_RUN.finditer(text)
    ]


def _in_some_window(pattern: re.Pattern[str], text: str, runs, digits: int) -> bool:
    return any(
        pattern.search(text, max(0, start - _WINDOW_BEFORE), end + _WINDOW_AFTER) is not None
        for start, end, n in runs
        if n >= digits
    )


def minimise_text_counted(*, text: str, categories: Collection[str]) -> tuple[str, dict[str, int]]:
    """The text with these categories redacted, and how many redactions per category."""
    if not categories or not text:
        return text, {}
    runs = _digit_runs(text) if _has_digit(text) else []
    longest = max((n for _, _, n in runs), default=0)
    lowered = text.lower()
    if longest < 2 and not (
        MinimisationCategory.PASSWORD in categories and _has_password_word(lowered)
    ):
        return text, {}  # the way out of most messages
    counts: dict[str, int] = {}
    for category, digits, words, window_pattern, detector in DETECTORS:
        if longest < digits or category not in categories:
            continue
        if words and not any(word in lowered for word in words):
            continue
        if window_pattern is not None and not _in_some_window(window_pattern, text, runs, digits):
            continue
        text, count = detector(text)
        if count:
            key = str(category)
            counts[key] = counts.get(key, 0) + count
            # The text moved under the runs: measure them again.
            runs = _digit_runs(text)
            longest = max((n for _, _, n in runs), default=0)
    return text, counts


def minimise_text(*, system: System, text: str) -> str:
    """The text as it may be stored for this system. Redactions are counted per system and
    category; the counts are written once per transaction (see ``_record``)."""
    categories = system.minimise_categories
    if not categories:
        return text
    redacted, counts = minimise_text_counted(text=text, categories=categories)
    if counts:
        _record(system.pk, counts)
    return redacted


# --- Redaction counts ------------------------------------------------------------------------
#
# ingest calls minimise_text once per message inside its transaction. Writing a counter row
# per message would cost a round trip (and a row lock every concurrent ingest waits on) for
# each redacted message, so counts gather in memory per thread (Django's connections are per
# thread too) and one upsert writes them after the transaction commits. A rolled-back ingest
# drops its on_commit hook and with it the counts it gathered.


class _PendingCounts:
    def __init__(self) -> None:
        self.counts: dict[tuple[int, str], int] = {}

    def add(self, system_id: int, counts: Mapping[str, int]) -> None:
        for category, n in counts.items():
            key = (system_id, category)
            self.counts[key] = self.counts.get(key, 0) + n

    def flush(self) -> None:
        if getattr(_local, "pending", None) is self:
            _local.pending = None
        counts, self.counts = self.counts, {}
        if counts:
            redaction_counts_add(counts=counts)


_local = threading.local()


def _record(system_id: int, counts: Mapping[str, int]) -> None:
    connection = transaction.get_connection()
    if not connection.in_atomic_block:
        redaction_counts_add(counts={(system_id, c): n for c, n in counts.items()})
        return
    pending: _PendingCounts | None = getattr(_local, "pending", None)
    # The hook disappears from run_on_commit when its transaction rolls back (or commits);
    # then these counts belong to a new transaction and need a hook of their own.
    if pending is None or not any(hook[1] == pending.flush for hook in connection.run_on_commit):
        pending = _PendingCounts()
        _local.pending = pending
        transaction.on_commit(pending.flush, robust=True)
    pending.add(system_id, counts)


def redaction_counts_add(*, counts: Mapping[tuple[int, str], int]) -> None:
    """Add ``{(system id, category): n}`` to the per-system counters in one statement."""
    from compliance.models import RedactionCount

    if not counts:
        return
    table = RedactionCount._meta.db_table
    now = timezone.now()
    rows = sorted(counts.items())  # a fixed order, so concurrent upserts lock rows alike
    values = ", ".join(["(%s, %s, %s, %s)"] * len(rows))
    params: list[object] = []
    for (system_id, category), n in rows:
        params.extend([system_id, category, n, now])
    # One statement, so concurrent ingests add to the same row without losing updates.
    sql = (
        f"INSERT INTO {table} (system_id, category, count, updated_at) VALUES {values} "  # noqa: S608
        f"ON CONFLICT (system_id, category) DO UPDATE SET "
        f"count = {table}.count + excluded.count, updated_at = excluded.updated_at"
    )
    with transaction.get_connection().cursor() as cursor:
        cursor.execute(sql, params)
