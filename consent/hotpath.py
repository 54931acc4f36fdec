"""The hot path of ``GET /api/v1/consent/check``: the common check answered with one Redis
round trip and no database query, outside DRF.

``answer(environ)`` takes a request that is exactly ``subject`` and ``purpose`` in plain
ASCII, with a Bearer key and nothing else that changes the answer (no ``Sec-GPC`` header,
no ``Accept`` other than JSON), and runs one Redis script (``CHECK_SCRIPT``) that:

1. finds the key's plain record (written by ``compliance.auth`` beside its cached entry)
   and checks it against the current revocation generation, its last use (older than
   ``LAST_USED_RESOLUTION_SECONDS``: the full path writes it) and the scope the view
   requires;
2. only then raises the client's request counter (``integrations.throttling``'s own key,
   so both paths spend one budget, and a refused key spends nothing);
3. reads the purpose catalogue's token, the identity's entry (``consent.cache``: which
   subject it names, with the subject's jurisdiction and restriction), and that subject's
   token and state blob.

The answer is ``consent.selectors.decide``'s, from data valid under the subject's current
token (the argument in ``consent/cache.py``). A missing or stale entry or blob is read from
PostgreSQL and stored under the token read before that read. Anything else returns None and
``ConsentCheckView`` answers, exactly as before: no key, an unknown or a revoked one (401),
a missing scope (403), the rate limit (429; counted once more, which changes no answer), a
malformed identity or query (400), an unknown purpose (404), ``Sec-GPC`` (recorded, or 400),
a key whose last use is due to be recorded, and Redis unreachable (the full path answers
from the database). An unexpected error is logged (its class only: a message may quote
input) and handed over too.

Three ways in, one logic (``plan``: the command, no I/O; the script; ``settle``: the answer
from its reply, which calls ``Lifecycle.database()`` before any read of PostgreSQL):
``consent.api.consent_check_route`` (the URL's view, under Django's middleware, which adds
the security headers); ``ConsentCheckShortcut``, a WSGI wrapper (``compliance/wsgi.py``)
that answers this one path before Django's handler and adds what the middleware would
(``MIDDLEWARE_REVIEWED`` lists the middleware whose effects it was written for; with any
other list it stands aside); and the deployed server's ASGI front
(``consent/hotpath_asgi.py``), which runs the script on a pipelined connection in its event
loop and settles in a thread what needs the database. The shortcut sends Django's request
signals around the requests that reach the database, so its connections are handled as in
any request.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from string import Template
from urllib.parse import parse_qsl

from django.conf import settings
from django.core import signals
from django.core.signals import setting_changed
from django.db import connection
from django.dispatch import receiver
from django.http.request import split_domain_port, validate_host
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from compliance import auth
from compliance.identities import InvalidIdentity, parse_identity_ref
from compliance.models import Jurisdiction
from consent import cache, selectors
from integrations import throttling

logger = logging.getLogger(__name__)

PATH = "/api/v1/consent/check"
REQUIRED_SCOPE = "consent:read"
# Seconds the hot path stands aside after Redis failed, so an outage costs the full path
# one more failed connection per process and second, not one per request.
REDIS_RETRY_SECONDS = 1.0

_JURISDICTIONS = frozenset(Jurisdiction.values)
# Accept values the API's one renderer answers without negotiating (none sent, or these).
_PLAIN_ACCEPT = frozenset({"*/*", "application/json"})

# KEYS: the key's plain record, the identity's entry. ARGV: Django's key prefix, the time
# (epoch seconds), the rate (0: off), this minute's window. Built from the names the other
# modules use, so both paths read and count the same keys.
CHECK_SCRIPT = Template("""
local prefix = ARGV[1]
local record = redis.call('GET', KEYS[1])
if not record then return {0} end
local generation = redis.call('GET', prefix .. '$generation_key') or '0'
local rec_generation, client, last_used, scopes = string.match(record, '^(%S+) (%S+) (%S+) ?(.*)$$')
if rec_generation ~= generation then return {0} end
if tonumber(ARGV[2]) - tonumber(last_used) > $last_used_resolution then return {0} end
if not string.find(' ' .. scopes .. ' ', ' $scope ', 1, true) then return {0} end
local count = 0
if ARGV[3] ~= '0' then
  local counter = prefix .. '$counter_prefix' .. client .. ':' .. ARGV[4]
  count = redis.call('INCR', counter)
  redis.call('EXPIRE', counter, $counter_ttl)
