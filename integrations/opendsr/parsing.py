"""Reading an OpenDSR request body (specification section 7.1) into a checked submission.

Errors name the field at fault and never repeat a value: an identity, hashed or not, must
not come back in an error body or a log."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone

from compliance.identities import InvalidIdentity, normalize_identity
from compliance.models import IdentityType
from integrations.transport import url_problem

SUBJECT_REQUEST_TYPES = ("access", "portability", "erasure")
REGULATIONS = ("gdpr", "ccpa")
IDENTITY_FORMATS = ("raw", "sha1", "md5", "sha256")
HEX_LENGTHS = {"sha1": 40, "md5": 32, "sha256": 64}
# The identity types this service stores, by their OpenDSR names. "phone_number" is not in
# the specification's list; it is this processor's name for a phone number in E.164 form.
SUPPORTED_IDENTITY_TYPES: dict[str, str] = {
    "controller_customer_id": IdentityType.CUSTOMER_ID,
    "email": IdentityType.EMAIL,
    "phone_number": IdentityType.PHONE,
}
# The specification's other identity types (devices, advertising ids). A controller sends a
# processor every identity it has; this service holds none of these, so they are accepted
# and not searched, as long as one identity of a supported type comes with them.
OTHER_SPEC_IDENTITY_TYPES = frozenset(
    {
        "android_advertising_id",
        "android_id",
        "fire_advertising_id",
        "ios_advertising_id",
        "ios_vendor_id",
        "microsoft_advertising_id",
        "microsoft_publisher_id",
        "roku_publisher_id",
        "roku_advertising_id",
    }
)
KNOWN_FIELDS = frozenset(
    {
        "regulation",
        "subject_request_id",
        "subject_request_type",
        "subject_identities",
        "submitted_time",
        "api_version",
        "status_callback_urls",
        "extensions",
    }
)
IDENTITY_FIELDS = frozenset({"identity_type", "identity_value", "identity_format"})
MAX_IDENTITIES = 20
MAX_CALLBACK_URLS = 10
MAX_URL_CHARS = 2000
# Clocks differ; a request "submitted" further ahead than this is a controller's bug.
FUTURE_TOLERANCE = timedelta(hours=1)

# GUIDs "MUST be lowercase and v4 format" (section 1.1).
UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
RFC3339 = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})[Tt](?P<time>\d{2}:\d{2}:\d{2})(?P<fraction>\.\d+)?"
    r"(?P<offset>[Zz]|[+-]\d{2}:\d{2})"
)
API_VERSION = re.compile(r"(?P<major>\d{1,3})(\.\d{1,3}){0,2}")
# Field names are echoed in errors only when they look like field names: a key is input too.
FIELD_NAME = re.compile(r"[A-Za-z0-9_-]{1,40}")


class OpenDsrInvalid(Exception):
    """A request the controller must correct; answered 400 in the OpenDSR error shape."""

    def __init__(self, message: str, *, field: str = "", reason: str = "invalid"):
        super().__init__(message)
        self.message = message
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class SubmittedIdentity:
    """One identity, with this service's identity type. ``value`` is the normalized value
    for ``raw``, else the lower-case hex digest."""

    identity_type: str
    identity_format: str
    value: str

    @property
    def hashed(self) -> bool:
        return self.identity_format != "raw"

    def __repr__(self) -> str:
        return f"SubmittedIdentity({self.identity_type}, {self.identity_format})"


@dataclass(frozen=True)
class Submission:
    regulation: str | None
    subject_request_id: uuid.UUID
    subject_request_type: str
    identities: tuple[SubmittedIdentity, ...]
    ignored_identities: int
    submitted_time: datetime
    api_version: str
    status_callback_urls: tuple[str, ...]


def parse_rfc3339(value: object, *, field: str) -> datetime:
    if not isinstance(value, str) or not (match := RFC3339.fullmatch(value)):
        raise OpenDsrInvalid(
            f"{field} must be an RFC 3339 date-time, e.g. 2018-10-02T15:00:00Z.", field=field
        )
    fraction = (match["fraction"] or "")[:7]  # Python reads at most microseconds
    offset = "+00:00" if match["offset"] in ("Z", "z") else match["offset"]
    try:
        parsed = datetime.fromisoformat(f"{match['date']}T{match['time']}{fraction}{offset}")
    except ValueError:
        raise OpenDsrInvalid(f"{field} is not a valid date-time.", field=field) from None
    return parsed


def _names(keys: set) -> list[str]:
    return sorted(k if FIELD_NAME.fullmatch(str(k)) else "(a field)" for k in keys)


def _required(data: Mapping, name: str) -> object:
    if name not in data or data[name] is None:
        raise OpenDsrInvalid(f"{name} field is required.", field=name, reason="required")
    return data[name]


def _choice(value: object, choices: tuple[str, ...], *, field: str) -> str:
    if not isinstance(value, str) or value not in choices:
        raise OpenDsrInvalid(f"{field} must be one of: {', '.join(choices)}.", field=field)
    return value


def _identity(item: object, index: int) -> SubmittedIdentity | None:
    field = f"subject_identities[{index}]"
    if not isinstance(item, Mapping):
        raise OpenDsrInvalid(f"{field} must be an identity object.", field=field)
    unknown = _names(set(item) - IDENTITY_FIELDS)
    if unknown:
        raise OpenDsrInvalid(f"{field} has unknown fields: {', '.join(unknown)}.", field=field)
    for name in sorted(IDENTITY_FIELDS):
        if not isinstance(item.get(name), str) or not item[name]:
            raise OpenDsrInvalid(
                f"{field}.{name} is required and must be a string.",
                field=f"{field}.{name}",
                reason="required",
            )
    identity_format = _choice(
        item["identity_format"], IDENTITY_FORMATS, field=f"{field}.identity_format"
    )
    opendsr_type = item["identity_type"]
    if opendsr_type in OTHER_SPEC_IDENTITY_TYPES:
        return None
    if opendsr_type not in SUPPORTED_IDENTITY_TYPES:
        raise OpenDsrInvalid(
            f"{field}.identity_type is not a supported identity type; see /discovery.",
            field=f"{field}.identity_type",
            reason="unsupported",
        )
    identity_type = SUPPORTED_IDENTITY_TYPES[opendsr_type]
    value = item["identity_value"]
    if identity_format == "raw":
        try:
            return SubmittedIdentity(identity_type, "raw", normalize_identity(identity_type, value))
        except InvalidIdentity as exc:
            raise OpenDsrInvalid(str(exc), field=f"{field}.identity_value") from None
    digest = value.strip().lower()
    if not re.fullmatch(rf"[0-9a-f]{{{HEX_LENGTHS[identity_format]}}}", digest):
        raise OpenDsrInvalid(
            f"{field}.identity_value must be the {identity_format} of the normalized value, "
            f"in hex ({HEX_LENGTHS[identity_format]} characters).",
            field=f"{field}.identity_value",
        )
    return SubmittedIdentity(identity_type, identity_format, digest)


def _callback_urls(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_CALLBACK_URLS:
        raise OpenDsrInvalid(
            f"status_callback_urls must be a list of at most {MAX_CALLBACK_URLS} URLs.",
            field="status_callback_urls",
        )
    urls: list[str] = []
    for index, url in enumerate(value):
        field = f"status_callback_urls[{index}]"
        if not isinstance(url, str) or not url or len(url) > MAX_URL_CHARS:
            raise OpenDsrInvalid(
                f"{field} must be a URL of at most {MAX_URL_CHARS} characters.", field=field
            )
        problem = url_problem(url)
        if problem:
            raise OpenDsrInvalid(f"{field}: {problem}", field=field)
        if url not in urls:
            urls.append(url)
    return tuple(urls)


def submission_parse(data: object, *, major: int, now: datetime | None = None) -> Submission:
    """Check a decoded request body against the specification of API version ``major``
    (2: OpenDSR, where ``regulation`` is required; 1: OpenGDPR, where it did not exist)."""
    if not isinstance(data, Mapping):
        raise OpenDsrInvalid("The body must be a JSON object.")
    unknown = _names(set(data) - KNOWN_FIELDS)
    if unknown:
        raise OpenDsrInvalid(f"Unknown fields: {', '.join(unknown)}.", field=unknown[0])

    regulation = data.get("regulation")
    if major >= 2:
        regulation = _required(data, "regulation")
    if regulation is not None:
        regulation = _choice(regulation, REGULATIONS, field="regulation")

    raw_id = _required(data, "subject_request_id")
    if not isinstance(raw_id, str) or not UUID4.fullmatch(raw_id):
        raise OpenDsrInvalid(
            "subject_request_id must be a lowercase UUID v4.", field="subject_request_id"
        )
    request_type = _choice(
        _required(data, "subject_request_type"),
        SUBJECT_REQUEST_TYPES,
        field="subject_request_type",
    )

    submitted = parse_rfc3339(_required(data, "submitted_time"), field="submitted_time")
    if submitted > (now or timezone.now()) + FUTURE_TOLERANCE:
        raise OpenDsrInvalid("submitted_time is in the future.", field="submitted_time")

    api_version = data.get("api_version")
    if api_version is None:
        api_version = f"{major}.0"
    elif not isinstance(api_version, str) or not (match := API_VERSION.fullmatch(api_version)):
        raise OpenDsrInvalid("api_version must be a version such as 2.0.", field="api_version")
    elif int(match["major"]) != major:
        raise OpenDsrInvalid(
            f"api_version {api_version} is not served here; this endpoint is version {major}.",
            field="api_version",
            reason="unsupported",
        )

    # Identities may come only inside a processor's extension (section 7.1.2); this
    # processor defines none, so subject_identities is required here.
    identities_raw = _required(data, "subject_identities")
    if not isinstance(identities_raw, list) or not 1 <= len(identities_raw) <= MAX_IDENTITIES:
        raise OpenDsrInvalid(
            f"subject_identities must be a list of 1 to {MAX_IDENTITIES} identities.",
            field="subject_identities",
        )
    parsed = [_identity(item, index) for index, item in enumerate(identities_raw)]
    identities = tuple(dict.fromkeys(i for i in parsed if i is not None))
    if not identities:
        raise OpenDsrInvalid(
            "None of the identities is of a type this processor holds: send "
            f"{', '.join(SUPPORTED_IDENTITY_TYPES)}.",
            field="subject_identities",
            reason="unsupported",
        )

    extensions = data.get("extensions")
    if extensions is not None and not isinstance(extensions, Mapping):
        raise OpenDsrInvalid("extensions must be an object.", field="extensions")

    return Submission(
        regulation=regulation,
        subject_request_id=uuid.UUID(raw_id),
        subject_request_type=request_type,
        identities=identities,
        ignored_identities=sum(1 for i in parsed if i is None),
        submitted_time=submitted,
        api_version=api_version,
        status_callback_urls=_callback_urls(data.get("status_callback_urls")),
    )
