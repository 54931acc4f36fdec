"""GET /api/v1/consent/check's hot path (consent/hotpath.py): it answers what the full view
answers, byte for byte and with the same headers, leaves every error to the view, spends the
same request budget, and never serves what a change has made stale. The tests commit for
real: the hot path only trusts what was read outside a transaction."""

from __future__ import annotations

import time
from datetime import timedelta
from urllib.parse import quote

import pytest
from django.core.cache import caches
from django.core.wsgi import get_wsgi_application
from django.db import transaction
from django.http import QueryDict
from django.utils import timezone
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

import compliance.wsgi
from compliance import auth
from compliance.models import ApiKey, DataSubject, Jurisdiction, SubjectIdentity
from compliance.services import api_client_update, api_key_revoke, subject_update
from consent import cache, hotpath, selectors, services
from consent.api import CheckQuerySerializer, ConsentCheckView, _plain_check_query
from consent.models import SALE_SHARING, SENSITIVE_PI, ConsentEvent, ConsentSource
from dsar import services as dsar_services
from integrations import throttling
from tests.consent.wsgi_support import Answer, LiveWsgi, call_wsgi
from tests.factories import SubjectFactory

URL = "/api/v1/consent/check"
committed = pytest.mark.django_db(transaction=True)


@pytest.fixture
def app():
    """The shortcut in front of a Django handler built with this test's settings."""
    return hotpath.ConsentCheckShortcut(get_wsgi_application())


@pytest.fixture
def key(make_api) -> str:
    return make_api("consent:read").raw_key