end
local catalogue = redis.call('GET', prefix .. '$catalogue_key')
local identity = redis.call('GET', KEYS[2])
if not identity then return {1, count, catalogue} end
local subject = string.sub(identity, 1, 36)
return {1, count, catalogue, identity,
  redis.call('GET', prefix .. '$generation_prefix' .. subject),
  redis.call('GET', prefix .. '$state_prefix' .. subject)}
""").substitute(
    generation_key=auth.generation_key(),
    last_used_resolution=auth.LAST_USED_RESOLUTION_SECONDS,
    scope=REQUIRED_SCOPE,
    counter_prefix=throttling.COUNTER_PREFIX,
    counter_ttl=throttling.WINDOW_SECONDS * 2,
    catalogue_key=cache.CATALOGUE_KEY,
    generation_prefix=cache.generation_key(""),
    state_prefix=cache.state_key(""),
)
CHECK_SCRIPT_SHA = hashlib.sha1(CHECK_SCRIPT.encode(), usedforsecurity=False).hexdigest()

_PLAIN_SLUG_CHARS = frozenset("-_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


def plain_check_query(params: dict) -> dict | None:
    """The validated query of the common GET (exactly ``subject`` and ``purpose``, plain
    ASCII, already trimmed), without running CheckQuerySerializer; None for anything else,
    which the serializer then validates (and words any error) as before. Every input
    accepted here is one the serializer accepts with the same result: this only saves its
    CPU on the hot path."""
    if len(params) != 2:
        return None
    subject, purpose = params.get("subject"), params.get("purpose")
    if (
        not isinstance(subject, str)
        or not isinstance(purpose, str)
        or not 0 < len(subject) <= 400
        or not subject.isascii()
        or not subject.isprintable()  # no NUL, no control characters, nothing to trim
        or subject != subject.strip()
        or not 0 < len(purpose) <= 50
        or not _PLAIN_SLUG_CHARS.issuperset(purpose)
    ):
        return None
    return {"subject": subject, "purpose": purpose, "gpc": False}


def plain_query(query_string: str) -> tuple[str, str] | None:
    """(subject, purpose) when the query string is read by Django exactly so and passes
    ``plain_check_query``; None otherwise (a repeated name, anything non-ASCII)."""
    if not query_string.isascii():
        return None
    # What QueryDict does with an ASCII query string (UTF-8, blank values kept).
    pairs = parse_qsl(query_string, keep_blank_values=True)
    params = dict(pairs)
    if len(pairs) != 2 or len(params) != 2:
        return None
    data = plain_check_query(params)
    return None if data is None else (data["subject"], data["purpose"])


def _bearer(environ) -> str | None:
    """The raw key of ``Authorization: Bearer <key>`` as ApiKeyAuthentication reads it."""
    header = environ.get("HTTP_AUTHORIZATION")
    if not header or not header.isascii():
        return None
    parts = header.split(None, 1)
    if len(parts) != 2 or parts[0].lower() != "bearer":
        return None
    return parts[1].strip()


def result_fields(result: selectors.CheckResult) -> dict:
    """The check's answer as the API writes it."""
    return {
        "allowed": result.allowed,
        "reason": str(result.reason),
        "state_since": result.state_since.isoformat().replace("+00:00", "Z")
        if result.state_since
        else None,
    }


_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def render(fields: dict) -> bytes:
    """What the API's JSON renderer writes for these fields (compact, UTF-8)."""
    return _JSON.encode(fields).encode()


class Lifecycle:
    """Django's request signals for a request answered outside Django's handler, sent only
    if it reaches the database (they manage connections; nothing else listens for a hit).
    Inside Django's handler (``environ`` None) Django sends them itself."""

    def __init__(self, environ=None):
        self.environ = environ
        self.started = False

    def database(self) -> None:
        if not self.started and self.environ is not None:
            self.started = True
            signals.request_started.send(sender=ConsentCheckShortcut, environ=self.environ)

    def finish(self) -> None:
        if self.started:
            signals.request_finished.send(sender=ConsentCheckShortcut)

    def in_transaction(self) -> bool:
        """Whether the database connection is in a transaction (a catalogue read there is
        not the one the token names: ``cache.catalogue``)."""
        return connection.in_atomic_block


_redis_failed_at = 0.0
_redis_failed_lock = threading.Lock()


def redis_failed() -> None:
    """Stand aside for ``REDIS_RETRY_SECONDS``, and say so once per period."""
    global _redis_failed_at
    with _redis_failed_lock:
        if time.monotonic() - _redis_failed_at > REDIS_RETRY_SECONDS:
            logger.warning("consent check hot path: Redis unreachable; the full view answers")
        _redis_failed_at = time.monotonic()


