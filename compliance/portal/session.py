"""The portal's signed-in state, kept in the Django session apart from the admin's login:
a customer is a ``DataSubject``, not a Django user."""

from __future__ import annotations

import time
from functools import wraps

from django.conf import settings
from django.contrib import messages
from django.shortcuts import redirect
from django.utils.translation import gettext_lazy as _

from compliance.models import DataSubject
from compliance.portal.services import PortalIdentity

SUBJECT_KEY = "portal_subject_id"
LAST_SEEN_KEY = "portal_last_seen"
PENDING_KEY = "portal_pending_identity"
# Requests filed from this browser: reachable without signing in (a visitor's request, or
# after an erasure removed the customer one would sign in as).
REQUESTS_KEY = "portal_request_ids"
GPC_KEY = "portal_gpc_recorded"


def pending_identity_set(request, identity: PortalIdentity) -> None:
    # Kept in the (server-side) session between the two sign-in steps, never in the URL,
    # where it would end up in logs and browser history.
    request.session[PENDING_KEY] = identity.as_session()


def pending_identity_get(request) -> PortalIdentity | None:
    return PortalIdentity.from_session(request.session.get(PENDING_KEY))


def portal_sign_in(request, subject: DataSubject) -> None:
    # A new session key on sign-in, so a key planted before sign-in (session fixation) is
    # worth nothing afterwards.
    request.session.cycle_key()
    request.session.pop(PENDING_KEY, None)
    request.session[SUBJECT_KEY] = str(subject.pk)
    request.session[LAST_SEEN_KEY] = time.time()
    request.session.set_expiry(settings.PORTAL_SESSION_IDLE_SECONDS)


def portal_sign_out(request, *, forget_requests: bool = False) -> None:
    keys = [SUBJECT_KEY, LAST_SEEN_KEY, PENDING_KEY, GPC_KEY]
    if forget_requests:
        keys.append(REQUESTS_KEY)
    for key in keys:
        request.session.pop(key, None)
    request.session.cycle_key()


def portal_subject(request) -> DataSubject | None:
    """The signed-in subject, or None. Ends the portal session after
    ``PORTAL_SESSION_IDLE_SECONDS`` without a request, and refreshes the clock otherwise."""
    cached = getattr(request, "_portal_subject", False)
    if cached is not False:
        return cached
    subject = None
    subject_id = request.session.get(SUBJECT_KEY)
    if subject_id:
        last_seen = request.session.get(LAST_SEEN_KEY) or 0
        if time.time() - last_seen > settings.PORTAL_SESSION_IDLE_SECONDS:
            portal_sign_out(request)
            request.portal_session_expired = True
        else:
            subject = DataSubject.objects.filter(pk=subject_id).first()
            if subject is None:  # erased meanwhile
                portal_sign_out(request)
            else:
                request.session[LAST_SEEN_KEY] = time.time()
    request._portal_subject = subject
    return subject


def subject_required(view):
    """Send a visitor who is not signed in (or no longer) to the sign-in page."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        subject = portal_subject(request)
        if subject is None:
            if getattr(request, "portal_session_expired", False):
                messages.info(
                    request,
                    _("You were signed out because nothing happened for a while. Sign in again."),
                )
            return redirect("portal:sign_in")
        return view(request, subject, *args, **kwargs)

    return wrapper