def bearer(raw: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


def full_and_hot(app, settings, query, **meta) -> tuple[Answer, Answer]:
    """The same request answered by the full view, then with the hot path allowed."""
    settings.CONSENT_CHECK_HOT_PATH = False
    full = call_wsgi(app, URL, query, **meta)
    settings.CONSENT_CHECK_HOT_PATH = True
    return full, call_wsgi(app, URL, query, **meta)


def hot(app, query, raw_key, django_assert_num_queries) -> dict:
    """An answer the hot path gives from Redis alone (the full view always asks the
    database for the subject, so no query means the hot path answered)."""
    with django_assert_num_queries(0):
        answer = call_wsgi(app, URL, query, **bearer(raw_key))
    assert answer.status == 200, answer.body
    return answer.json()


def check(app, query, raw_key) -> dict:
    answer = call_wsgi(app, URL, query, **bearer(raw_key))
    assert answer.status == 200, answer.body
    return answer.json()


def warm(app, query, raw_key) -> None:
    """The key's first request takes the full view (which caches the key); the next one
    fills the identity's entry."""
    for _ in range(2):
        check(app, query, raw_key)


def fresh_window() -> None:
    # The rate counts per minute: keep a test's few requests in one window.
    if time.time() % 60 > 55:
        time.sleep(60 - time.time() % 60 + 0.1)


def record(action: str, subject, purpose) -> None:
    services.consent_record(
        subject=subject, purpose=purpose, action=action, source=ConsentSource.PORTAL, actor="t"
    )


# --- the same answers ---------------------------------------------------------------------


def test_the_deployed_application_has_the_shortcut_in_front():
    assert isinstance(compliance.wsgi.application, hotpath.ConsentCheckShortcut)
    assert compliance.wsgi.application.active


def test_the_hot_path_requires_the_scope_the_view_requires():
    assert ConsentCheckView.required_scopes == [hotpath.REQUIRED_SCOPE]


@committed
def test_the_hot_path_answers_byte_for_byte_what_the_full_view_answers(
    app, settings, key, purposes, eu_customer, ca_customer, django_assert_num_queries
):
    record("grant", eu_customer, purposes["marketing"])
    record("withdraw", eu_customer, purposes["ai-improvement"])
    record("object", eu_customer, purposes["analytics"])
    record("opt_out", ca_customer, purposes[SALE_SHARING])
    record("opt_out", ca_customer, purposes[SENSITIVE_PI])
    restricted = SubjectFactory(external_id="R-1", jurisdiction=Jurisdiction.UK)
    DataSubject.objects.filter(pk=restricted.pk).update(restricted_at=timezone.now())
    warm(app, {"subject": "customer_id:EU-1", "purpose": "marketing"}, key)
    known = ["customer_id:EU-1", "email:EVA@example.de", "email:carl@example.com"]
    known.append("customer_id:R-1")
    slugs = [
        "marketing",
        "ai-improvement",
        "analytics",
        "third-party-sharing",
        "location-offers",
        "order-handling",
        SALE_SHARING,
    ]
    reasons = set()
    for subject in [*known, "customer_id:NOBODY"]:
        for slug in slugs:
            query = {"subject": subject, "purpose": slug}
            full, first = full_and_hot(app, settings, query, **bearer(key))
            assert full.status == 200, full.body
            assert first.comparable() == full.comparable(), query
            # An unknown identity is never cached: it costs the one subject query.
            with django_assert_num_queries(0 if subject in known else 1):
                again = call_wsgi(app, URL, query, **bearer(key))
            assert again.comparable() == full.comparable(), query
            reasons.add(full.json()["reason"])
    assert reasons == {
        "explicit_grant",
        "withdrawn",
        "objected",
        "opted_out",
        "restricted",
        "default",
        "unknown_subject_default",
    }


@committed
@pytest.mark.parametrize("secure", [{"secure": True}, {"HTTP_X_FORWARDED_PROTO": "https"}, {}])
def test_the_shortcut_adds_exactly_the_headers_the_middleware_adds(
    settings, key, purposes, eu_customer, secure
):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_HSTS_SECONDS = 600
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    settings.SECURE_HSTS_PRELOAD = True
    settings.SECURE_REFERRER_POLICY = "no-referrer, strict-origin"
    settings.X_FRAME_OPTIONS = "sameorigin"
    # Django's middleware reads these when the handler is built.
    app = hotpath.ConsentCheckShortcut(get_wsgi_application())
    query = {"subject": "customer_id:EU-1", "purpose": "marketing"}
    for _ in range(2):
        call_wsgi(app, URL, query, **bearer(key), **secure)
    full, answer = full_and_hot(app, settings, query, **bearer(key), **secure)
    assert answer.comparable() == full.comparable()
    headers = answer.comparable()[1]
    assert headers["x-frame-options"] == "SAMEORIGIN"
    assert headers["referrer-policy"] == "no-referrer,strict-origin"
    assert ("strict-transport-security" in headers) == bool(secure)


def _scoped(make_api, *scopes) -> str:
    return make_api(*scopes).raw_key


ERRORS = [
    # (what, query, request meta, status)
    ("no key", {}, {"HTTP_AUTHORIZATION": ""}, 401),
    ("an unknown key", {}, {"HTTP_AUTHORIZATION": "Bearer not-a-key"}, 401),
    ("another scheme", {}, {"HTTP_AUTHORIZATION": "Basic dXNlcjpwdw=="}, 401),
    ("a key without the scope", {}, {"key": "consent:write"}, 403),
    ("an unknown purpose", {"purpose": "nope"}, {}, 404),
    ("a malformed identity", {"subject": "email:not-an-email"}, {}, 400),
    ("an unknown identity type", {"subject": "fax:123"}, {}, 400),
    ("an unknown parameter", {"colour": "red"}, {}, 400),
    ("an unknown jurisdiction", {"jurisdiction": "XX"}, {}, 400),
    ("a Sec-GPC other than 1", {}, {"HTTP_SEC_GPC": "yes"}, 400),
    ("an Accept it cannot answer", {}, {"HTTP_ACCEPT": "text/html"}, 406),
    ("a host not allowed", {}, {"HTTP_HOST": "evil.example"}, 400),
    ("a body too large", {}, {"CONTENT_LENGTH": str(10**10)}, 413),
]


@committed
@pytest.mark.parametrize(("what", "extra", "meta", "status"), ERRORS, ids=[e[0] for e in ERRORS])
def test_every_error_is_the_full_view_s_own(
    app, settings, make_api, key, purposes, eu_customer, what, extra, meta, status
):
    meta = dict(meta)
    raw = _scoped(make_api, meta.pop("key")) if "key" in meta else key
    query = {"subject": "customer_id:EU-1", "purpose": "marketing"}
    warm(app, query, key)
    call_wsgi(app, URL, query, **bearer(raw))  # a key refused for its scope is cached too
    headers = {**bearer(raw), **meta}
    if headers["HTTP_AUTHORIZATION"] == "":
        del headers["HTTP_AUTHORIZATION"]
    full, answer = full_and_hot(app, settings, {**query, **extra}, **headers)
    assert full.status == status, full.body
    assert answer.comparable() == full.comparable()
    if what == "a host not allowed":
        return  # Django's own page, before any API code runs
    body = answer.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "errors"}
    assert "not-an-email" not in body["error"]["message"]