_EVALSHA = (b"EVALSHA", CHECK_SCRIPT_SHA.encode(), b"2")


def _run_script(redis, command: tuple[bytes, ...]) -> list:
    try:
        return redis.execute(*command)
    except NoScriptError:  # a new or restarted server: load it once
        redis.execute(b"SCRIPT", b"LOAD", CHECK_SCRIPT.encode())
        return redis.execute(*command)


# Set on a request the WSGI shortcut handed to Django, so the view does not try again.
HANDED_OVER = "consent.hotpath.handed_over"


@dataclass(slots=True)
class Plan:
    """A check the hot path can try: what ``settle`` needs, and the script's command."""

    slug: str
    ref: dict
    digest: str
    known: cache.Catalogue
    redis: cache.RawRedis
    rate: int
    command: tuple[bytes, ...]


def plan(environ) -> Plan | None:
    """The script to run for this GET, or None: ConsentCheckView answers it. No I/O."""
    if (
        not settings.CONSENT_CHECK_HOT_PATH
        or HANDED_OVER in environ
        # A GPC signal is an opt-out the full view records (CCPA regulations §7025), or a
        # malformed one it refuses.
        or "HTTP_SEC_GPC" in environ
        or environ.get("HTTP_ACCEPT", "*/*") not in _PLAIN_ACCEPT
    ):
        return None
    query = plain_query(environ.get("QUERY_STRING", ""))
    raw_key = _bearer(environ)
    if query is None or not raw_key:
        return None
    subject, slug = query
    known = cache.current_catalogue()
    # An unknown purpose is the full view's 404 (it reloads the catalogue first).
    if known is None or slug not in known.by_slug:
        return None
    if settings.CONSENT_UNKNOWN_SUBJECT_JURISDICTION not in _JURISDICTIONS:
        return None
    try:
        ref = parse_identity_ref(subject)
    except InvalidIdentity:
        return None
    redis = cache.raw_redis()
    if redis is None or redis_standing_aside():
        return None

    digest = cache.identity_digest(ref["type"], ref["value"])
    now = time.time()
    rate = settings.API_RATE_PER_MINUTE
    prefix = redis.prefix
    keys = (prefix + auth.lean_record_key(raw_key), prefix + cache.identity_key(digest))
    args = (prefix, str(int(now)), str(rate), str(int(now // throttling.WINDOW_SECONDS)))
    command = (*_EVALSHA, *(k.encode() for k in keys), *(a.encode() for a in args))
    return Plan(slug, ref, digest, known, redis, rate, command)


def redis_standing_aside() -> bool:
    """True for a while after Redis failed (``REDIS_RETRY_SECONDS``)."""
    return time.monotonic() - _redis_failed_at < REDIS_RETRY_SECONDS


def answer(environ, lifecycle: Lifecycle | None = None) -> bytes | None:
    """The JSON body of the 200 answer to this GET, or None: ConsentCheckView answers it.
    ``lifecycle`` when called outside Django's handler (the WSGI shortcut)."""
    planned = plan(environ)
    if planned is None:
        return None
    try:
        reply = _run_script(planned.redis, planned.command)
    except (RedisConnectionError, RedisTimeoutError):
        redis_failed()
        return None
    return settle(planned, reply, lifecycle or Lifecycle())


def settle(planned: Plan, reply: list, lifecycle: Lifecycle) -> bytes | None:
    """The answer from the script's reply: the body, or None (the full view answers).
    Nothing here reads PostgreSQL or writes anywhere before ``lifecycle.database()``, so a
    caller that cannot wait on the database (the ASGI front's event loop) stops there and
    settles again in a thread."""
    if not reply[0] or (planned.rate and reply[1] > planned.rate):
        return None  # authentication, the scope or the rate: the full view answers

    redis, slug = planned.redis, planned.slug
    _, _, catalogue_raw, entry_raw, token_raw, blob_raw, *_ = [*reply, None, None, None]
    catalogue_token = redis.loads(catalogue_raw) if catalogue_raw is not None else None
    if (
        catalogue_token is not None
        and catalogue_token == planned.known.token
        and not lifecycle.in_transaction()
    ):
        catalogue = planned.known  # what cache.catalogue() answers, without asking
    else:
        lifecycle.database()  # the catalogue moved: reload it
        catalogue = cache.catalogue(catalogue_token or cache.catalogue_token_create())
    purpose = catalogue.by_slug.get(slug)
    if purpose is None:
        return None  # removed since this process loaded it: the full view says 404

    token = redis.loads(token_raw) if token_raw is not None else None
    entry = cache.decode_entry(entry_raw) if entry_raw is not None else None
    if entry is not None and token is not None and entry.token == token:
        states = None
        if blob_raw is not None:
            blob = redis.loads(blob_raw)
            if blob[0] == token:
                states = cache._decode(blob[1])
        if states is None:
            lifecycle.database()
            subject_id = uuid.UUID(entry.subject_id)
            states = selectors._states_from_db([subject_id])[subject_id]
            # The token was read before the states were: the rule of consent/cache.py.
            cache.store({subject_id: (token, states)})
    else:
        lifecycle.database()
        entry, states = _subject_from_database(planned.ref, planned.digest)

    if entry is None:
        jurisdiction, restricted_at = settings.CONSENT_UNKNOWN_SUBJECT_JURISDICTION, None
    else:
        jurisdiction, restricted_at = entry.jurisdiction, entry.restricted_at
    result = selectors.decide(
        purpose=purpose,
        catalogue=catalogue,
        jurisdiction=jurisdiction,
        states=states,
        known=entry is not None,
        restricted_at=restricted_at,
    )
    return render(result_fields(result))


def _subject_from_database(ref, digest: str) -> tuple[cache.SubjectEntry | None, dict]:
    """The subject an identity names and its states, read from PostgreSQL, and cached: the
    subject's token is read (or created) first, then the identity and states are read again,
    and what that second read says is stored under the token. A reader that raced a change
    can only store it under a token the change's after-commit bump has already replaced."""
    wanted = {(ref["type"], ref["value"])}
    rows = selectors._subjects_by_identity(wanted)
    if not rows:
        return None, {}  # unknown identities are not cached: a new subject needs no call
    subject_id = rows[0][2]
    blobs, tokens, _ = cache.read([subject_id], with_catalogue=False)
    token = tokens.get(subject_id)
    rows = selectors._subjects_by_identity(wanted)
    if not rows:
        return None, {}
    if rows[0][2] != subject_id:  # the identity moved between the reads: answer, keep nothing
        subject_id, token, blobs = rows[0][2], None, {}
    _, _, _, jurisdiction, restricted_at = rows[0]
    states = blobs.get(subject_id)
    if states is None:
        states = selectors._states_from_db([subject_id])[subject_id]
        if token is not None:
            cache.store({subject_id: (token, states)})
    entry = cache.SubjectEntry(str(subject_id), token or "", jurisdiction, restricted_at)
    if token is not None:
        cache.store_identity(digest, entry)
    return entry, states


# --- the WSGI shortcut ----------------------------------------------------------------------

# The middleware ConsentCheckShortcut answers in place of, and what it does for this path:
# SecurityMiddleware (HTTPS redirect: handed over; HSTS, nosniff, Referrer-Policy,
# Cross-Origin-Opener-Policy headers), WhiteNoise (static files only), ApiBodyLimitMiddleware
# (a body: handed over), sessions, CSRF, auth and messages (nothing without a session, a
# cookie or a form), CommonMiddleware (host validation: an invalid host is handed over;
# Content-Length), XFrameOptionsMiddleware (X-Frame-Options), portal headers (portal only).
MIDDLEWARE_REVIEWED = (
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "compliance.middleware.ApiBodyLimitMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "compliance.portal.middleware.PortalSecurityHeadersMiddleware",
)


def _is_secure(environ) -> bool:
    """HttpRequest.is_secure() for this environ."""
    if settings.SECURE_PROXY_SSL_HEADER:
        header, secure_value = settings.SECURE_PROXY_SSL_HEADER
        value = environ.get(header)
        if value is not None:
            return value.split(",", 1)[0].strip() == secure_value
    return environ.get("wsgi.url_scheme") == "https"


_headers_memo: dict[bool, tuple[list, list]] = {}


@receiver(setting_changed)
def _settings_changed(**kwargs) -> None:
    _headers_memo.clear()  # tests and override_settings only: settings are fixed otherwise


def response_headers(secure: bool) -> tuple[list, list]:
    """What the middleware adds to this path's answer: XFrameOptionsMiddleware's header
    (before CommonMiddleware's Content-Length), then SecurityMiddleware's."""
    headers = _headers_memo.get(secure)
    if headers is None:
        frame = settings.X_FRAME_OPTIONS
        headers = _headers_memo[secure] = (
            [("X-Frame-Options", frame.upper())] if frame else [],
            security_headers(secure),
        )
    return headers


def security_headers(secure: bool) -> list[tuple[str, str]]:
    """The headers SecurityMiddleware adds to a response for this request, in its order."""
    headers = []
    if settings.SECURE_HSTS_SECONDS and secure:
        sts = f"max-age={settings.SECURE_HSTS_SECONDS}"
        if settings.SECURE_HSTS_INCLUDE_SUBDOMAINS:
            sts += "; includeSubDomains"
        if settings.SECURE_HSTS_PRELOAD:
            sts += "; preload"
        headers.append(("Strict-Transport-Security", sts))
    if settings.SECURE_CONTENT_TYPE_NOSNIFF:
        headers.append(("X-Content-Type-Options", "nosniff"))
    policy = settings.SECURE_REFERRER_POLICY
    if policy:
        values = [v.strip() for v in policy.split(",")] if isinstance(policy, str) else policy
        headers.append(("Referrer-Policy", ",".join(values)))
    if settings.SECURE_CROSS_ORIGIN_OPENER_POLICY:
        headers.append(("Cross-Origin-Opener-Policy", settings.SECURE_CROSS_ORIGIN_OPENER_POLICY))
    return headers


def failed(exc: BaseException) -> None:
    """An unexpected error of the hot path: the full view answers. Its class only: a
    message may quote input."""
    logger.error("consent check hot path failed (%s); the full view answers", type(exc).__name__)


class ConsentCheckShortcut:
    """WSGI wrapper: ``GET /api/v1/consent/check`` answered by ``answer`` before Django's
    handler when it can, with the headers the middleware would add; every other request,
    and every one ``answer`` hands over, goes to Django unchanged."""

    def __init__(self, application):
        self.application = application
        self.active = (
            tuple(settings.MIDDLEWARE) == MIDDLEWARE_REVIEWED
            and not settings.PREPEND_WWW
            and not settings.DISALLOWED_USER_AGENTS
        )
        if not self.active:
            logger.warning(
                "The consent check's WSGI shortcut is off: the middleware differs from the "
                "list it was written for (consent.hotpath.MIDDLEWARE_REVIEWED)."
            )
        self._hosts: dict[str, bool] = {}
        self._hosts_allowed: object = None
        self._allow: str | None = None

    def __call__(self, environ, start_response):
        if (
            self.active
            and environ.get("PATH_INFO") == PATH
            and environ.get("REQUEST_METHOD") == "GET"
        ):
            answered = self._answer(environ)
            if answered is not None:
                headers, body = answered
                start_response("200 OK", headers)
                return [body]
            environ[HANDED_OVER] = True
        return self.application(environ, start_response)

    def _answer(self, environ) -> tuple[list[tuple[str, str]], bytes] | None:
        if not self.admits(environ):
            return None
        lifecycle = Lifecycle(environ)
        try:
            body = answer(environ, lifecycle)
        except Exception as exc:
            failed(exc)
            body = None
        finally:
            lifecycle.finish()
        return None if body is None else (self.headers(environ, body), body)

    def admits(self, environ) -> bool:
        """False for what the middleware answers itself: an HTTPS redirect, a request with
        a body, a host Django refuses."""
        return not (
            (settings.SECURE_SSL_REDIRECT and not _is_secure(environ))
            or environ.get("CONTENT_LENGTH") not in (None, "", "0")
            or not self._host_allowed(environ)
        )

    def headers(self, environ, body: bytes) -> list[tuple[str, str]]:
        """The answer's headers, as the view under Django's middleware writes them."""
        frame, security = response_headers(_is_secure(environ))
        return [
            ("Content-Type", "application/json"),
            ("Allow", self._allowed_methods()),
            *frame,
            ("Content-Length", str(len(body))),
            *security,
        ]

    def _allowed_methods(self) -> str:
        if self._allow is None:
            from consent.api import check_view_allow

            self._allow = check_view_allow()
        return self._allow

    def _host_allowed(self, environ) -> bool:
        """HttpRequest.get_host()'s check, for a request that names its host in ``Host``
        (any other is handed over); answers are remembered per host value."""
        if settings.USE_X_FORWARDED_HOST and "HTTP_X_FORWARDED_HOST" in environ:
            return False
        host = environ.get("HTTP_HOST")
        if host is None:
            return False
        allowed = settings.ALLOWED_HOSTS
        if allowed is not self._hosts_allowed:
            self._hosts, self._hosts_allowed = {}, allowed
        known = self._hosts.get(host)
        if known is None:
            if settings.DEBUG and not allowed:
                allowed = [".localhost", "127.0.0.1", "[::1]"]
            domain, _ = split_domain_port(host)
            known = bool(domain) and validate_host(domain, allowed)
            if len(self._hosts) < 100:  # the Host header is the caller's to choose
                self._hosts[host] = known
        return known
