"""The consent-check cache, and why it can never serve an allow after a withdrawal.

Each subject has a *generation token* in the cache (``consent:gen:<id>``, a random string)
and one *state blob* (``consent:state:<id>``) that records the token it was built under.
A blob counts only while its token equals the subject's current token.

- A reader fetches token and blob in one round trip. If the blob is missing or carries
  another token, it reads the states from the database and stores a blob stamped with the
  token it fetched *before* that database read.
- A writer changes the database and, after its transaction commits
  (``transaction.on_commit``), sets a fresh random token. (It also sets one at once, inside
  its transaction; that only makes later reads in the same transaction miss the cache. Reads
  inside any transaction never store what they read, since it may be uncommitted.)

The race this closes: a reader misses, reads the old states, the withdrawal commits, the
writer bumps the token, and only then the slow reader stores its old states. That blob is
stamped with the old token, so every later reader, who sees the new token, ignores it and
reads the database again. Conversely a blob stamped with the token set after the commit can
only have been built by a reader that read that token, i.e. after the commit, so it holds the
new state. (Tokens set before the commit, including the writer's own early one, are all
replaced by that last one.)
By the time a write service returns (its caller's "acknowledged"), the bump has run, because
Django runs on-commit callbacks in the committing thread before ``atomic`` exits.

Bumping to a *random* token rather than incrementing matters when Redis evicts or loses the
token key: the next reader creates a new random one, and no surviving blob can match it.
The one window left is a token bump that fails (Redis unreachable at that moment while a
reader can still reach it); blobs expire after ``CONSENT_CACHE_TTL`` seconds, which bounds it.

The cache is only used when it is shared by every process (Redis). A per-process cache
(the embedded mode's locmem) cannot be invalidated from another process, so with it every
check reads the database.

The purpose catalogue is kept in each process and validated against one shared token the
same way; editing a purpose bumps it after commit. Inside a transaction it is always read
from the database.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.core.cache import caches
from django.db import connection, transaction

logger = logging.getLogger(__name__)

CATALOGUE_KEY = "consent:catalogue"
# A day: a token only has to outlive the blobs stamped with it.
GENERATION_TTL = 24 * 3600


def enabled() -> bool:
    return bool(getattr(settings, "CONSENT_CACHE_ENABLED", False))


def _cache():
    return caches[settings.CONSENT_CACHE_ALIAS]


def generation_key(subject_id) -> str:
    return f"consent:gen:{subject_id}"


def state_key(subject_id) -> str:
    return f"consent:state:{subject_id}"


def _new_token() -> str:
    return secrets.token_hex(8)


# --- writers --------------------------------------------------------------------------------


def _bump(keys: list[str]) -> None:
    if not enabled() or not keys:
        return
    try:
        _cache().set_many({key: _new_token() for key in keys}, timeout=GENERATION_TTL)
    except Exception:
        # The change is committed; readers can serve the old answer until the blob expires.
        logger.exception(
            "consent cache: could not invalidate %d key(s); stale entries expire within %s s",
            len(keys),
            settings.CONSENT_CACHE_TTL,
        )


def subjects_changed_on_commit(subject_ids: Iterable) -> None:
    """Invalidate these subjects' cached states. Call it inside the transaction that changes
    their consent states: the token moves at once (so reads later in this transaction miss
    the cache and see its own writes) and again after the commit (the move that counts for
    everyone else, see the module docstring)."""
    keys = [generation_key(sid) for sid in {str(s) for s in subject_ids}]
    _bump(keys)
    transaction.on_commit(lambda: _bump(keys))


def catalogue_changed_on_commit() -> None:
    _bump([CATALOGUE_KEY])
    transaction.on_commit(lambda: _bump([CATALOGUE_KEY]))


# --- readers --------------------------------------------------------------------------------


@dataclass(frozen=True)
class StateRow:
    purpose_id: int
    status: str
    source: str
    since: datetime


SubjectStates = dict[int, StateRow]


def _encode(states: SubjectStates) -> list:
    return [[r.purpose_id, r.status, r.source, r.since.isoformat()] for r in states.values()]


def _decode(rows: list) -> SubjectStates:
    return {
        pid: StateRow(pid, status, source, datetime.fromisoformat(since))
        for pid, status, source, since in rows
    }


def read(subject_ids: list, *, with_catalogue: bool) -> tuple[dict, dict, str | None]:
    """One round trip: ({subject_id: states} for valid blobs, {subject_id: token} for the
    current tokens, the catalogue token). Missing tokens are created here, so that a token
    always exists before the caller reads the database."""
    if not enabled():
        return {}, {}, None
    keys = []
    if with_catalogue:
        keys.append(CATALOGUE_KEY)
    for sid in subject_ids:
        keys += [generation_key(sid), state_key(sid)]
    try:
        found = _cache().get_many(keys)
        tokens: dict = {}
        blobs: dict = {}
        missing = []
        for sid in subject_ids:
            token = found.get(generation_key(sid))
            if token is None:
                missing.append(sid)
                continue
            tokens[sid] = token
            blob = found.get(state_key(sid))
            if blob is not None and blob[0] == token:
                blobs[sid] = _decode(blob[1])
        catalogue_token = found.get(CATALOGUE_KEY) if with_catalogue else None
        if missing:
            tokens.update(_create_tokens([generation_key(sid) for sid in missing], missing))
        if with_catalogue and catalogue_token is None:
            catalogue_token = _create_tokens([CATALOGUE_KEY], ["catalogue"])["catalogue"]
    except Exception:
        logger.warning("consent cache unreachable; answering from the database")
        return {}, {}, None
    return blobs, tokens, catalogue_token


def _create_tokens(keys: list[str], names: list) -> dict:
    cache = _cache()
    for key in keys:
        cache.add(key, _new_token(), timeout=GENERATION_TTL)
    # Read back: a concurrent reader's add may have won, and its token is the one that counts.
    found = cache.get_many(keys)
    return {name: found.get(key) for name, key in zip(names, keys, strict=True)}


def store(blobs: dict[object, tuple[str, SubjectStates]]) -> None:
    """Store states read from the database, each stamped with the token read *before*.
    Nothing read inside a transaction is stored: it may hold that transaction's uncommitted
    writes, which a rollback would turn into states that never existed."""
    if not enabled() or not blobs or connection.in_atomic_block:
        return
    values = {
        state_key(sid): [token, _encode(states)]
        for sid, (token, states) in blobs.items()
        if token is not None
    }
    try:
        _cache().set_many(values, timeout=settings.CONSENT_CACHE_TTL)
    except Exception:
        logger.warning("consent cache unreachable; states not cached")


# --- the purpose catalogue, per process -----------------------------------------------------


@dataclass(frozen=True)
class PurposeInfo:
    id: int
    slug: str
    lawful_basis: str
    sensitive: bool
    sold_or_shared: bool


@dataclass(frozen=True)
class Catalogue:
    token: str | None
    by_slug: dict[str, PurposeInfo]
    by_id: dict[int, PurposeInfo]


_catalogue_lock = threading.Lock()
_catalogue: Catalogue | None = None


def _load_catalogue(token: str | None) -> Catalogue:
    from consent.models import Purpose

    infos = [
        PurposeInfo(**row)
        for row in Purpose.objects.values(
            "id", "slug", "lawful_basis", "sensitive", "sold_or_shared"
        )
    ]
    return Catalogue(token, {p.slug: p for p in infos}, {p.id: p for p in infos})


def catalogue(token: str | None, *, reload: bool = False) -> Catalogue:
    """The purposes, reloaded when the shared token moved (or always, without a cache, and
    inside a transaction, which may have changed them without moving the token yet)."""
    global _catalogue
    current = _catalogue
    in_transaction = connection.in_atomic_block
    if (
        not reload
        and not in_transaction
        and token is not None
        and current is not None
        and current.token == token
    ):
        return current
    with _catalogue_lock:
        fresh = _load_catalogue(token)
        # Kept only when read outside a transaction, for the reason given in store().
        if token is not None and not in_transaction:
            _catalogue = fresh
        return fresh