@committed
def test_the_hot_path_answers_over_real_http_as_the_full_view_does(
    settings, key, purposes, eu_customer
):
    server = LiveWsgi(compliance.wsgi.application)
    try:
        query = {"subject": "customer_id:EU-1", "purpose": "analytics"}
        headers = {"Authorization": f"Bearer {key}"}
        for _ in range(3):
            answer = server.get(URL, query, headers)
        settings.CONSENT_CHECK_HOT_PATH = False
        full = server.get(URL, query, headers)
        assert answer.comparable() == full.comparable()
        assert answer.json() == {"allowed": True, "reason": "default", "state_since": None}
        refused = server.get(URL, query, {"Authorization": "Bearer nope"})
        assert refused.status == 401
        assert refused.headers["WWW-Authenticate"] == 'Bearer realm="api"'
    finally:
        server.stop()


# --- authentication, scopes and the request rate --------------------------------------------


@committed
def test_a_key_revoked_after_the_hot_path_cached_it_is_refused_at_once(
    app, make_api, purposes, eu_customer, django_assert_num_queries
):
    api = make_api("consent:read")
    query = {"subject": "customer_id:EU-1", "purpose": "marketing"}
    warm(app, query, api.raw_key)
    hot(app, query, api.raw_key, django_assert_num_queries)
    api_key_revoke(key=api.api_client.keys.get(), actor="test")
    answer = call_wsgi(app, URL, query, **bearer(api.raw_key))
    assert answer.status == 401
    assert answer.json()["error"]["code"] == "not_authenticated"


@committed
def test_a_client_that_lost_the_scope_is_refused_at_once(
    app, make_api, purposes, eu_customer, django_assert_num_queries
):
    api = make_api("consent:read")
    query = {"subject": "customer_id:EU-1", "purpose": "marketing"}
    warm(app, query, api.raw_key)
    hot(app, query, api.raw_key, django_assert_num_queries)
    api_client_update(client=api.api_client, scopes=["subjects:read"], system=None, actor="t")
    assert call_wsgi(app, URL, query, **bearer(api.raw_key)).status == 403


@committed
def test_the_hot_and_the_full_path_spend_one_budget_and_a_429_says_when_to_retry(
    app, settings, make_api, purposes, eu_customer, django_assert_num_queries
):
    settings.API_RATE_PER_MINUTE = 4
    fresh_window()
    api = make_api("consent:read")
    query = {"subject": "customer_id:EU-1", "purpose": "marketing"}
    check(app, query, api.raw_key)  # full view: it caches the key
    assert api.post(URL, {"checks": [query]}, format="json").status_code == 200  # full view
    check(app, query, api.raw_key)  # fills the identity's entry
    hot(app, query, api.raw_key, django_assert_num_queries)
    # Each answered request counted once, whichever path answered it.
    window = int(time.time() // throttling.WINDOW_SECONDS)
    assert caches["default"].get(throttling.counter_key(api.api_client.pk, window)) == 4
    refused = call_wsgi(app, URL, query, **bearer(api.raw_key))
    assert refused.status == 429
    assert refused.json()["error"]["code"] == "throttled"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60


@committed
def test_a_key_refused_for_its_scope_spends_none_of_its_budget(
    app, settings, make_api, purposes, eu_customer
):
    settings.API_RATE_PER_MINUTE = 1
    fresh_window()
    api = make_api("subjects:read")
    query = {"subject": "customer_id:EU-1", "purpose": "marketing"}
    # The first refusal caches the key; the hot path then finds the scope missing itself.
    assert [call_wsgi(app, URL, query, **bearer(api.raw_key)).status for _ in range(3)] == [
        403,
        403,
        403,
    ]
    assert api.get("/api/v1/subjects/").status_code == 200
    assert api.get("/api/v1/subjects/").status_code == 429


@committed
def test_a_key_last_used_long_ago_is_handed_to_the_full_view_which_records_the_use(
    app, make_api, purposes, eu_customer, django_assert_num_queries
):
    api = make_api("consent:read")
    query = {"subject": "customer_id:EU-1", "purpose": "marketing"}
    warm(app, query, api.raw_key)
    key = ApiKey.objects.select_related("client", "client__system").get(client=api.api_client)
    key.last_used_at = long_ago = timezone.now() - timedelta(minutes=10)
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=long_ago)
    # The cached record says so too, under the current generation.
    auth._remember(api.raw_key, caches["default"].get(auth.generation_key(), 0), key)
    before = timezone.now()
    check(app, query, api.raw_key)
    assert ApiKey.objects.get(pk=key.pk).last_used_at >= before
    hot(app, query, api.raw_key, django_assert_num_queries)  # and no write after that


