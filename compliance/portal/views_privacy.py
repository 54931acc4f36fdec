"""The portal's privacy choices: a switch per purpose, the two CCPA links, the GPC notice,
the consent history and its signed receipts. Writes go through the consent app's services
(via ``compliance.portal.choices``); requests from visitors who are not signed in go
through the DSAR app's ``request_create``."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from compliance.models import DataSubject
from compliance.portal.choices import (
    CCPA_LINKS,
    portal_consent_event_get,
    portal_privacy_choice_set,
    portal_privacy_choices,
)
from compliance.portal.forms import SignInForm
from compliance.portal.services import portal_identity_parse
from compliance.portal.session import portal_subject, subject_required
from compliance.portal.views import client_ip, render_page
from compliance.services import ServiceError
from consent.models import Purpose
from consent.receipts import ReceiptSigningUnavailable, receipt_issue
from consent.selectors import subject_consent_history

HISTORY_LIMIT = 200
# The DSAR request type a signed-out visitor files through each CCPA link.
CCPA_REQUEST_TYPES = {"do-not-sell": "opt_out_sale", "limit-sensitive": "limit_sensitive"}


@require_safe
@subject_required
def privacy_choices(request, subject: DataSubject):
    history = list(subject_consent_history(subject=subject)[:HISTORY_LIMIT])
    return render_page(
        request,
        "privacy_choices.html",
        {
            "choices": portal_privacy_choices(subject=subject),
            "history": history,
            "restricted": subject.restricted_at is not None,
            "nav": "privacy",
        },
    )


@require_POST
@subject_required
def privacy_choice_set(request, subject: DataSubject, slug: str):
    purpose = Purpose.objects.filter(slug=slug).first()
    if purpose is None:
        raise Http404
    allow = request.POST.get("allow") == "yes"
    try:
        portal_privacy_choice_set(
            subject=subject, purpose=purpose, allow=allow, ip_address=client_ip(request)
        )
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        if allow:
            messages.success(request, _("Turned on: %(name)s.") % {"name": purpose.name})
        else:
            messages.success(request, _("Turned off: %(name)s.") % {"name": purpose.name})
    return redirect(reverse("portal:privacy_choices") + f"#purpose-{purpose.slug}")


@require_http_methods(["GET", "HEAD", "POST"])
def ccpa_opt_out(request, which: str):
    """ "Do Not Sell or Share My Personal Information" and "Limit the Use of My Sensitive
    Personal Information" (CCPA §7026, §7027). Opting out needs no verification: a signed-in
    customer confirms with one click; anyone else gives an email address or phone number and
    the request is filed without a code."""
    if which not in CCPA_LINKS:
        raise Http404
    purpose = Purpose.objects.filter(slug=CCPA_LINKS[which]).first()
    if purpose is None:
        raise Http404
    subject = portal_subject(request)
    form = SignInForm(request.POST if request.method == "POST" and subject is None else None)
    if request.method == "POST":
        if subject is not None:
            portal_privacy_choice_set(
                subject=subject, purpose=purpose, allow=False, ip_address=client_ip(request)
            )
            messages.success(request, _("Done. We have turned this off for you."))
            return redirect(reverse("portal:privacy_choices") + f"#purpose-{purpose.slug}")
        if form.is_valid():
            try:
                identity = portal_identity_parse(form.cleaned_data["identity"])
                _file_opt_out(identity=identity, which=which)
            except ServiceError as exc:
                form.add_error("identity", exc.message)
            else:
                messages.success(
                    request,
                    _(
                        "Thank you. If we hold information about this address, we will stop "
                        "as you asked. You do not need to do anything else."
                    ),
                )
                return redirect("portal:ccpa_opt_out", which=which)
    return render_page(
        request,
        "ccpa_opt_out.html",
        {"which": which, "purpose": purpose, "form": form, "nav": "privacy"},
        status=400 if form.is_bound and form.errors else 200,
    )


def _file_opt_out(*, identity, which: str) -> None:
    from dsar.services import request_create

    # The same answer whether or not the address is known: request_create files it either
    # way and never says.
    request_create(
        type=CCPA_REQUEST_TYPES[which],
        identity={identity.type: identity.value},
        channel="portal",
        actor="portal:visitor",
        regulation="ccpa",
    )


@require_safe
@subject_required
def consent_receipt(request, subject: DataSubject, receipt_id):
    """The signed Kantara consent receipt (a JWT) of one of the customer's own events."""
    event = portal_consent_event_get(subject=subject, receipt_id=receipt_id)
    if event is None:
        raise Http404
    try:
        receipt = receipt_issue(event)
    except ReceiptSigningUnavailable:
        messages.error(request, _("Receipts cannot be issued right now. Please try later."))
        return redirect("portal:privacy_choices")
    response = HttpResponse(receipt.jwt, content_type="application/jwt")
    response["Content-Disposition"] = (
        f'attachment; filename="consent-receipt-{str(event.receipt_id)[:8]}.jwt"'
    )
    return response
