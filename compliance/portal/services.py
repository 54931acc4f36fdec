"""Actions of the privacy portal: passwordless sign-in with one-time codes, and the
customer's reports on AI answers with their review by the DPO.

Sign-in codes live only in the cache (Redis in production), as an HMAC keyed with
SECRET_KEY: a leaked cache shows neither the codes nor who asked for one. Cache keys hold
HMACs of the identity and of the IP address, never the values themselves.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac
from django.utils.translation import gettext_lazy as _

from compliance.audit import audit_record
from compliance.identities import InvalidIdentity, normalize_email, normalize_phone
from compliance.models import (
    AnswerFlag,
    AnswerFlagCategory,
    AnswerFlagState,
    DataSubject,
    IdentityType,
    Message,
    MessageRole,
    SubjectIdentity,
)
from compliance.portal.senders import sender_for
from compliance.selectors import subject_find_by_identity
from compliance.services import ConflictError, ForbiddenError, ServiceError

logger = logging.getLogger(__name__)

CODE_DIGITS = 6
RATE_WINDOW_SECONDS = 3600
MAX_COMMENT_CHARS = 2000
_KEY_SALT = "compliance.portal.sign-in"


class SignInRateLimited(ServiceError):
    def __init__(self, message: str):
        super().__init__(message, field="identity", code="rate_limited")


class SignInCodeRejected(ServiceError):
    """The code is wrong, expired, used or dead. ``code`` says which, for the page."""


@dataclass(frozen=True)
class PortalIdentity:
    """An email address or phone number a customer signs in with, normalized."""

    type: str
    value: str

    def as_session(self) -> dict[str, str]:
        return {"type": self.type, "value": self.value}

    @classmethod
    def from_session(cls, data: object) -> PortalIdentity | None:
        if not isinstance(data, dict) or data.get("type") not in SIGN_IN_TYPES:
            return None
        value = data.get("value")
        return cls(type=data["type"], value=value) if isinstance(value, str) and value else None


SIGN_IN_TYPES = (IdentityType.EMAIL, IdentityType.PHONE)


def portal_identity_parse(raw: str) -> PortalIdentity:
    """An email address if it has an @, otherwise a phone number."""
    raw = (raw or "").strip()
    try:
        if "@" in raw:
            return PortalIdentity(type=IdentityType.EMAIL, value=normalize_email(raw))
        return PortalIdentity(type=IdentityType.PHONE, value=normalize_phone(raw))
    except InvalidIdentity:
        raise ServiceError(
            str(
                _(
                    "Enter an email address, or a phone number with its country code "
                    "(for example +44 20 7946 0958)."
                )
            ),
            field="identity",
        ) from None


def _digest(*parts: str) -> str:
    return salted_hmac(_KEY_SALT, "\x1f".join(parts), algorithm="sha256").hexdigest()


def _identity_key(identity: PortalIdentity) -> str:
    return _digest("identity", identity.type, identity.value)


def _code_cache_key(identity: PortalIdentity) -> str:
    return f"portal:code:{_identity_key(identity)}"


def _tries_cache_key(identity: PortalIdentity) -> str:
    return f"portal:tries:{_identity_key(identity)}"


def _count(key: str, *, window: int) -> int:
    """Count one more hit in a fixed window starting at the first hit; atomic in Redis."""
    cache.add(key, 0, timeout=window)
    try:
        return cache.incr(key)
    except ValueError:  # the window ended between add and incr
        cache.set(key, 1, timeout=window)
        return 1


def sign_in_code_send(*, identity: PortalIdentity, ip_address: str) -> None:
    """Send a one-time sign-in code if ``identity`` belongs to a data subject.

    Known and unknown identities take the same path (rate limits, code generation, cache
    writes) and the caller shows the same page: the portal must never confirm that someone
    is a customer. Sending itself only happens for known ones; ``PORTAL_SIGN_IN_MIN_SECONDS``
    pads every call to the same minimum duration so a slow mail server does not tell them
    apart either.
    """
    started = time.monotonic()
    try:
        # Per IP and per identity: stops both mass enumeration and flooding one mailbox.
        if (
            _count(f"portal:rl:ip:{_digest('ip', ip_address)}", window=RATE_WINDOW_SECONDS)
            > settings.PORTAL_CODES_PER_IP_PER_HOUR
            or _count(f"portal:rl:id:{_identity_key(identity)}", window=RATE_WINDOW_SECONDS)
            > settings.PORTAL_CODES_PER_IDENTITY_PER_HOUR
        ):
            raise SignInRateLimited(
                str(_("Too many codes were asked for. Please wait an hour and try again."))
            )
        code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
        subject = subject_find_by_identity(identity_type=identity.type, value=identity.value)
        entry = {"digest": _digest("code", identity.type, identity.value, code), "via": ""}
        # A new code replaces the previous one and gets a fresh set of tries.
        cache.set(_code_cache_key(identity), entry, timeout=settings.PORTAL_CODE_TTL_SECONDS)
        cache.delete(_tries_cache_key(identity))
        if subject is not None:
            entry["via"] = _deliver(subject=subject, identity=identity, code=code)
            cache.set(_code_cache_key(identity), entry, timeout=settings.PORTAL_CODE_TTL_SECONDS)
    finally:
        remaining = settings.PORTAL_SIGN_IN_MIN_SECONDS - (time.monotonic() - started)
        if remaining > 0:
            time.sleep(remaining)


def _deliver(*, subject: DataSubject, identity: PortalIdentity, code: str) -> str:
    sender = sender_for(identity.type)
    if sender is None:
        logger.warning("No sign-in code sender configured for %s identities.", identity.type)
        return ""
    try:
        return sender.send(
            subject=subject, identity_type=identity.type, value=identity.value, code=code
        )
    except Exception as exc:
        # The customer sees the usual page and can ask again; the exception text may hold
        # the address, so only its class is logged.
        logger.error("Sign-in code could not be sent (%s).", exc.__class__.__name__)
        return ""


def sign_in_code_verify(*, identity: PortalIdentity, code: str) -> DataSubject:
    """Check a code; on success the code is used up and the signed-in subject returned.

    After ``PORTAL_CODE_MAX_ATTEMPTS`` wrong tries the code is dead, even for the right
    digits, so guessing stops at a handful of tries per code (and a handful of codes per
    hour, see ``sign_in_code_send``).
    """
    code_key, tries_key = _code_cache_key(identity), _tries_cache_key(identity)
    entry = cache.get(code_key)
    if not isinstance(entry, dict):
        raise SignInCodeRejected(
            str(_("This code has expired or was already used. Ask for a new code.")),
            field="code",
            code="code_expired",
        )
    max_tries = settings.PORTAL_CODE_MAX_ATTEMPTS
    tries = _count(tries_key, window=settings.PORTAL_CODE_TTL_SECONDS)
    if tries > max_tries:
        cache.delete(code_key)
        raise SignInCodeRejected(
            str(_("Too many wrong codes. Ask for a new code.")), field="code", code="code_dead"
        )
    candidate = "".join((code or "").split())
    subject = subject_find_by_identity(identity_type=identity.type, value=identity.value)
    matches = constant_time_compare(
        entry.get("digest", ""), _digest("code", identity.type, identity.value, candidate)
    )
    if not matches or subject is None:
        left = max_tries - tries
        if left <= 0:
            cache.delete(code_key)
            raise SignInCodeRejected(
                str(_("That code is not right, and it was the last try. Ask for a new code.")),
                field="code",
                code="code_dead",
            )
        raise SignInCodeRejected(
            str(_("That code is not right. Tries left: %(left)s.") % {"left": left}),
            field="code",
            code="code_wrong",
        )
    # Deleting is the single-use check: of two requests racing with the same code, only
    # the one whose delete removed the key signs in.
    if not cache.delete(code_key):
        raise SignInCodeRejected(
            str(_("This code has expired or was already used. Ask for a new code.")),
            field="code",
            code="code_expired",
        )
    cache.delete(tries_key)
    with transaction.atomic():
        if entry.get("via"):
            # Receiving the code proves control of the identity it was delivered to.
            delivered_to = identity.value if entry["via"] == identity.type else None
            identities = SubjectIdentity.objects.filter(subject=subject, type=entry["via"])
            if delivered_to is not None:
                identities = identities.filter(value=delivered_to)
            identities.filter(verified=False).update(verified=True)
        audit_record(
            actor=f"subject:{subject.pk}",
            action="portal.signed_in",
            target=subject,
            detail={"identity_type": identity.type, "code_via": entry.get("via", "")},
        )
    return subject


# --- Reports on AI answers -------------------------------------------------------------------

# Which review states may follow which; rectification and dismissal are final.
FLAG_TRANSITIONS: dict[str, frozenset[str]] = {
    AnswerFlagState.NEW: frozenset(
        {AnswerFlagState.REVIEWED, AnswerFlagState.RECTIFICATION, AnswerFlagState.DISMISSED}
    ),
    AnswerFlagState.REVIEWED: frozenset({AnswerFlagState.RECTIFICATION, AnswerFlagState.DISMISSED}),
    AnswerFlagState.RECTIFICATION: frozenset(),
    AnswerFlagState.DISMISSED: frozenset(),
}


def answer_flag_create(
    *, subject: DataSubject, message: Message, category: str, comment: str = ""
) -> AnswerFlag:
    """A customer reports one AI answer in their own conversation. The flag goes to the
    DPO's review queue; the audit event names the category, never the comment."""
    if category not in AnswerFlagCategory.values:
        raise ServiceError(str(_("Choose what is wrong with the answer.")), field="category")
    comment = (comment or "").strip()
    if len(comment) > MAX_COMMENT_CHARS:
        raise ServiceError(
            str(_("Keep the comment under %(n)s characters.") % {"n": MAX_COMMENT_CHARS}),
            field="comment",
        )
    if "\x00" in comment:
        raise ServiceError(
            str(_("The comment holds a character we cannot store.")), field="comment"
        )
    conversation = message.conversation
    if conversation.subject_id != subject.pk:
        raise ForbiddenError("This message is not in one of your conversations.", field="message")
    if message.role != MessageRole.ASSISTANT:
        raise ServiceError(
            str(_("Only answers of the AI assistant can be reported.")), field="message"
        )
    try:
        with transaction.atomic():
            flag = AnswerFlag.objects.create(
                message=message, subject=subject, category=category, comment=comment
            )
            audit_record(
                actor=f"subject:{subject.pk}",
                action="answer_flag.created",
                target=flag,
                detail={
                    "category": category,
                    "message": message.pk,
                    "conversation": conversation.pk,
                    "system": conversation.system.slug,
                    "has_comment": bool(comment),
                },
            )
    except IntegrityError:
        raise ConflictError(
            str(_("You have already reported this answer.")), field="message"
        ) from None
    return flag


def answer_flag_review(*, flag: AnswerFlag, state: str, reviewer, actor: str) -> AnswerFlag:
    """Record the DPO's decision on a flag. The update is guarded on the state read, so two
    reviewers deciding at once cannot both win."""
    if state not in FLAG_TRANSITIONS.get(flag.state, frozenset()):
        raise ConflictError(
            f"A flag in state {flag.state!r} cannot become {state!r}.", field="state"
        )
    now = timezone.now()
    with transaction.atomic():
        updated = AnswerFlag.objects.filter(pk=flag.pk, state=flag.state).update(
            state=state, reviewed_by=reviewer, reviewed_at=now
        )
        if not updated:
            raise ConflictError("Someone else decided on this flag meanwhile.", field="state")
        audit_record(
            actor=actor,
            action="answer_flag.reviewed",
            target=flag,
            detail={"from": flag.state, "to": state, "category": flag.category},
        )
    flag.refresh_from_db()
    return flag