# --- Global Privacy Control ------------------------------------------------------------------


@committed
def test_sec_gpc_on_a_check_records_the_opt_out_which_the_hot_path_then_serves(
    app, key, purposes, ca_customer, django_assert_num_queries
):
    query = {"subject": "customer_id:CA-1", "purpose": "third-party-sharing"}
    warm(app, query, key)
    assert hot(app, query, key, django_assert_num_queries)["allowed"] is True
    signalled = call_wsgi(app, URL, query, HTTP_SEC_GPC="1", **bearer(key))
    assert signalled.json() == {"allowed": False, "reason": "gpc", "state_since": None}
    assert ConsentEvent.objects.filter(subject=ca_customer, source="gpc").count() == 1
    answer = check(app, query, key)  # no header: the recorded opt-out answers
    assert (answer["allowed"], answer["reason"]) == (False, "gpc")
    assert answer["state_since"] is not None
    assert hot(app, query, key, django_assert_num_queries) == answer


@committed
def test_a_sec_gpc_other_than_1_is_refused_and_records_nothing(app, key, purposes, ca_customer):
    query = {"subject": "customer_id:CA-1", "purpose": "third-party-sharing"}
    warm(app, query, key)
    for value in ("yes", "true", "0", " 1"):
        answer = call_wsgi(app, URL, query, HTTP_SEC_GPC=value, **bearer(key))
        assert answer.status == 400
        assert answer.json()["error"]["errors"][0]["field"] == "Sec-GPC"
    assert not ConsentEvent.objects.filter(subject=ca_customer).exists()


# --- what the identity entries must never outlive --------------------------------------------


@pytest.fixture
def ana(purposes):
    ana = SubjectFactory(
        external_id="ANA-1", jurisdiction=Jurisdiction.EU, identities={"email": "ana@example.com"}
    )
    record("grant", ana, purposes["marketing"])
    return ana


ANA = {"subject": "email:ana@example.com", "purpose": "marketing"}
GRANTED = ("explicit_grant", True)


def reason(answer: dict) -> tuple[str, bool]:
    return answer["reason"], answer["allowed"]


@committed
def test_an_erased_subject_is_unknown_at_once(app, key, ana, django_assert_num_queries):
    warm(app, ANA, key)
    assert reason(hot(app, ANA, key, django_assert_num_queries)) == GRANTED
    DataSubject.objects.filter(pk=ana.pk).delete()  # what an erasure does
    assert reason(check(app, ANA, key)) == ("unknown_subject_default", False)


