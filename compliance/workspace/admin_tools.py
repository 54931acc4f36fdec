"""Pieces the workspace's admin pages share: admin actions that ask for input on an
intermediate page before they call a service, and the timeline of a request's audit events."""

from __future__ import annotations

from collections.abc import Callable

from django import forms
from django.contrib import messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth import get_user_model
from django.db.models import Q
from django.template.response import TemplateResponse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _

from compliance.models import AuditEvent
from compliance.services import ServiceError


def actor_for(request) -> str:
    return f"user:{request.user.pk}"


def apply_each(modeladmin, request, queryset, call: Callable, done_message: str) -> int:
    """Call ``call(row)`` for every row; a refused row is reported and the others go on
    (each service call is its own transaction, so one refusal undoes nothing else)."""
    done = 0
    for row in queryset:
        try:
            call(row)
            done += 1
        except ServiceError as exc:
            modeladmin.message_user(request, f"{row}: {exc.message}", messages.WARNING)
    if done:
        modeladmin.message_user(request, done_message % {"n": done}, messages.SUCCESS)
    return done


def action_with_input(
    modeladmin,
    request,
    queryset,
    *,
    form_class: type[forms.Form],
    title: str,
    intro: str,
    call: Callable[[object, dict], None],
    done_message: str,
    form_kwargs: dict | None = None,
):
    """An admin action that first shows a page asking for input (a reason the subject will
    read, a note, an assignee), then calls ``call(row, cleaned_data)`` for every row."""
    form_kwargs = form_kwargs or {}
    if "apply" in request.POST:
        form = form_class(request.POST, **form_kwargs)
        if form.is_valid():
            apply_each(
                modeladmin,
                request,
                queryset,
                lambda row: call(row, form.cleaned_data),
                done_message,
            )
            return None
    else:
        form = form_class(**form_kwargs)
    return TemplateResponse(
        request,
        "workspace/admin/action_form.html",
        {
            **modeladmin.admin_site.each_context(request),
            "title": title,
            "intro": intro,
            "form": form,
            "queryset": queryset,
            "action": request.POST.get("action", ""),
            "selected": request.POST.getlist(ACTION_CHECKBOX_NAME),
            "select_across": request.POST.get("select_across", "0"),
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
            "opts": modeladmin.model._meta,
            "media": modeladmin.media + form.media,
        },
    )


class NoteForm(forms.Form):
    note = forms.CharField(
        label=_("What you checked"),
        widget=forms.Textarea(attrs={"rows": 3}),
        max_length=2000,
        help_text=_(
            "E.g. 'Called back on the number on file; customer confirmed order and postcode.' "
            "Staff only; not sent to the subject. Write no document numbers."
        ),
    )


class ReasonForm(forms.Form):
    reason = forms.CharField(
        label=_("Reason (the subject reads it)"),
        widget=forms.Textarea(attrs={"rows": 4}),
        max_length=2000,
        help_text=_("Write it for the subject; name no one else."),
    )


class AssignForm(forms.Form):
    assignee = forms.ModelChoiceField(
        label=_("Assign to"),
        queryset=get_user_model().objects.none(),
        required=False,
        empty_label=_("Nobody (unassign)"),
    )

    def __init__(self, *args, candidates=None, **kwargs):
        super().__init__(*args, **kwargs)
        if candidates is not None:
            self.fields["assignee"].queryset = candidates


# --- Timeline of a request -------------------------------------------------------------------


def _actor_label(actor: str, users: dict[int, str]) -> str:
    kind, _sep, ident = actor.partition(":")
    if kind == "user" and ident.isdigit():
        return users.get(int(ident), actor)
    return actor


def _detail_text(detail: dict) -> str:
    parts = []
    if "from" in detail and "to" in detail:
        parts.append(f"{detail['from']} → {detail['to']}")
    for key, value in sorted(detail.items()):
        if key in {"from", "to", "type"} or value in (None, "", [], {}):
            continue
        parts.append(f"{key}: {value}")
    return "; ".join(parts)


def request_timeline_html(*, request_id, task_ids: list[int]) -> str:
    """The request's audit events, and those of its source tasks, oldest first. Audit
    details hold ids and counts only, so they are shown as they are."""
    events = list(
        AuditEvent.objects.filter(
            Q(target_type="dsar.datasubjectrequest", target_id=str(request_id))
            | Q(target_type="dsar.sourcetask", target_id__in=[str(pk) for pk in task_ids])
        ).order_by("id")
    )
    if not events:
        return "—"
    user_ids = {
        int(e.actor.split(":", 1)[1])
        for e in events
        if e.actor.startswith("user:") and e.actor.split(":", 1)[1].isdigit()
    }
    users = dict(get_user_model().objects.filter(pk__in=user_ids).values_list("pk", "username"))
    rows = (
        (
            event.occurred_at.strftime("%Y-%m-%d %H:%M:%S"),
            _actor_label(event.actor, users),
            event.action,
            _detail_text(event.detail),
        )
        for event in events
    )
    return format_html(
        '<table class="ws-timeline-table"><thead><tr><th>{}</th><th>{}</th><th>{}</th>'
        "<th>{}</th></tr></thead><tbody>{}</tbody></table>",
        _("When (UTC)"),
        _("Who"),
        _("What"),
        _("Detail"),
        format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", rows),
    )
