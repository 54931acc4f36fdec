"""Settings for the privacy compliance service, read from the environment.

With nothing set the service runs *embedded*: SQLite and a file-based Celery broker under
``var/``, a secret key generated once into ``var/``. Setting ``DATABASE_URL`` switches to
production mode, where a missing ``SECRET_KEY`` or ``ALLOWED_HOSTS`` stops start-up.
"""

from __future__ import annotations

import os
import secrets
import sys
import warnings
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("COMPLIANCE_VAR_DIR", BASE_DIR / "var"))

env = environ.Env()


def _fail(message: str) -> None:
    # A clear sentence instead of a traceback: this runs before logging is configured.
    raise ImproperlyConfigured(f"Configuration error: {message}")


def _bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    _fail(f"{name} must be true or false, not {raw!r}.")
    return default  # unreachable


def _int(name: str, default: int, *, minimum: int = 0) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        _fail(f"{name} must be a whole number, not {raw!r}.")
    if value < minimum:
        _fail(f"{name} must be at least {minimum}.")
    return value


EMBEDDED = not os.environ.get("DATABASE_URL")
DEBUG = _bool("DEBUG", False)
TESTING = "pytest" in sys.modules or _bool("COMPLIANCE_TESTING", False)
# `make run` on PostgreSQL and Redis (DATABASE_URL and CELERY_BROKER_URL set): a local demo
# on plain HTTP, with the embedded mode's generated secret key and localhost host names.
LOCAL_DEMO = _bool("COMPLIANCE_LOCAL_DEMO", False)


def _secret_key() -> str:
    configured = os.environ.get("SECRET_KEY")
    if configured:
        return configured
    if not EMBEDDED and not LOCAL_DEMO:
        _fail("SECRET_KEY is required when DATABASE_URL is set (production mode).")
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    key_file = VAR_DIR / "secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


SECRET_KEY = _secret_key()

# A value of only commas and spaces counts as missing: an empty list would answer every
# request with 400 instead of refusing to start.
ALLOWED_HOSTS = [h.strip() for h in os.environ.get("ALLOWED_HOSTS", "").split(",") if h.strip()]
if not ALLOWED_HOSTS:
    if EMBEDDED or DEBUG or LOCAL_DEMO:
        ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]", "testserver"]
    else:
        _fail("ALLOWED_HOSTS is required when DATABASE_URL is set (comma-separated host names).")

CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "guardian",
    "compliance",
    "consent",
    "dsar",
    "integrations",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "compliance.middleware.ApiBodyLimitMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "compliance.portal.middleware.PortalSecurityHeadersMiddleware",  # CSP on portal pages
]

ROOT_URLCONF = "compliance.urls"
WSGI_APPLICATION = "compliance.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------

if EMBEDDED:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "compliance.sqlite3",
            # The web server, the worker and beat share the file: WAL lets readers go on
            # while one writer writes, IMMEDIATE avoids upgrade deadlocks between them.
            "OPTIONS": {
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 30,
            },
        }
    }
else:
    try:
        with warnings.catch_warnings():
            # django-environ warns on stderr about an unknown scheme; the checks below say
            # what is wrong in one line instead.
            warnings.simplefilter("ignore")
            DATABASES = {"default": env.db_url("DATABASE_URL")}
    except (ImproperlyConfigured, ValueError, KeyError) as exc:
        _fail(
            f"DATABASE_URL is malformed ({exc.__class__.__name__}); expected e.g. "
            "postgres://user:password@host:5432/dbname"
        )
    _db = DATABASES["default"]
    if not _db.get("ENGINE") or not _db.get("NAME"):
        _fail("DATABASE_URL is malformed; expected e.g. postgres://user:password@host:5432/dbname")
    if _db["ENGINE"] != "django.db.backends.postgresql":
        # Otherwise Django fails later with a driver import error that names no variable.
        _fail("DATABASE_URL must be a PostgreSQL URL (postgres://...); no other is supported.")
    _db.setdefault("CONN_MAX_AGE", _int("DB_CONN_MAX_AGE", 60))
    _db.setdefault("CONN_HEALTH_CHECKS", True)