@committed
def test_a_rectified_identity_names_nobody_at_once_and_the_new_one_names_the_subject(
    app, key, ana, django_assert_num_queries
):
    warm(app, ANA, key)
    assert reason(hot(app, ANA, key, django_assert_num_queries)) == GRANTED
    correction = {"type": "email", "old": "ana@example.com", "new": "ana@new.example"}
    dsar_services.request_create(
        type="rectification",
        identity={"email": "ana@example.com"},
        channel="api",
        actor="t",
        pre_verified=True,
        details={"corrections": [correction]},
    )
    assert reason(check(app, ANA, key)) == ("unknown_subject_default", False)
    moved = {**ANA, "subject": "email:ana@new.example"}
    assert reason(check(app, moved, key)) == GRANTED


@committed
def test_a_restriction_and_its_lifting_take_effect_at_once(
    app, settings, key, ana, django_assert_num_queries
):
    settings.DSAR_RESTRICTION_LIFT_NOTICE_DAYS = 0
    warm(app, ANA, key)
    assert reason(hot(app, ANA, key, django_assert_num_queries)) == GRANTED
    request = dsar_services.request_create(
        type="restriction",
        identity={"email": "ana@example.com"},
        channel="api",
        actor="t",
        pre_verified=True,
    )
    assert reason(check(app, ANA, key)) == ("restricted", False)
    assert reason(hot(app, ANA, key, django_assert_num_queries)) == ("restricted", False)
    request = dsar_services.restriction_lift_announce(request=request, actor="user:1")
    dsar_services.restriction_lift(request=request, actor="user:1")
    assert reason(check(app, ANA, key)) == GRANTED


@committed
def test_an_identity_given_to_another_subject_answers_for_that_subject_at_once(
    app, key, ana, purposes, django_assert_num_queries
):
    bea = SubjectFactory(external_id="BEA-1", jurisdiction=Jurisdiction.EU)
    record("grant", bea, purposes["marketing"])
    record("withdraw", bea, purposes["marketing"])
    warm(app, ANA, key)
    assert reason(hot(app, ANA, key, django_assert_num_queries)) == GRANTED
    identity = SubjectIdentity.objects.get(type="email", value="ana@example.com")
    identity.subject = bea
    identity.save()  # as the admin saves it
    assert reason(check(app, ANA, key)) == ("withdrawn", False)


@committed
def test_a_new_jurisdiction_changes_the_default_at_once(
    app, key, purposes, ca_customer, django_assert_num_queries
):
    query = {"subject": "email:carl@example.com", "purpose": "marketing"}
    warm(app, query, key)
    assert reason(hot(app, query, key, django_assert_num_queries)) == ("default", True)
    subject_update(subject=ca_customer, jurisdiction=Jurisdiction.EU, actor="t")
    assert reason(check(app, query, key)) == ("default", False)


@committed
def test_a_change_to_what_no_entry_holds_leaves_the_entries_alone(
    app, key, ana, django_assert_num_queries
):
    warm(app, ANA, key)
    ana.display_name = "Ana B."
    ana.save(update_fields=["display_name", "updated_at"])
    hot(app, ANA, key, django_assert_num_queries)


def _slow_reader_reads(subject) -> tuple[str, object]:
    """What a reader that misses the cache has read, as far as the moment it stores:
    the subject's token first, then the identity's rows."""
    ref = {"type": "email", "value": "ana@example.com"}
    _, tokens, _ = cache.read([subject.pk], with_catalogue=False)
    rows = selectors._subjects_by_identity({(ref["type"], ref["value"])})
    assert rows[0][2] == subject.pk
    return cache.identity_digest(ref["type"], ref["value"]), tokens[subject.pk]


@committed
def test_a_reader_that_loses_the_race_with_an_erasure_cannot_cache_the_erased_subject(
    app, key, ana
):
    warm(app, ANA, key)
    digest, token = _slow_reader_reads(ana)
    DataSubject.objects.filter(pk=ana.pk).delete()  # committed
    cache.store_identity(digest, cache.SubjectEntry(str(ana.pk), token, "EU", None))
    assert reason(check(app, ANA, key)) == ("unknown_subject_default", False)


