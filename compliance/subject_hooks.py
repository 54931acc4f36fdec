"""What other apps do when a request identifies a customer.

The core views that name a customer (subjects, conversations, data subject requests, the
OpenDSR intake, a subject's signed download link) do not depend on the consent app, yet a
request that names a customer may carry something that app must act on: a Global Privacy
Control signal is an opt-out of sale and sharing for that consumer (CCPA regulations §7025).
Apps register a hook in their ``AppConfig.ready``, as they register ingest guards
(``compliance.ingest.register_ingest_guard``); the consent app registers ``consent.gpc``'s.

A view calls:

1. ``subject_identification_check(request)`` before it writes anything. A hook refuses a
   malformed input by raising ``ServiceError`` (the API answers 400), so bad input changes
   nothing. The answer says whether any hook will act on this request, so a view can skip
   finding subjects that nobody will hear about.
2. ``subject_identified(request, subjects=..., actor=..., source=...)`` once it knows which
   *known* customers the request names, inside the transaction of its own writes if it
   makes any. A customer the request names but nobody knows is simply not passed.

``strict`` is True for API calls: a malformed value is the caller's mistake. A page the
customer's own browser opens passes ``strict=False``: an odd value is no signal, and the
page still works.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from django.db import transaction

from compliance.models import DataSubject


@dataclass(frozen=True)
class SubjectIdentifiedHook:
    # check(request, *, strict) -> bool: raise ServiceError on malformed input; True when
    # this request carries something the hook will act on.
    check: Callable[..., bool]
    # identified(request, *, subjects, actor, source, strict, gpc_relayed) -> None.
    # ``gpc_relayed``: the caller relayed, in the body, a Global Privacy Control signal the
    # customer's browser sent (the ingest's per-conversation ``"gpc": true``).
    identified: Callable[..., None]


SUBJECT_IDENTIFIED_HOOKS: list[SubjectIdentifiedHook] = []


def register_subject_identified_hook(
    *, check: Callable[..., bool], identified: Callable[..., None]
) -> None:
    hook = SubjectIdentifiedHook(check=check, identified=identified)
    if hook not in SUBJECT_IDENTIFIED_HOOKS:
        SUBJECT_IDENTIFIED_HOOKS.append(hook)


def subject_identification_check(request, *, strict: bool = True) -> bool:
    """Run every hook's check; call it before the view writes anything."""
    wanted = False
    for hook in SUBJECT_IDENTIFIED_HOOKS:
        wanted = hook.check(request, strict=strict) or wanted
    return wanted


def subject_identified(
    request,
    *,
    subjects: Sequence[DataSubject],
    actor: str,
    source: str,
    strict: bool = True,
    gpc_relayed: bool = False,
) -> None:
    """Tell every hook which known customers this request named. ``source`` names the
    operation (e.g. ``api:subjects_lookup``); hooks keep it as evidence, never an identity."""
    if not subjects or not SUBJECT_IDENTIFIED_HOOKS:
        return
    with transaction.atomic():
        for hook in SUBJECT_IDENTIFIED_HOOKS:
            hook.identified(
                request,
                subjects=subjects,
                actor=actor,
                source=source,
                strict=strict,
                gpc_relayed=gpc_relayed,
            )
