"""The portal's pages. Thin: forms check shape, services act, selectors read, and every
object a URL names is looked up through the signed-in subject, so another customer's id
answers 404 exactly like an id that does not exist."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from compliance.models import DataSubject, MessageRole
from compliance.portal.choices import portal_gpc_honor
from compliance.portal.forms import AnswerFlagForm, CodeForm, SignInForm
from compliance.portal.selectors import (
    portal_assistant_overview,
    portal_conversation_get,
    portal_conversation_list,
    portal_conversation_messages,
    portal_flags_by_message,
    portal_message_get,
)
from compliance.portal.services import (
    SignInCodeRejected,
    SignInRateLimited,
    answer_flag_create,
    portal_identity_parse,
    sign_in_code_send,
    sign_in_code_verify,
)
from compliance.portal.session import (
    pending_identity_get,
    pending_identity_set,
    portal_sign_in,
    portal_sign_out,
    portal_subject,
    subject_required,
)
from compliance.services import ConflictError, ServiceError

CONVERSATIONS_PER_PAGE = 20


def render_page(request, template: str, context: dict | None = None, *, status: int = 200):
    subject = portal_subject(request)
    gpc_honored = portal_gpc_honor(request, subject, ip_address=client_ip(request))
    if subject is None and getattr(request, "portal_session_expired", False):
        messages.info(
            request, _("You were signed out because nothing happened for a while. Sign in again.")
        )
        request.portal_session_expired = False
    return render(
        request,
        f"portal/{template}",
        {
            "portal_subject": subject,
            "gpc_honored": gpc_honored,
            "portal_idle_minutes": settings.PORTAL_SESSION_IDLE_SECONDS // 60,
            **(context or {}),
        },
        status=status,
    )


def client_ip(request) -> str:
    # REMOTE_ADDR only: X-Forwarded-For is whatever the client says. Behind a proxy,
    # gunicorn's forwarded_allow_ips makes REMOTE_ADDR the real client address.
    return request.META.get("REMOTE_ADDR", "")


@require_safe
def home(request):
    subject = portal_subject(request)
    if subject is None:
        return render_page(request, "landing.html", {"form": SignInForm(), "nav": "home"})
    return render_page(
        request,
        "home.html",
        {"assistants": portal_assistant_overview(subject=subject), "nav": "home"},
    )


@require_http_methods(["GET", "HEAD", "POST"])
def sign_in(request):
    if request.method != "POST" and portal_subject(request) is not None:
        return redirect("portal:home")
    form = SignInForm(request.POST if request.method == "POST" else None)
    status = 200
    if form.is_bound and form.is_valid():
        try:
            identity = portal_identity_parse(form.cleaned_data["identity"])
        except ServiceError as exc:
            form.add_error("identity", exc.message)
        else:
            pending_identity_set(request, identity)
            try:
                sign_in_code_send(identity=identity, ip_address=client_ip(request))
            except SignInRateLimited as exc:
                form.add_error(None, exc.message)
                status = 429
            else:
                return redirect("portal:sign_in_code")
    if form.is_bound and status == 200:
        status = 400
    return render_page(request, "sign_in.html", {"form": form, "nav": "sign_in"}, status=status)


@require_http_methods(["GET", "HEAD", "POST"])
def sign_in_code(request):
    identity = pending_identity_get(request)
    if identity is None:
        return redirect("portal:sign_in")
    form = CodeForm(request.POST if request.method == "POST" else None)
    code_dead = False
    if form.is_bound and form.is_valid():
        try:
            subject = sign_in_code_verify(identity=identity, code=form.cleaned_data["code"])
        except SignInCodeRejected as exc:
            form.add_error("code", exc.message)
            code_dead = exc.code in ("code_dead", "code_expired")
        else:
            portal_sign_in(request, subject)
            messages.success(request, _("You are signed in."))
            return redirect("portal:home")
    context = {
        "form": form,
        "identity_type": identity.type,
        "code_dead": code_dead,
        "minutes": settings.PORTAL_CODE_TTL_SECONDS // 60,
        "nav": "sign_in",
    }
    return render_page(request, "sign_in_code.html", context, status=400 if form.is_bound else 200)


@require_POST
def sign_in_resend(request):
    identity = pending_identity_get(request)
    if identity is None:
        return redirect("portal:sign_in")
    try:
        sign_in_code_send(identity=identity, ip_address=client_ip(request))
    except SignInRateLimited as exc:
        messages.error(request, exc.message)
    else:
        messages.info(request, _("If we know this address, we have sent a new code."))
    return redirect("portal:sign_in_code")


@require_POST
def sign_out(request):
    # On a shared computer, signing out also forgets the requests filed from this browser.
    portal_sign_out(request, forget_requests=True)
    messages.info(request, _("You are signed out."))
    return redirect("portal:home")


@require_safe
@subject_required
def conversation_list(request, subject: DataSubject):
    conversations = portal_conversation_list(subject=subject)
    system_slug = request.GET.get("system", "")
    if system_slug:
        conversations = conversations.filter(system__slug=system_slug)
    page = Paginator(conversations, CONVERSATIONS_PER_PAGE).get_page(request.GET.get("page"))
    system_name = page.object_list[0].system.name if system_slug and page.object_list else ""
    context = {
        "page": page,
        "system_slug": system_slug if system_name else "",
        "system_name": system_name,
        "nav": "conversations",
    }
    return render_page(request, "conversations.html", context)


@require_safe
@subject_required
def conversation_detail(request, subject: DataSubject, conversation_id: int):
    conversation = portal_conversation_get(subject=subject, conversation_id=conversation_id)
    if conversation is None:
        raise Http404
    flags = portal_flags_by_message(subject=subject, conversation=conversation)
    items = []
    for message in portal_conversation_messages(conversation=conversation):
        reportable = message.role == MessageRole.ASSISTANT and message.pk not in flags
        items.append(
            {
                "message": message,
                "flag": flags.get(message.pk),
                "form": AnswerFlagForm(prefix=f"m{message.pk}") if reportable else None,
            }
        )
    return render_page(
        request,
        "conversation_detail.html",
        {"conversation": conversation, "items": items, "nav": "conversations"},
    )


@require_http_methods(["GET", "HEAD", "POST"])
@subject_required
def answer_flag(request, subject: DataSubject, conversation_id: int, message_id: int):
    message = portal_message_get(
        subject=subject, conversation_id=conversation_id, message_id=message_id
    )
    if message is None or message.role != MessageRole.ASSISTANT:
        raise Http404
    back = reverse("portal:conversation", args=[conversation_id]) + f"#message-{message.pk}"
    form = AnswerFlagForm(
        request.POST if request.method == "POST" else None, prefix=f"m{message.pk}"
    )
    if form.is_bound and form.is_valid():
        try:
            answer_flag_create(
                subject=subject,
                message=message,
                category=form.cleaned_data["category"],
                comment=form.cleaned_data["comment"],
            )
        except ConflictError as exc:
            messages.info(request, exc.message)
            return redirect(back)
        except ServiceError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            messages.success(
                request, _("Thank you. A person will look at this answer and what you told us.")
            )
            return redirect(back)
    return render_page(
        request,
        "answer_flag.html",
        {"message": message, "form": form, "back": back, "nav": "conversations"},
        status=400 if form.is_bound else 200,
    )


def csrf_failure(request, reason: str = ""):
    """Django's CSRF page, in the portal's words and layout (no inline styles)."""
    return render_page(request, "csrf_failure.html", status=403)