@committed
def test_a_reader_that_loses_the_race_with_a_move_cannot_cache_the_old_owner(
    app, key, ana, purposes
):
    bea = SubjectFactory(external_id="BEA-1", jurisdiction=Jurisdiction.EU)
    record("object", bea, purposes["marketing"])
    warm(app, ANA, key)
    digest, token = _slow_reader_reads(ana)
    identity = SubjectIdentity.objects.get(type="email", value="ana@example.com")
    identity.subject = bea
    identity.save()
    cache.store_identity(digest, cache.SubjectEntry(str(ana.pk), token, "EU", None))
    assert reason(check(app, ANA, key)) == ("objected", False)


@committed
def test_an_entry_names_a_subject_by_id_and_keyed_digest_only(ana):
    entry, _ = hotpath._subject_from_database(
        {"type": "email", "value": "ana@example.com"},
        cache.identity_digest("email", "ana@example.com"),
    )
    assert entry.subject_id == str(ana.pk)
    redis = cache.raw_redis()
    pattern = f"{redis.prefix}consent:who:*"
    keys = [k.decode() for k in redis.client.scan_iter(match=pattern, count=10_000)]
    digest = cache.identity_digest("email", "ana@example.com")
    assert keys == [redis.prefix + cache.identity_key(digest)]
    # Keyed: not the plain SHA-256 the identity table keeps for OpenDSR look-ups.
    assert digest != SubjectIdentity.digests_of("ana@example.com")["value_sha256"]
    stored = redis.client.get(keys[0]).decode()
    assert stored.startswith(f"{ana.pk}|")
    assert "ana" not in stored.lower()


@pytest.mark.django_db
def test_nothing_read_inside_a_transaction_is_kept_as_an_identity_entry(ana):
    digest = cache.identity_digest("email", "ana@example.com")
    with transaction.atomic():
        entry, _ = hotpath._subject_from_database(
            {"type": "email", "value": "ana@example.com"}, digest
        )
    assert entry.subject_id == str(ana.pk)
    redis = cache.raw_redis()
    assert redis.client.get(redis.prefix + cache.identity_key(digest)) is None


# --- the shortcut's own rules -----------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"MIDDLEWARE": [*hotpath.MIDDLEWARE_REVIEWED, "django.middleware.gzip.GZipMiddleware"]},
        {"PREPEND_WWW": True},
        {"DISALLOWED_USER_AGENTS": ["bot"]},
    ],
)
def test_the_shortcut_stands_aside_for_middleware_it_was_not_written_for(settings, change):
    for name, value in change.items():
        setattr(settings, name, value)
    assert not hotpath.ConsentCheckShortcut(get_wsgi_application()).active


@pytest.mark.django_db
def test_the_schema_still_describes_both_operations_of_the_check_with_examples(client):
    response = client.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    item = response.json()["paths"]["/api/v1/consent/check"]
    assert item["get"]["operationId"] == "consent_check"
    assert item["post"]["operationId"] == "consent_check_batch"
    for operation in (item["get"], item["post"]):
        assert operation["responses"]["200"]["content"]["application/json"]["examples"]
    parameters = {p["name"] for p in item["get"]["parameters"]}
    assert {"subject", "purpose", "jurisdiction", "gpc", "Sec-GPC"} <= parameters


QUERY_TEXT = st.text(alphabet=st.sampled_from(list("subjectpuro=&%:+_-.@ 2AFé;\x00")), max_size=40)
PAIRS = st.lists(
    st.tuples(
        st.sampled_from(["subject", "purpose", "gpc", "Subject", "purpose "]),
        st.text(alphabet=st.sampled_from(list("ab:_-.@ \t%+é1")), max_size=12),
    ),
    max_size=4,
)


@hypothesis_settings(max_examples=400, deadline=None)
@given(QUERY_TEXT | PAIRS.map(lambda ps: "&".join(f"{quote(n)}={quote(v)}" for n, v in ps)))
def test_the_hot_path_reads_a_query_string_exactly_as_the_view_does(query_string):
    plain = hotpath.plain_query(query_string)
    if plain is None:
        return
    params = QueryDict(query_string).dict()
    assert _plain_check_query(params) == {"subject": plain[0], "purpose": plain[1], "gpc": False}
    serializer = CheckQuerySerializer(data=params)
    assert serializer.is_valid(), serializer.errors
    assert (serializer.validated_data["subject"], serializer.validated_data["purpose"]) == plain
