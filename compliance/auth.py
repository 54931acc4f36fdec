"""API key authentication and per-view scopes for the REST API."""

from __future__ import annotations

import logging

from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from django.db import connection, transaction
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, permissions

from compliance.models import ApiKey
from compliance.services import _key_digest, api_key_authenticate

logger = logging.getLogger(__name__)

# last_used_at is written at most this often per key, so the hot path does not write.
LAST_USED_RESOLUTION_SECONDS = 300

# Authenticated keys (with their client and its system) are kept in Redis this long, under
# the key's digest, so a request costs one cache round trip instead of a three-table query.
# Every revocation or client change bumps a generation number; an entry made under an older
# generation is ignored, so a key revoked through the services stops working at once. The
# TTL only bounds changes made behind the services' back (SQL, a direct ORM update).
AUTH_CACHE_SECONDS = 60
_GENERATION_KEY = "api-auth:generation"
# Beside each cached key, the same facts as a plain string a Redis script can read (see
# lean_record_key): the consent check's hot path (consent/hotpath.py) authenticates,
# checks the scope and counts the request rate in the one round trip it makes.
_LEAN_PREFIX = "api-auth:lean:"


def _shared_cache() -> RedisCache | None:
    # Only a cache all processes share can be invalidated for all of them.
    backend = caches["default"]
    return backend if isinstance(backend, RedisCache) else None


def _bump_generation() -> None:
    cache = _shared_cache()
    if cache is None:
        return
    try:
        key = cache.make_and_validate_key(_GENERATION_KEY)
        cache._cache.get_client(key, write=True).incr(key)
    except Exception:
        logger.warning("Could not invalidate the API key cache.", exc_info=True)


def api_auth_cache_invalidate() -> None:
    """Forget every cached authentication: call it inside the transaction that revokes a
    key or a client or changes a client. It bumps the generation now (a request that looks
    before the commit finds the row unchanged and caches it under the new number) and again
    after the commit (which voids what such a request cached)."""
    _bump_generation()
    transaction.on_commit(_bump_generation, robust=True)


def _authenticate_cached(raw: str) -> tuple[ApiKey | None, int | None]:
    """The live key and the generation it was read under (None: not cacheable)."""
    cache = _shared_cache()
    if cache is None:
        return api_key_authenticate(raw), None
    entry_key = _entry_key(raw)
    try:
        found = cache.get_many([_GENERATION_KEY, entry_key])  # one MGET
    except Exception:
        logger.warning("API key cache unavailable; asking the database.", exc_info=True)
        return api_key_authenticate(raw), None
    # The generation is read before the database: a revocation committed after this read
    # bumps it past the number the entry is stored under.
    generation = found.get(_GENERATION_KEY, 0)
    entry = found.get(entry_key)
    if entry is not None and entry[0] == generation:
        return entry[1], generation
    key = api_key_authenticate(raw)
    if key is not None:
        _remember(raw, generation, key)
    return key, generation


def _entry_key(raw: str) -> str:
    return f"api-auth:key:{_key_digest(raw)}"  # a digest: the raw key never reaches Redis


def lean_record_key(raw: str) -> str:
    """The cache key (before Django's prefix) of the key's plain record, written beside the
    pickled entry: ``"<generation> <client id> <last used, epoch s> <scope> <scope> ..."``.
    It is valid under the same rule as the entry (its generation is the current one)."""
    return f"{_LEAN_PREFIX}{_key_digest(raw)}"


def generation_key() -> str:
    return _GENERATION_KEY


def _lean_record(generation: int, key: ApiKey) -> str:
    last_used = int(key.last_used_at.timestamp()) if key.last_used_at else 0
    # A scope holding whitespace can match no scope a view requires: it is left out.
    scopes = " ".join(s for s in key.client.scopes if isinstance(s, str) and s.split() == [s])
    return f"{generation} {key.client_id} {last_used} {scopes}".rstrip()


def _remember(raw: str, generation: int, key: ApiKey) -> None:
    cache = _shared_cache()
    # Nothing read inside a transaction is cached: it may be uncommitted (consent/cache.py).
    if cache is None or connection.in_atomic_block:
        return
    try:
        entry_key = cache.make_and_validate_key(_entry_key(raw))
        pipe = cache._cache.get_client(entry_key, write=True).pipeline(transaction=False)
        pipe.set(
            entry_key, cache._cache._serializer.dumps((generation, key)), ex=AUTH_CACHE_SECONDS
        )
        pipe.set(
            cache.make_and_validate_key(lean_record_key(raw)),
            _lean_record(generation, key),
            ex=AUTH_CACHE_SECONDS,
        )
        pipe.execute()
    except Exception:
        logger.warning("Could not cache an API key.", exc_info=True)


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer <key>``. Authenticates the key's ApiClient as request.user."""

    keyword = "bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request)
        if not header:
            return None
        try:
            keyword, raw = header.decode("ascii").split(None, 1)
        except (UnicodeDecodeError, ValueError):
            raise exceptions.AuthenticationFailed(
                "Send the API key as 'Authorization: Bearer <key>'."
            ) from None
        if keyword.lower() != self.keyword:
            raise exceptions.AuthenticationFailed(
                "Send the API key as 'Authorization: Bearer <key>'."
            )
        raw = raw.strip()
        key, generation = _authenticate_cached(raw)
        if key is None:
            raise exceptions.AuthenticationFailed("This API key is unknown or revoked.")
        now = timezone.now()
        if key.last_used_at is None or (now - key.last_used_at).total_seconds() > (
            LAST_USED_RESOLUTION_SECONDS
        ):
            ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
            key.last_used_at = now
            if generation is not None:
                # Keep the cached copy's last_used_at in step, or every request would write;
                # under the generation read before the key was, so a revocation since wins.
                _remember(raw, generation, key)
        return key.client, key

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="api"'


class HasScopes(permissions.BasePermission):
    """Every view names ``required_scopes`` (or ``scopes_by_method``); a key without them is
    refused. A view that names none is refused too, so a forgotten declaration fails closed."""

    message = "This API key lacks the scope this endpoint needs."

    def has_permission(self, request, view) -> bool:
        client = request.user
        if client is None or not getattr(client, "is_authenticated", False):
            raise exceptions.NotAuthenticated("Authenticate with 'Authorization: Bearer <key>'.")
        by_method = getattr(view, "scopes_by_method", None)
        if by_method is not None:
            required = by_method.get(request.method, by_method.get("*"))
        else:
            required = getattr(view, "required_scopes", None)
        if required is None:
            return False
        missing = [scope for scope in required if not client.has_scope(scope)]
        if missing:
            self.message = f"This API key lacks the scope: {', '.join(missing)}."
            return False
        return True


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "compliance.auth.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "An API key."}
