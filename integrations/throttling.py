"""A request rate per API client, counted in the Django cache (Redis in production).

One counter per client and minute, raised with an atomic INCR: the consent-check hot path
pays one cache round trip (INCR and EXPIRE pipelined), not DRF's read-modify-write of a
list of timestamps. A fixed window lets a client send up to twice its rate across a minute
boundary; that is the price of O(1) counting and is fine for a limit meant to stop runaway
clients, not to meter them.
"""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from rest_framework.throttling import BaseThrottle

from compliance.models import ApiClient

logger = logging.getLogger(__name__)

WINDOW_SECONDS = 60


class ApiClientRateThrottle(BaseThrottle):
    """``API_RATE_PER_MINUTE`` requests per client per minute; 0 turns throttling off."""

    def allow_request(self, request, view) -> bool:
        rate = settings.API_RATE_PER_MINUTE
        client = request.user
        if not rate or not isinstance(client, ApiClient):
            return True
        now = time.time()
        window = int(now // WINDOW_SECONDS)
        key = counter_key(client.pk, window)
        try:
            count = _count(key)
        except Exception:
            # Fail open: a lost Redis must not stop consent checks. The database and the
            # scopes still guard every request; only the rate limit is off until it is back.
            logger.warning("API rate limit skipped: the cache is unavailable.", exc_info=True)
            return True
        if count > rate:
            self._wait = (window + 1) * WINDOW_SECONDS - now
            return False
        return True

    def wait(self) -> float | None:
        return max(1.0, getattr(self, "_wait", WINDOW_SECONDS))


# The consent check's hot path (consent/hotpath.py) raises the same counters from a Redis
# script: one budget per client whichever path answers.
COUNTER_PREFIX = "throttle:api-client:"


def counter_key(client_id: int, window: int) -> str:
    """This client's counter for this window (before Django's key prefix)."""
    return f"{COUNTER_PREFIX}{client_id}:{window}"


def _count(key: str) -> int:
    """Raise this window's counter and return it: one round trip to Redis (INCR and EXPIRE
    pipelined; the key names its window, so renewing the expiry changes nothing)."""
    cache = caches["default"]
    if isinstance(cache, RedisCache):
        full_key = cache.make_and_validate_key(key)
        pipe = cache._cache.get_client(full_key, write=True).pipeline(transaction=False)
        pipe.incr(full_key)
        pipe.expire(full_key, WINDOW_SECONDS * 2)
        count, _ = pipe.execute()
        return int(count)
    # add() only sets a missing key, so the expiry is set once per window.
    cache.add(key, 0, timeout=WINDOW_SECONDS * 2)
    return cache.incr(key)
