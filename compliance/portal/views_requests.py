"""The portal's request pages: file any kind of request with a sentence that explains it,
follow it (status, due date, a progress bar fed by the source tasks), download the export
and the certificate of erasure. Every change goes through ``dsar.services``.

Who may see a request: the signed-in customer it belongs to, or the browser session that
filed it. The second matters twice: a visitor without an account files and verifies by
code, and after a complete erasure the customer no longer exists to sign in as, yet must
still reach the certificate."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.db.models import Q
from django.http import Http404
from django.shortcuts import redirect
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from compliance.models import DataSubject, IdentityType, LogSource
from compliance.portal.forms import CodeForm
from compliance.portal.services import portal_identity_parse
from compliance.portal.session import REQUESTS_KEY, portal_subject
from compliance.portal.views import render_page
from compliance.services import ServiceError
from dsar import links
from dsar.models import (
    FAN_OUT_TYPES,
    DataSubjectRequest,
    RequestStatus,
    RequestType,
)
from dsar.selectors import request_progress
from dsar.services import request_create, verification_code_check, verification_code_send

MAX_REMEMBERED_REQUESTS = 50

# One plain sentence per request type: what the customer gets.
TYPE_EXPLANATIONS = {
    RequestType.ACCESS: _(
        "Get a copy of your information: a file with everything our AI assistants keep about "
        "you, and what we do with it."
    ),
    RequestType.PORTABILITY: _(
        "Get your information in a machine-readable file that you can take to another company."
    ),
    RequestType.ERASURE: _(
        "Delete your information: we erase your conversations and what we know about you, "
        "except what the law makes us keep."
    ),
    RequestType.RECTIFICATION: _(
        "Correct your information: tell us what is wrong, and we fix it or add your "
        "statement to it."
    ),
    RequestType.RESTRICTION: _(
        "Pause the use of your information: we keep it, but stop using it until a question "
        "about it is settled."
    ),
    RequestType.OBJECTION: _(
        "Object to us using your information for our own interests, such as improving our service."
    ),
    RequestType.OPT_OUT_SALE: _("Do not sell or share your personal information."),
    RequestType.LIMIT_SENSITIVE: _(
        "Limit the use of your sensitive personal information to what is needed to serve you."
    ),
}
TYPE_TITLES = {
    RequestType.ACCESS: _("A copy of my information"),
    RequestType.PORTABILITY: _("My information in a file to take elsewhere"),
    RequestType.ERASURE: _("Delete my information"),
    RequestType.RECTIFICATION: _("Correct my information"),
    RequestType.RESTRICTION: _("Pause the use of my information"),
    RequestType.OBJECTION: _("Stop using my information for your interests"),
    RequestType.OPT_OUT_SALE: _("Do not sell or share my personal information"),
    RequestType.LIMIT_SENSITIVE: _("Limit the use of my sensitive personal information"),
}
STATUS_WORDS = {
    RequestStatus.RECEIVED: _("Received"),
    RequestStatus.AWAITING_VERIFICATION: _("Waiting for you to confirm it is you"),
    RequestStatus.VERIFIED: _("You confirmed it is you"),
    RequestStatus.AWAITING_APPROVAL: _("Being checked by our privacy team"),
    RequestStatus.IN_PROGRESS: _("We are working on it"),
    RequestStatus.COMPLETED: _("Done"),
    RequestStatus.PARTIALLY_COMPLETED: _("Partly done"),
    RequestStatus.REJECTED: _("Refused"),
    RequestStatus.CANCELLED: _("Cancelled"),
}


class RequestForm(forms.Form):
    type = forms.ChoiceField(
        label=_("What would you like us to do?"),
        choices=[(t, TYPE_TITLES[t]) for t in TYPE_TITLES],
        widget=forms.RadioSelect,
    )
    statement = forms.CharField(
        label=_("If you want something corrected: what is wrong, and what should it say?"),
        required=False,
        max_length=10_000,
        widget=forms.Textarea(attrs={"rows": 3}),
    )
    confirm = forms.BooleanField(required=False, widget=forms.HiddenInput)


class VisitorRequestForm(RequestForm):
    identity = forms.CharField(
        label=_("Your email address or phone number"),
        help_text=_("The one you gave when you chatted with us. We use it to find your data."),
        max_length=320,
        widget=forms.TextInput(attrs={"autocomplete": "email", "spellcheck": "false"}),
    )


def _remember(request, dsr: DataSubjectRequest) -> None:
    ids = [i for i in request.session.get(REQUESTS_KEY, []) if i != str(dsr.pk)]
    request.session[REQUESTS_KEY] = [str(dsr.pk), *ids][:MAX_REMEMBERED_REQUESTS]


def _owned_request(request, request_id) -> DataSubjectRequest:
    """The request if this customer or this browser session may see it; 404 otherwise,
    exactly as for an id that does not exist."""
    subject = portal_subject(request)
    allowed = Q(pk__in=request.session.get(REQUESTS_KEY, []))
    if subject is not None:
        allowed |= Q(subject=subject)
    dsr = DataSubjectRequest.objects.filter(allowed, pk=request_id).first()
    if dsr is None:
        raise Http404
    return dsr


def _identity_for(subject: DataSubject) -> dict[str, str]:
    """The identity a signed-in customer's request is filed under: the one their sign-in
    code proved, else any email or phone on record."""
    identity = (
        subject.identities.filter(type__in=[IdentityType.EMAIL, IdentityType.PHONE])
        .order_by("-verified", "type", "created_at")
        .first()
    )
    if identity is None:
        identity = subject.identities.order_by("created_at").first()
    return {identity.type: identity.value}


def _holds_for(subject: DataSubject | None) -> list[dict]:
    """What an erasure would keep under a legal hold (GDPR Art. 17(3)), named by its legal
    exception: told before confirming. The same answer the erasure itself will act on."""
    if subject is None:
        return []
    from compliance.retention.selectors import held_sources_for_subject

    held = held_sources_for_subject(subject=subject)
    sources = LogSource.objects.filter(pk__in=held).select_related("system").order_by("pk")
    return [{"reason": held[source.pk], "system": source.system.name} for source in sources]


@require_safe
def request_list(request):
    subject = portal_subject(request)
    remembered = request.session.get(REQUESTS_KEY, [])
    if subject is None and not remembered:
        return redirect("portal:sign_in")
    allowed = Q(pk__in=remembered)
    if subject is not None:
        allowed |= Q(subject=subject)
    requests = DataSubjectRequest.objects.filter(allowed).order_by("-received_at")
    rows = [
        {
            "request": dsr,
            "title": TYPE_TITLES.get(dsr.type, dsr.get_type_display()),
            "status": STATUS_WORDS.get(dsr.status, dsr.get_status_display()),
        }
        for dsr in requests
    ]
    return render_page(request, "requests.html", {"rows": rows, "nav": "requests"})


@require_http_methods(["GET", "HEAD", "POST"])
def request_new(request):
    subject = portal_subject(request)
    form_class = RequestForm if subject is not None else VisitorRequestForm
    initial = {"type": request.GET.get("type")} if request.GET.get("type") in TYPE_TITLES else {}
    form = form_class(request.POST if request.method == "POST" else None, initial=initial)
    context = {
        "form": form,
        "explanations": TYPE_EXPLANATIONS,
        "nav": "requests",
        "signed_in": subject is not None,
    }
    if form.is_bound and form.is_valid():
        data = form.cleaned_data
        if data["type"] == RequestType.RECTIFICATION and not data["statement"].strip():
            form.add_error("statement", _("Tell us what is wrong and what it should say."))
        elif data["type"] == RequestType.ERASURE and not data["confirm"]:
            # GDPR Art. 17(3): say what will be kept and why before the customer confirms.
            return render_page(
                request,
                "request_erasure_confirm.html",
                {**context, "holds": _holds_for(subject)},
            )
        else:
            try:
                identity = (
                    _identity_for(subject)
                    if subject is not None
                    else _visitor_identity(data["identity"])
                )
                dsr = request_create(
                    type=data["type"],
                    identity=identity,
                    channel="portal",
                    actor=f"subject:{subject.pk}" if subject is not None else "portal:visitor",
                    # Signing in with a one-time code already proved the identity.
                    pre_verified=subject is not None,
                    details=(
                        {"statement": data["statement"].strip()}
                        if data["type"] == RequestType.RECTIFICATION
                        else None
                    ),
                )
            except ServiceError as exc:
                field = "identity" if exc.field.startswith("identity") else None
                form.add_error(field if field in form.fields else None, exc.message)
            else:
                _remember(request, dsr)
                messages.success(request, _("We have your request."))
                return redirect("portal:request", request_id=dsr.pk)
    status = 400 if form.is_bound else 200
    return render_page(request, "request_new.html", context, status=status)


def _visitor_identity(raw: str) -> dict[str, str]:
    identity = portal_identity_parse(raw)
    return {identity.type: identity.value}


@require_safe
def request_detail(request, request_id):
    dsr = _owned_request(request, request_id)
    progress = request_progress(dsr) if dsr.type in FAN_OUT_TYPES else None
    now = timezone.now()
    export_ready = bool(
        dsr.export_path
        and dsr.export_deleted_at is None
        and dsr.export_expires_at
        and dsr.export_expires_at > now
    )
    context = {
        "dsr": dsr,
        "title": TYPE_TITLES.get(dsr.type, dsr.get_type_display()),
        "explanation": TYPE_EXPLANATIONS.get(dsr.type, ""),
        "status": STATUS_WORDS.get(dsr.status, dsr.get_status_display()),
        "progress": progress,
        "export_ready": export_ready,
        "has_certificate": hasattr(dsr, "certificate"),
        "code_form": CodeForm() if dsr.status == RequestStatus.AWAITING_VERIFICATION else None,
        "nav": "requests",
    }
    return render_page(request, "request_detail.html", context)


@require_POST
def request_verify(request, request_id):
    dsr = _owned_request(request, request_id)
    form = CodeForm(request.POST)
    if form.is_valid():
        try:
            verification_code_check(
                request=dsr, code=form.cleaned_data["code"], actor="portal:visitor"
            )
        except ServiceError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, _("Thank you, you confirmed it is you."))
    else:
        messages.error(request, _("The code is 6 digits."))
    return redirect("portal:request", request_id=dsr.pk)


@require_POST
def request_code_resend(request, request_id):
    dsr = _owned_request(request, request_id)
    try:
        sent = verification_code_send(request=dsr, actor="portal:visitor")
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        if sent:
            messages.info(request, _("We have sent a new code."))
        else:
            messages.error(request, _("We have no email address to send a code to."))
    return redirect("portal:request", request_id=dsr.pk)


@require_safe
def request_export(request, request_id):
    """Hands over to the DSAR app's signed download link, after the ownership check."""
    dsr = _owned_request(request, request_id)
    if not dsr.export_path or dsr.export_deleted_at is not None:
        raise Http404
    return redirect(links.download_url(dsr))


@require_safe
def request_certificate(request, request_id):
    dsr = _owned_request(request, request_id)
    if not hasattr(dsr, "certificate"):
        raise Http404
    url = links.certificate_url(dsr)
    return redirect(url + ("&as=html" if request.GET.get("as") == "html" else ""))
