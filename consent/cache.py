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

The GET check's hot path (``consent/hotpath.py``) also keeps, per identity, which subject it
names with that subject's jurisdiction and restriction (``consent:who:<keyed digest>``),
stamped with the subject's token under the same rule: built only from rows read after the
token was, valid only while the token is current. Whatever changes those rows moves the
token after its commit: the consent services, the DSAR app's restriction and rectification
(``subjects_changed_on_commit``), and for every other ORM write (the admin, a subject's
update, an erasure's delete, an identity deleted or moved) the signal receivers of
``connect_subject_signals``. An identity nobody has is never cached, so a new subject or
identity needs nothing. ``QuerySet.update()`` of a subject's jurisdiction or restriction, or
of an identity's value or owner, sends no signal and must call ``subjects_changed_on_commit``.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import secrets
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from django.db import connection, transaction
from redis.exceptions import ResponseError

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


def catalogue_token_create() -> str | None:
    """The catalogue token, created if Redis had none (evicted, or a fresh server)."""
    return _create_tokens([CATALOGUE_KEY], ["catalogue"])["catalogue"]


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


# --- the hot path's identity entries ---------------------------------------------------------

IDENTITY_PREFIX = "consent:who:"


def identity_digest(identity_type: str, value: str) -> str:
    """What names a normalized identity in a cache key: an HMAC keyed with SECRET_KEY, never
    the identity, nor an unkeyed hash of it (a customer id or a phone number is found again
    by hashing every candidate). Django's salted_hmac, with its derived key kept."""
    message = f"{identity_type}:{value}".encode()
    return hmac.new(_identity_mac_key(settings.SECRET_KEY), message, hashlib.sha256).hexdigest()


@functools.lru_cache(maxsize=4)
def _identity_mac_key(secret: str) -> bytes:
    return hashlib.sha256(b"consent.cache.identity" + secret.encode()).digest()


def identity_key(digest: str) -> str:
    return f"{IDENTITY_PREFIX}{digest}"


@dataclass(frozen=True)
class SubjectEntry:
    """What an identity entry says: the subject it names, as read under ``token``."""

    subject_id: str
    token: str
    jurisdiction: str
    restricted_at: datetime | None


def encode_entry(entry: SubjectEntry) -> str:
    # Plain text, the subject id first: the hot path's Redis script reads the id (36
    # characters) to fetch that subject's token and states in the same round trip.
    restricted = entry.restricted_at.isoformat() if entry.restricted_at else ""
    return f"{entry.subject_id}|{entry.token}|{entry.jurisdiction}|{restricted}"


def decode_entry(raw: bytes) -> SubjectEntry:
    subject_id, token, jurisdiction, restricted = raw.decode().split("|", 3)
    return SubjectEntry(
        subject_id,
        token,
        jurisdiction,
        datetime.fromisoformat(restricted) if restricted else None,
    )


def store_identity(digest: str, entry: SubjectEntry) -> None:
    """Keep what an identity names, stamped with the subject's token read *before* the rows
    were (see the module docstring); never what was read inside a transaction."""
    redis = raw_redis()
    if redis is None or connection.in_atomic_block:
        return
    try:
        redis.client.set(
            redis.prefix + identity_key(digest),
            encode_entry(entry),
            ex=settings.CONSENT_CACHE_TTL,
        )
    except Exception:
        logger.warning("consent cache unreachable; identity not cached")


class RawRedis:
    """The consent cache's Redis server itself, for a reader that runs a script there."""

    def __init__(
        self,
        caches: dict,
        client: Any,
        prefix: str,
        loads: Callable[[bytes], object],
        location: str,
    ) -> None:
        self.caches = caches  # the CACHES setting it was made for
        self.client = client  # redis.Redis, with a connection pool of its own
        self.location = location  # the server's URL (the ASGI front connects there too)
        self.prefix = prefix  # what Django's key function puts before every key
        self.loads = loads  # how Django's cache reads the values it wrote
        self._local = threading.local()

    def execute(self, *args: bytes) -> Any:
        """One command (its arguments as bytes) on this thread's own connection, past
        redis-py's client, pool, retries and command packer: together more than half the CPU
        of a round trip on the hot path. An error of the command (``ResponseError``) leaves
        the connection usable; any other drops it, and the next call connects again."""
        local = self._local
        connection = getattr(local, "connection", None)
        if connection is None:
            pool = self.client.connection_pool
            connection = local.connection = pool.connection_class(**pool.connection_kwargs)
        packed = [b"*%d\r\n" % len(args)]
        for arg in args:
            packed.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
        try:
            connection.send_packed_command([b"".join(packed)])
            return connection.read_response()
        except ResponseError:
            raise
        except BaseException:
            local.connection = None
            connection.disconnect()
            raise


_raw_lock = threading.Lock()
_raw: RawRedis | None = None


def raw_redis() -> RawRedis | None:
    """None unless the consent cache is one Redis server with Django's key function: a
    script cannot rebuild a custom function's keys, nor span several servers."""
    global _raw
    if not enabled():
        return None
    current = _raw
    if current is not None and current.caches is settings.CACHES:
        return current
    backend = _cache()
    if not isinstance(backend, RedisCache) or len(backend._servers) != 1:
        return None
    location = backend._servers[0]
    prefix = backend.make_key("")
    if backend.make_key("probe") != f"{prefix}probe":
        return None
    with _raw_lock:
        client = backend._cache
        pool = client._pool_class.from_url(location, **client._pool_options)
        _raw = RawRedis(
            settings.CACHES,
            client._client(connection_pool=pool),
            prefix,
            client._serializer.loads,
            location,
        )
        return _raw


# --- changes to subjects and identities ----------------------------------------------------

# The columns an identity entry is built from.
_SUBJECT_FIELDS = frozenset({"jurisdiction", "restricted_at"})
_IDENTITY_FIELDS = frozenset({"subject", "subject_id", "type", "value"})


def _touches(update_fields, fields: frozenset) -> bool:
    return update_fields is None or not fields.isdisjoint(update_fields)


def _subject_saved(sender, instance, created=False, update_fields=None, **kwargs) -> None:
    # A row that did not exist is named by no entry: only identities someone has are cached.
    if not created and _touches(update_fields, _SUBJECT_FIELDS):
        subjects_changed_on_commit([instance.pk])


def _subject_deleted(sender, instance, **kwargs) -> None:
    subjects_changed_on_commit([instance.pk])


def _identity_saving(sender, instance, update_fields=None, **kwargs) -> None:
    # An identity given to another subject leaves an entry stamped with its old owner's
    # token: remember the owner, so that token moves too.
    if not instance._state.adding and _touches(update_fields, _IDENTITY_FIELDS):
        instance._consent_owner_before = (
            sender.objects.filter(pk=instance.pk).values_list("subject_id", flat=True).first()
        )


def _identity_saved(sender, instance, created=False, update_fields=None, **kwargs) -> None:
    if not created and _touches(update_fields, _IDENTITY_FIELDS):
        before = getattr(instance, "_consent_owner_before", None)
        subjects_changed_on_commit([s for s in (instance.subject_id, before) if s is not None])


def _identity_deleted(sender, instance, **kwargs) -> None:
    subjects_changed_on_commit([instance.subject_id])


def connect_subject_signals() -> None:
    """Move a subject's token after any ORM write that changes what its identity entries
    say (called from ConsentConfig.ready)."""
    from django.db.models.signals import post_delete, post_save, pre_save

    from compliance.models import DataSubject, SubjectIdentity

    receivers = [
        (post_save, DataSubject, _subject_saved),
        (post_delete, DataSubject, _subject_deleted),
        (pre_save, SubjectIdentity, _identity_saving),
        (post_save, SubjectIdentity, _identity_saved),
        (post_delete, SubjectIdentity, _identity_deleted),
    ]
    for signal, model, receiver in receivers:
        signal.connect(receiver, sender=model, dispatch_uid=f"consent-cache-{receiver.__name__}")


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


def current_catalogue() -> Catalogue | None:
    """This process's catalogue as last loaded, not validated: a hint, not an answer."""
    return _catalogue


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