if TESTING and os.environ.get("TEST_DATABASE_NAME"):
    # Lets several test runs share one PostgreSQL server without dropping each other's data.
    DATABASES["default"]["TEST"] = {"NAME": os.environ["TEST_DATABASE_NAME"]}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
IS_POSTGRES = DATABASES["default"]["ENGINE"].endswith("postgresql")

# --- Cache ----------------------------------------------------------------------------------

REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            # Test runs share a Redis with others: a prefix of their own, never a flush.
            "KEY_PREFIX": f"compliance-test-{os.getpid()}" if TESTING else "compliance",
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Celery ---------------------------------------------------------------------------------

if os.environ.get("CELERY_BROKER_URL"):
    CELERY_BROKER_URL = os.environ["CELERY_BROKER_URL"]
    CELERY_BROKER_TRANSPORT_OPTIONS: dict = {"visibility_timeout": 3600}
else:
    # kombu's filesystem transport: a broker that needs no server, for the embedded mode.
    _broker_dir = VAR_DIR / "broker"
    for sub in ("out", "processed", "control"):
        (_broker_dir / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "out"),
        "data_folder_out": str(_broker_dir / "out"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
if TESTING:
    # Each test run has its own queue, so runs sharing a Redis never take each other's tasks.
    CELERY_TASK_DEFAULT_QUEUE = os.environ.get("CELERY_TEST_QUEUE", f"test-{os.getpid()}")
CELERY_TASK_IGNORE_RESULT = True  # the database is the source of truth, not a result backend
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

# --- Auth, i18n, static ---------------------------------------------------------------------

AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
if TESTING:
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

LANGUAGE_CODE = "en"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"
        if not (DEBUG or TESTING)
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
MEDIA_ROOT = VAR_DIR / "media"

# --- Security -------------------------------------------------------------------------------

SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
if not DEBUG and not EMBEDDED and not LOCAL_DEMO:
    # Behind TLS in production; the embedded mode serves plain HTTP on localhost.
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = _bool("SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = _int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]

# --- REST API -------------------------------------------------------------------------------

# Requests to /api/ larger than this are refused with 413 before they are parsed.
API_MAX_BODY_BYTES = _int("API_MAX_BODY_BYTES", 8 * 1024 * 1024, minimum=1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = API_MAX_BODY_BYTES
# Request bodies a server worker holds at once while they arrive (compliance/wsgi_bridge.py):
# beyond it a new body is refused with 503 until others are done.
WEB_BODY_BUFFER_BYTES = _int("WEB_BODY_BUFFER_BYTES", 128 * 1024 * 1024, minimum=1024)
if WEB_BODY_BUFFER_BYTES < API_MAX_BODY_BYTES:
    _fail("WEB_BODY_BUFFER_BYTES must be at least API_MAX_BODY_BYTES, or no such body fits.")
INGEST_MAX_BATCH = 1000

# Requests per API client per minute, counted in Redis; 0 turns the limit off (the default
# in tests, so the suite is never throttled; throttling tests set it themselves). The
# default leaves room for the consent-check hot path.
API_RATE_PER_MINUTE = _int("API_RATE_PER_MINUTE", 0 if TESTING else 6000)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["compliance.auth.ApiKeyAuthentication"],
    "DEFAULT_THROTTLE_CLASSES": ["integrations.throttling.ApiClientRateThrottle"],
    "DEFAULT_PERMISSION_CLASSES": ["compliance.auth.HasScopes"],
    "DEFAULT_RENDERER_CLASSES": ["compliance.api.content.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["compliance.api.content.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "compliance.api.pagination.CursorPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "compliance.api.errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Privacy compliance service API",
    "DESCRIPTION": (
        "Consents, opt-outs, conversation logs and data subject requests for AI chatbot "
        "plugins. Authenticate with `Authorization: Bearer <api key>`."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI served from this service, not a CDN: no third party sees who reads the docs.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/v[0-9]",
    "APPEND_COMPONENTS": {
        "securitySchemes": {
            "ApiKey": {"type": "http", "scheme": "bearer", "description": "An API key."}
        }
    },
    "SECURITY": [{"ApiKey": []}],
    # Every operation documents the errors any endpoint can answer (401, 403, 429, ...).
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "compliance.api.schema.add_default_errors",
    ],
}

# --- Consent (the consent app; see docs/consent.md) -----------------------------------------

# The consent-check cache must be shared by every process, or a withdrawal in one process
# could not invalidate another's copy: only Redis qualifies, locmem means no caching.
CONSENT_CACHE_ENABLED = bool(REDIS_URL) and _bool("CONSENT_CACHE_ENABLED", True)
CONSENT_CACHE_ALIAS = "default"
CONSENT_CACHE_TTL = _int("CONSENT_CACHE_TTL", 300, minimum=1)
# GET /api/v1/consent/check answered with one Redis round trip outside DRF when it can
# (consent/hotpath.py); off, every check takes the full view. Needs the cache above.
CONSENT_CHECK_HOT_PATH = _bool("CONSENT_CHECK_HOT_PATH", True)
CONSENT_CHECK_MAX_BATCH = 1000
# Answers for customers the service has never seen follow this jurisdiction's defaults unless
# the caller names one; the strictest (opt-in) is the safe choice.
CONSENT_UNKNOWN_SUBJECT_JURISDICTION = os.environ.get("CONSENT_UNKNOWN_SUBJECT_JURISDICTION", "EU")
if CONSENT_UNKNOWN_SUBJECT_JURISDICTION not in {"EU", "UK", "US-CA", "OTHER"}:
    _fail("CONSENT_UNKNOWN_SUBJECT_JURISDICTION must be one of EU, UK, US-CA, OTHER.")
CONSENT_GPC_LAST_UPDATE = os.environ.get("CONSENT_GPC_LAST_UPDATE", "2026-11-27")
# Kantara consent receipts: an RSA private key in PEM (``\n`` escapes allowed in the
# variable). Unset in the embedded mode and tests: generated once into var/.
CONSENT_RECEIPT_PRIVATE_KEY = os.environ.get("CONSENT_RECEIPT_PRIVATE_KEY", "").replace(
    "\\n", "\n"
)
# After a rotation, the public keys (PEM, one after the other) of the keys that signed the
# receipts customers already hold: published in the JWKS beside the current one.
CONSENT_RECEIPT_RETIRED_KEYS = os.environ.get("CONSENT_RECEIPT_RETIRED_KEYS", "").replace(
    "\\n", "\n"
)
if CONSENT_RECEIPT_PRIVATE_KEY or CONSENT_RECEIPT_RETIRED_KEYS:
    from consent import receipt_keys

    try:
        if CONSENT_RECEIPT_PRIVATE_KEY:
            receipt_keys.private_key(CONSENT_RECEIPT_PRIVATE_KEY, check_primes=False)
        receipt_keys.public_keys(CONSENT_RECEIPT_RETIRED_KEYS)
    except ValueError as exc:
        _fail(str(exc))
CONSENT_RECEIPT_GENERATE_KEY = EMBEDDED or TESTING or LOCAL_DEMO
CONSENT_RECEIPT_KEY_FILE = VAR_DIR / "receipt_signing_key.pem"
CONSENT_CONTROLLER = {
    "name": os.environ.get("CONSENT_CONTROLLER_NAME", "Example Retail Ltd"),
    "service": os.environ.get("CONSENT_CONTROLLER_SERVICE", "Customer service assistants"),
    "contact": os.environ.get("CONSENT_CONTROLLER_CONTACT", "Data Protection Officer"),
    "email": os.environ.get(
        "CONSENT_CONTROLLER_EMAIL", os.environ.get("DEFAULT_FROM_EMAIL", "privacy@localhost")
    ),
    "phone": os.environ.get("CONSENT_CONTROLLER_PHONE", "+44 20 7946 0000"),
    "street": os.environ.get("CONSENT_CONTROLLER_STREET", "1 Example Street"),
    "locality": os.environ.get("CONSENT_CONTROLLER_LOCALITY", "London"),
    "postal_code": os.environ.get("CONSENT_CONTROLLER_POSTAL_CODE", "EC1A 1AA"),
    "country": os.environ.get("CONSENT_CONTROLLER_COUNTRY", "GB"),
    "url": os.environ.get("CONSENT_CONTROLLER_URL", "https://example.com"),
    "policy_url": os.environ.get("CONSENT_POLICY_URL", "https://example.com/privacy"),
}

# --- Privacy portal (compliance/portal, docs/portal.md) -----------------------------------

# Who delivers sign-in codes, per identity type: dotted paths of CodeSender classes.
PORTAL_CODE_SENDERS = {
    "email": "compliance.portal.senders.EmailCodeSender",
    # No SMS gateway yet: sends to the customer's email address on record, if any.
    "phone": "compliance.portal.senders.PhoneCodeSender",
}
PORTAL_CODE_TTL_SECONDS = _int("PORTAL_CODE_TTL_SECONDS", 10 * 60, minimum=60)
PORTAL_CODE_MAX_ATTEMPTS = _int("PORTAL_CODE_MAX_ATTEMPTS", 5, minimum=1)
PORTAL_CODES_PER_IDENTITY_PER_HOUR = _int("PORTAL_CODES_PER_IDENTITY_PER_HOUR", 5, minimum=1)
PORTAL_CODES_PER_IP_PER_HOUR = _int("PORTAL_CODES_PER_IP_PER_HOUR", 20, minimum=1)
# Every "send me a code" takes at least this long, whether or not the address is known
# and an email goes out, so response times do not tell who is a customer.
PORTAL_SIGN_IN_MIN_SECONDS = _int("PORTAL_SIGN_IN_MIN_MS", 0 if TESTING else 400) / 1000
# A signed-in customer is signed out after this long without a request.
PORTAL_SESSION_IDLE_SECONDS = _int("PORTAL_SESSION_IDLE_SECONDS", 15 * 60, minimum=1)
PORTAL_CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)
CSRF_FAILURE_VIEW = "compliance.portal.views.csrf_failure"

# --- Webhooks and idempotency (the integrations app; see docs/api.md) -------------------------

WEBHOOK_TIMEOUT_SECONDS = _int("WEBHOOK_TIMEOUT_SECONDS", 10, minimum=1)
# A failed delivery is retried after base, 2x base, 4x base ... seconds, at most the maximum
# apart; with the defaults 20 tries span about 13 hours before a delivery is given up.
WEBHOOK_BACKOFF_BASE_SECONDS = _int("WEBHOOK_BACKOFF_BASE_SECONDS", 30, minimum=1)
WEBHOOK_BACKOFF_MAX_SECONDS = _int("WEBHOOK_BACKOFF_MAX_SECONDS", 3600, minimum=1)
WEBHOOK_MAX_ATTEMPTS = _int("WEBHOOK_MAX_ATTEMPTS", 20, minimum=1)
# Production refuses targets on loopback, private and link-local addresses, so a
# subscription cannot reach this service's own network; embedded mode and tests allow them.
WEBHOOK_ALLOW_PRIVATE_TARGETS = _bool("WEBHOOK_ALLOW_PRIVATE_TARGETS", EMBEDDED or TESTING)
IDEMPOTENCY_TTL_HOURS = _int("IDEMPOTENCY_TTL_HOURS", 24, minimum=1)

CELERY_BEAT_SCHEDULE = globals().get("CELERY_BEAT_SCHEDULE", {})
CELERY_BEAT_SCHEDULE.update(
    {
        # Every minute: queue webhook deliveries that are due, in case a dispatch was lost
        # with a worker or the broker (the outbox row is the truth; see integrations).
        "webhooks-dispatch-due": {
            "task": "integrations.tasks.webhook_dispatch_due_task",
            "schedule": 60.0,
        },
        # Hourly: drop idempotency records older than IDEMPOTENCY_TTL_HOURS; they hold
        # response bodies, which may name a subject.
        "idempotency-purge": {
            "task": "integrations.tasks.idempotency_purge_task",
            "schedule": 3600.0,
        },
        # Every minute: index the mentions of ingested messages whose task was lost with a
        # worker or the broker (the pending scan row is the truth; see compliance.mention_index).
        "mentions-index-sweep": {
            "task": "compliance.tasks.mentions_index_sweep",
            "schedule": 60.0,
        },
    }
)

# --- Data subject requests (the dsar app; see docs/dsar.md) ---------------------------------

# Types a DPO must approve before they run (GDPR Art. 17 erasure is irreversible).
DSAR_APPROVAL_REQUIRED_TYPES = env.list("DSAR_APPROVAL_REQUIRED_TYPES", default=["erasure"])
# Regulation of a request whose identity matches nobody and that names none.
DSAR_DEFAULT_REGULATION = os.environ.get("DSAR_DEFAULT_REGULATION", "gdpr")
if DSAR_DEFAULT_REGULATION not in {"gdpr", "ccpa"}:
    _fail("DSAR_DEFAULT_REGULATION must be gdpr or ccpa.")
# One-time codes that verify portal and API requests (GDPR Art. 12(6)).
DSAR_VERIFICATION_CODE_MINUTES = _int("DSAR_VERIFICATION_CODE_MINUTES", 30, minimum=1)
DSAR_VERIFICATION_MAX_ATTEMPTS = _int("DSAR_VERIFICATION_MAX_ATTEMPTS", 5, minimum=1)
DSAR_VERIFICATION_MAX_CODES = _int("DSAR_VERIFICATION_MAX_CODES", 5, minimum=1)
# Execution across log sources: attempts per source, exponential backoff between them, when a
# running source counts as abandoned (no heartbeat; longer than any single connector call),
# and when a pending one counts as lost by the broker.
DSAR_SOURCE_TASK_MAX_ATTEMPTS = _int("DSAR_SOURCE_TASK_MAX_ATTEMPTS", 5, minimum=1)
DSAR_RETRY_BASE_SECONDS = _int("DSAR_RETRY_BASE_SECONDS", 30, minimum=0)
DSAR_RETRY_MAX_SECONDS = _int("DSAR_RETRY_MAX_SECONDS", 3600, minimum=0)
DSAR_STALE_TASK_SECONDS = _int("DSAR_STALE_TASK_SECONDS", 15 * 60, minimum=1)
DSAR_RESEND_PENDING_SECONDS = _int("DSAR_RESEND_PENDING_SECONDS", 5 * 60, minimum=1)
DSAR_EXPORT_BATCH_SIZE = _int("DSAR_EXPORT_BATCH_SIZE", 1000, minimum=1)
# Export packages and their parts: private files, never under MEDIA_ROOT.
DSAR_FILES_DIR = VAR_DIR / "private" / "dsar"
# Download links (signed, django.core.signing) and how long the package is kept.
DSAR_EXPORT_LINK_DAYS = _int("DSAR_EXPORT_LINK_DAYS", 7, minimum=1)
DSAR_CERTIFICATE_LINK_DAYS = _int("DSAR_CERTIFICATE_LINK_DAYS", 90, minimum=1)
# Prefix for links in emails (e.g. https://privacy.example.com); relative links if unset.
DSAR_PUBLIC_BASE_URL = os.environ.get("DSAR_PUBLIC_BASE_URL", "")
# CCPA §7101: the pseudonymized record of each request is kept 24 months.
DSAR_RECORD_RETENTION_DAYS = _int("DSAR_RECORD_RETENTION_DAYS", 730, minimum=1)
DSAR_RECORD_HASH_KEY = os.environ.get("DSAR_RECORD_HASH_KEY", "")
# After a complete erasure, delete the subject row too (identities, consents by cascade).
DSAR_ERASURE_DELETES_SUBJECT = _bool("DSAR_ERASURE_DELETES_SUBJECT", True)
# GDPR Art. 18(3): days between telling the subject and lifting a restriction.
DSAR_RESTRICTION_LIFT_NOTICE_DAYS = _int("DSAR_RESTRICTION_LIFT_NOTICE_DAYS", 14, minimum=0)
# Texts of the access report (GDPR Art. 15(1)(d), (f), (h)).
DSAR_SITE_NAME = os.environ.get("DSAR_SITE_NAME", "Privacy compliance service")
DSAR_PRIVACY_CONTACT = os.environ.get(
    "DSAR_PRIVACY_CONTACT", os.environ.get("DEFAULT_FROM_EMAIL", "privacy@localhost")
)
DSAR_SUPERVISORY_AUTHORITY = os.environ.get(
    "DSAR_SUPERVISORY_AUTHORITY",
    "the data protection authority of the EU/EEA country where you live or work, or the "
    "UK Information Commissioner's Office (ico.org.uk)",
)
DSAR_RETENTION_STATEMENT = os.environ.get(
    "DSAR_RETENTION_STATEMENT",
    "Conversation logs are kept for the period set in the retention policy of each system "
    "and then deleted; ask us for the period that applies to you.",
)
DSAR_AUTOMATED_DECISIONS_STATEMENT = os.environ.get(
    "DSAR_AUTOMATED_DECISIONS_STATEMENT",
    "The AI assistants answer your questions; they take no decisions with legal or similarly "
    "significant effects on you.",
)

CELERY_BEAT_SCHEDULE = globals().get("CELERY_BEAT_SCHEDULE", {})
CELERY_BEAT_SCHEDULE.update(
    {
        # Every minute: resend source tasks the broker lost or a dead worker abandoned, and
        # finalize requests whose sources are all finished (the rows are the truth).
        "dsar-watchdog": {"task": "dsar.watchdog", "schedule": 60.0},
        # Hourly: delete export packages whose download link has expired.
        "dsar-purge-expired-exports": {"task": "dsar.purge_expired_exports", "schedule": 3600.0},
        # Daily: drop pseudonymized request records older than 24 months (CCPA §7101).
        "dsar-purge-request-records": {"task": "dsar.purge_request_records", "schedule": 86400.0},
    }
)

# --- Retention and legal holds (compliance/retention; see docs/retention.md) ---------------

# When the daily enforcement runs: a crontab line, "minute hour day-of-month month
# day-of-week", in UTC (CELERY_TIMEZONE). Default 02:30, when chat traffic is lowest.
RETENTION_SCHEDULE = os.environ.get("RETENTION_SCHEDULE", "30 2 * * *")
# Rows per batch; each batch is one short transaction, so no lock is held for long.
RETENTION_BATCH_SIZE = _int("RETENTION_BATCH_SIZE", 2000, minimum=1)
# A source whose worker sent no heartbeat for this long is taken over by the next run.
RETENTION_LEASE_SECONDS = _int("RETENTION_LEASE_SECONDS", 15 * 60, minimum=30)
# The consent purpose whose withdrawal triggers policies with on_logging_withdrawal.
RETENTION_LOGGING_PURPOSE = os.environ.get("RETENTION_LOGGING_PURPOSE", "conversation-logging")


def _retention_crontab(spec: str):
    from celery.schedules import crontab

    fields = spec.split()
    if len(fields) != 5:
        _fail(f"RETENTION_SCHEDULE must be five crontab fields, not {spec!r}.")
    minute, hour, day_of_month, month_of_year, day_of_week = fields
    try:
        return crontab(
            minute=minute,
            hour=hour,
            day_of_month=day_of_month,
            month_of_year=month_of_year,
            day_of_week=day_of_week,
        )
    except ValueError as exc:
        _fail(f"RETENTION_SCHEDULE {spec!r} is not a valid crontab line ({exc}).")


CELERY_BEAT_SCHEDULE = globals().get("CELERY_BEAT_SCHEDULE", {})
CELERY_BEAT_SCHEDULE.update(
    {
        # Daily at RETENTION_SCHEDULE: enforce every retention policy (GDPR Art. 5(1)(e)),
        # first resuming any run a crash or deploy interrupted.
        "retention-enforce-daily": {
            "task": "compliance.tasks.retention_enforce_scheduled",
            "schedule": _retention_crontab(RETENTION_SCHEDULE),
        },
    }
)

# --- DPO workspace (compliance/workspace; see docs/workspace.md) ----------------------------

# Its own app label ("workspace") for the grant pages and the migration that creates the
# per-system permissions (compliance.view_system_data, compliance.act_on_system_data).
INSTALLED_APPS += ["compliance.workspace"]
# How many weeks the dashboard's charts cover.
WORKSPACE_DASHBOARD_WEEKS = _int("WORKSPACE_DASHBOARD_WEEKS", 12, minimum=1)
# Four-eyes (EU AI Act Art. 14 human oversight; GDPR Art. 5(2) accountability): with it on,
# an erasure whose sources hold more than the threshold of the subject's records needs a
# second approver, who is not the first.
DSAR_FOUR_EYES_ENABLED = _bool("DSAR_FOUR_EYES_ENABLED", False)
DSAR_FOUR_EYES_THRESHOLD = _int("DSAR_FOUR_EYES_THRESHOLD", 1000, minimum=0)

# --- OpenDSR v2 / OpenGDPR v1 (integrations/opendsr; see docs/opendsr.md) ----------------

# Its own app label ("opendsr"): the protocol's view of data subject requests and the outbox
# of signed status callbacks.
INSTALLED_APPS += ["integrations.opendsr"]
# The processor's RSA signing key and its X.509 certificate, in PEM (``\n`` escapes allowed).
# Production must set both (a certificate issued to OPENDSR_PROCESSOR_DOMAIN by a CA, as the
# specification asks); the embedded mode and tests generate a self-signed pair once into
# OPENDSR_KEY_DIR. Without them the OpenDSR endpoints answer 503; nothing else is affected.
OPENDSR_PRIVATE_KEY = os.environ.get("OPENDSR_PRIVATE_KEY", "").replace("\\n", "\n")
OPENDSR_CERTIFICATE = os.environ.get("OPENDSR_CERTIFICATE", "").replace("\\n", "\n")
OPENDSR_GENERATE_CERTIFICATE = EMBEDDED or TESTING or LOCAL_DEMO
OPENDSR_KEY_DIR = VAR_DIR / "private" / "opendsr"
# X-OpenDSR-Processor-Domain: the domain the certificate is issued to and requests arrive on.
# Empty: the host of DSAR_PUBLIC_BASE_URL, else "localhost".
OPENDSR_PROCESSOR_DOMAIN = os.environ.get("OPENDSR_PROCESSOR_DOMAIN", "")
# OpenDSR requests are a few identities; anything larger is refused before it is parsed.
OPENDSR_MAX_BODY_BYTES = _int("OPENDSR_MAX_BODY_BYTES", 64 * 1024, minimum=1024)
CELERY_BEAT_SCHEDULE["opendsr-callbacks-dispatch-due"] = {
    # Every minute: queue status callbacks that are due, in case a dispatch was lost with a
    # worker or the broker (the outbox row is the truth, as for webhooks).
    "task": "integrations.opendsr.tasks.opendsr_callbacks_dispatch_due_task",
    "schedule": 60.0,
}

# --- Email ----------------------------------------------------------------------------------

EMAIL_BACKEND = os.environ.get(
    "EMAIL_BACKEND",
    "django.core.mail.backends.console.EmailBackend"
    if EMBEDDED or LOCAL_DEMO
    else "django.core.mail.backends.smtp.EmailBackend",
)
if os.environ.get("EMAIL_URL"):
    vars().update(env.email_url("EMAIL_URL"))
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "privacy@localhost")

# --- Logging --------------------------------------------------------------------------------

# Request logs carry paths only, never query strings or bodies: both may hold personal data.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.server": {"level": "WARNING"}},
}
