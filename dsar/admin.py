"""The DPO's request queue: type, regulation, status, days left and assignee at a glance;
filters by status, type, regulation, system, assignee and deadline; search by any identity;
the per-source work and the audit timeline on each request's page; and actions that call the
same services as the API. Nothing here edits a request directly.

Staff see and act on the requests of the systems they were granted (SystemScopedAdminMixin,
compliance/workspace/permissions.py; docs/workspace.md)."""

from __future__ import annotations

import math
import uuid
from datetime import timedelta

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q, Sum
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from compliance.identities import InvalidIdentity, normalize_identity
from compliance.models import IdentityType, System
from compliance.services import ServiceError
from compliance.workspace import admin_tools
from compliance.workspace.admin_tools import actor_for
from compliance.workspace.permissions import (
    SystemScopedAdminMixin,
    request_scope,
    request_systems_q,
    scope_filter,
    staff_scope,
)
from dsar import services
from dsar.models import (
    OPEN_STATUSES,
    DataSubjectRequest,
    RequestRecord,
    RequestStatus,
    SourceTask,
    SourceTaskStatus,
)

# Amber from this many days before the deadline (the overdue ones are red).
DUE_SOON_DAYS = 7

S = RequestStatus
_NOT_STARTED = frozenset({S.RECEIVED, S.AWAITING_VERIFICATION, S.VERIFIED, S.AWAITING_APPROVAL})
# Which actions a request's page offers in each status (the services still decide).
ACTIONS_BY_STATUS: dict[str, frozenset[str]] = {
    "verify_identity": frozenset({S.RECEIVED, S.AWAITING_VERIFICATION}),
    "approve": frozenset({S.AWAITING_APPROVAL}),
    "reject": _NOT_STARTED,
    "extend": OPEN_STATUSES,
    "assign": OPEN_STATUSES | {S.PARTIALLY_COMPLETED},
    "assign_to_me": OPEN_STATUSES | {S.PARTIALLY_COMPLETED},
    "retry_failed_sources": frozenset({S.PARTIALLY_COMPLETED}),
    "cancel": _NOT_STARTED,
    "announce_restriction_lift": frozenset({S.COMPLETED}),
    "lift_restriction": frozenset({S.COMPLETED}),
}


class SourceTaskInline(admin.TabularInline):
    model = SourceTask
    extra = 0
    can_delete = False
    fields = [
        "source",
        "status",
        "attempts",
        "records_found",
        "mentions_found",
        "records_erased",
        "records_remaining",
        "held_reason",
        "error",
        "started_at",
        "finished_at",
    ]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class DueFilter(admin.SimpleListFilter):
    title = _("deadline")
    parameter_name = "due"

    def lookups(self, request, model_admin):
        return [
            ("overdue", _("Overdue")),
            ("week", _("Due within %(n)s days") % {"n": DUE_SOON_DAYS}),
        ]

    def queryset(self, request, queryset):
        now = timezone.now()
        if self.value() == "overdue":
            return queryset.filter(status__in=OPEN_STATUSES, due_at__lt=now)
        if self.value() == "week":
            return queryset.filter(
                status__in=OPEN_STATUSES,
                due_at__gte=now,
                due_at__lt=now + timedelta(days=DUE_SOON_DAYS),
            )
        return queryset


class SystemFilter(admin.SimpleListFilter):
    """Requests touching one system, of those the user covers."""

    title = _("system")
    parameter_name = "system"

    def lookups(self, request, model_admin):
        return [(str(s.pk), s.name) for s in request_scope(request).systems().order_by("name")]

    def queryset(self, request, queryset):
        if not self.value():
            return queryset
        if not self.value().isdigit():
            return queryset.none()
        systems = System.objects.filter(pk=int(self.value()))
        return queryset.filter(
            pk__in=DataSubjectRequest.objects.filter(request_systems_q(systems)).values("pk")
        )


class AssigneeFilter(admin.SimpleListFilter):
    title = _("assignee")
    parameter_name = "assignee"

    def lookups(self, request, model_admin):
        people = (
            get_user_model()
            .objects.filter(assigned_requests__isnull=False)
            .exclude(pk=request.user.pk)
            .distinct()
            .order_by("username")
        )
        return [("me", _("Me")), ("none", _("Nobody"))] + [(str(u.pk), u.username) for u in people]

    def queryset(self, request, queryset):
        value = self.value()
        if not value:
            return queryset
        if value == "me":
            return queryset.filter(assignee=request.user)
        if value == "none":
            return queryset.filter(assignee__isnull=True)
        if value.isdigit():
            return queryset.filter(assignee_id=int(value))
        return queryset.none()


REQUEST_FIELDSETS = [
    (
        None,
        {
            "fields": [
                "id",
                "type",
                "regulation",
                "channel",
                "status",
                "days_left",
                "assignee",
                "systems_touched",
            ]
        },
    ),
    (
        _("Who asked"),
        {
            "fields": [
                "subject",
                "identity_type",
                "identity_value",
                "contact_email",
                "filed_by",
                "agent_name",
                "agent_permission_note",
                "details",
                "duplicate_of",
            ]
        },
    ),
    (
        _("Deadlines"),
        {
            "fields": [
                "received_at",
                "due_at",
                "confirmation_due_at",
                "confirmed_at",
                "extended_at",
                "extension_reason",
            ]
        },
    ),
    (
        _("Verification and approval"),
        {
            "fields": [
                "verified_at",
                "verification_method",
                "verification_note",
                "first_approved_by",
                "first_approved_at",
                "approval_records_estimate",
                "approved_at",
                "approved_by",
            ]
        },
    ),
    (
        _("Outcome"),
        {
            "fields": [
                "started_at",
                "completed_at",
                "rejection_reason",
                "cancelled_reason",
                "outcome_note",
                "export_sha256",
                "export_size",
                "export_expires_at",
                "export_deleted_at",
                "restriction_lift_announced_at",
                "restriction_lifted_at",
            ]
        },
    ),
    (_("Timeline"), {"fields": ["timeline"]}),
]


@admin.register(DataSubjectRequest)
class DataSubjectRequestAdmin(SystemScopedAdminMixin, admin.ModelAdmin):
    list_display = [
        "short_id",
        "type",
        "regulation",
        "status",
        "days_left",
        "assignee",
        "progress_display",
        "received_at",
    ]
    list_filter = [
        "status",
        "type",
        "regulation",
        SystemFilter,
        AssigneeFilter,
        DueFilter,
        "channel",
    ]
    # Searched by get_search_results below: the request id (or its first 8 characters) and
    # any identity, normalized like the stored values.
    search_fields = ["=identity_value"]
    search_help_text = _("A request id, or an email, phone number or customer id.")
    list_select_related = ["assignee"]
    ordering = ["due_at"]
    inlines = [SourceTaskInline]
    fieldsets = REQUEST_FIELDSETS
    readonly_fields = [f for _name, opts in REQUEST_FIELDSETS for f in opts["fields"]]
    actions = [
        "verify_identity",
        "approve",
        "reject",
        "extend",
        "assign",
        "assign_to_me",
        "retry_failed_sources",
        "cancel",
        "announce_restriction_lift",
        "lift_restriction",
    ]

    change_form_template = "workspace/admin/request_change_form.html"

    class Media:
        css = {"all": ["workspace/workspace.css"]}

    def change_view(self, request, object_id, form_url="", extra_context=None):
        # The page is read-only for everyone: a request changes only through the actions
        # (and so through the services), never by saving the form.
        if request.method == "POST":
            raise PermissionDenied
        obj = self.get_object(request, object_id)
        offered = []
        if obj is not None and self.may_act_on(request, obj):
            for name, (_func, _name, description) in self.get_actions(request).items():
                applies = ACTIONS_BY_STATUS.get(name, frozenset())
                if obj.status not in applies:
                    continue
                if name in ("announce_restriction_lift", "lift_restriction") and (
                    obj.type != "restriction"
                ):
                    continue
                if name == "extend" and obj.extended_at is not None:
                    continue
                offered.append((name, description))
        context = {
            **(extra_context or {}),
            "request_actions": offered,
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
        }
        return super().change_view(request, object_id, form_url, extra_context=context)

    def systems_q(self, systems):
        return request_systems_q(systems)

    def get_queryset(self, request):
        done = [SourceTaskStatus.DONE, SourceTaskStatus.HELD]
        return (
            super()
            .get_queryset(request)
            .annotate(
                _tasks=Count("source_tasks"),
                _tasks_done=Count("source_tasks", filter=Q(source_tasks__status__in=done)),
                _tasks_failed=Count(
                    "source_tasks", filter=Q(source_tasks__status=SourceTaskStatus.FAILED)
                ),
                _records=Sum("source_tasks__records_found"),
            )
        )

    def get_search_results(self, request, queryset, search_term):
        # The mixin scopes the queryset to the user's systems; the term is matched here.
        queryset, _dupes = super().get_search_results(request, queryset, "")
        term = search_term.strip()
        if not term:
            return queryset, False
        values = {term}
        for identity_type in IdentityType.values:
            try:
                values.add(normalize_identity(identity_type, term))
            except (InvalidIdentity, ValueError):
                continue
        condition = (
            Q(identity_value__in=values)
            | Q(subject__identities__value__in=values)
            | Q(subject__external_id__in=values)
            | Q(contact_email__iexact=term)
        )
        try:
            condition |= Q(pk=uuid.UUID(term))
        except ValueError:
            if len(term) == 8 and all(c in "0123456789abcdef" for c in term.lower()):
                condition |= Q(id__startswith=term.lower())
        matching = DataSubjectRequest.objects.filter(condition).values("pk")
        return queryset.filter(pk__in=matching), False

    def has_add_permission(self, request) -> bool:
        # Staff enter email and phone requests through the same service as the API; a form
        # for that belongs to the DPO workspace (see docs/dsar.md).
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    # --- columns and fields ---------------------------------------------------------------

    @admin.display(description=_("Request"))
    def short_id(self, obj):
        return str(obj.pk)[:8]

    @admin.display(description=_("Days left"), ordering="due_at")
    def days_left(self, obj):
        if obj.pk is None or not obj.is_open:
            return "—"
        now = timezone.now()
        due = obj.due_at.strftime("%d %b %Y")
        if obj.due_at < now:
            late = math.floor((now - obj.due_at) / timedelta(days=1))
            return format_html(
                '<span class="ws-days-overdue" title="{}">{}</span>',
                _("Due %(date)s") % {"date": due},
                _("%(n)s days overdue") % {"n": late} if late else _("overdue today"),
            )
        left = math.floor((obj.due_at - now) / timedelta(days=1))
        css = "ws-days-soon" if obj.due_at < now + timedelta(days=DUE_SOON_DAYS) else "ws-days-ok"
        return format_html(
            '<span class="{}" title="{}">{}</span>',
            css,
            _("Due %(date)s") % {"date": due},
            _("%(n)s days") % {"n": left} if left else _("due today"),
        )

    @admin.display(description=_("Progress"))
    def progress_display(self, obj):
        total = getattr(obj, "_tasks", 0)
        if not total:
            return "—"
        failed = _(", %(n)s failed") % {"n": obj._tasks_failed} if obj._tasks_failed else ""
        return _("%(done)s/%(total)s sources%(failed)s; %(records)s records") % {
            "done": obj._tasks_done,
            "total": total,
            "failed": failed,
            "records": obj._records or 0,
        }

    @admin.display(description=_("Systems"))
    def systems_touched(self, obj):
        ids = set(
            obj.subject.conversations.values_list("system_id", flat=True) if obj.subject else []
        )
        ids.update(
            obj.source_tasks.filter(records_found__gt=0).values_list("source__system_id", flat=True)
        )
        if obj.filed_by_id and obj.filed_by.system_id:
            ids.add(obj.filed_by.system_id)
        names = System.objects.filter(pk__in=ids).order_by("name").values_list("name", flat=True)
        return ", ".join(names) or _("none known (for staff who cover every system)")

    @admin.display(description=_("Timeline"))
    def timeline(self, obj):
        return admin_tools.request_timeline_html(
            request_id=obj.pk, task_ids=list(obj.source_tasks.values_list("pk", flat=True))
        )

    # --- actions (each calls the service the API calls) -------------------------------------

    @admin.action(
        description=_("Verify identity (with a note of what you checked)"), permissions=["change"]
    )
    def verify_identity(self, request, queryset):
        return admin_tools.action_with_input(
            self,
            request,
            queryset,
            form_class=admin_tools.NoteForm,
            title=_("Verify identity"),
            intro=_(
                "GDPR Art. 12(6), CCPA §7060: confirm the requester is the subject before "
                "anything is disclosed or erased. Say what you checked."
            ),
            call=lambda dsr, data: services.request_verify(
                request=dsr, actor=actor_for(request), method="staff", note=data["note"]
            ),
            done_message=_("%(n)s requests verified."),
        )

    @admin.action(description=_("Approve"), permissions=["change"])
    def approve(self, request, queryset):
        actor = actor_for(request)
        started = first = 0
        for dsr in queryset:
            try:
                services.request_approve(request=dsr, actor=actor)
            except ServiceError as exc:
                self.message_user(request, f"{dsr}: {exc.message}", messages.WARNING)
                continue
            if dsr.status == RequestStatus.AWAITING_APPROVAL:
                first += 1
                records = dsr.approval_records_estimate
                self.message_user(
                    request,
                    _(
                        "%(req)s: your approval is recorded. The erasure touches %(n)s records, "
                        "so a second person must approve it too (four-eyes rule)."
                    )
                    % {
                        "req": dsr,
                        "n": records if records is not None else _("an unknown number of"),
                    },
                    messages.INFO,
                )
            else:
                started += 1
        if started:
            self.message_user(
                request,
                _("%(n)s requests approved and started.") % {"n": started},
                messages.SUCCESS,
            )

    @admin.action(
        description=_("Reject (with a reason the subject is told)"), permissions=["change"]
    )
    def reject(self, request, queryset):
        return admin_tools.action_with_input(
            self,
            request,
            queryset,
            form_class=admin_tools.ReasonForm,
            title=_("Reject requests"),
            intro=_(
                "GDPR Art. 12(4): the subject is told the reason and their right to complain "
                "to a supervisory authority."
            ),
            call=lambda dsr, data: services.request_reject(
                request=dsr, actor=actor_for(request), reason=data["reason"]
            ),
            done_message=_("%(n)s requests rejected."),
        )

    @admin.action(
        description=_("Extend the deadline once (with a reason the subject is told)"),
        permissions=["change"],
    )
    def extend(self, request, queryset):
        return admin_tools.action_with_input(
            self,
            request,
            queryset,
            form_class=admin_tools.ReasonForm,
            title=_("Extend deadlines"),
            intro=_(
                "GDPR Art. 12(3): by two more months; CCPA §7021(b): by 45 more days. Once, "
                "within the first period, telling the subject why."
            ),
            call=lambda dsr, data: services.request_extend(
                request=dsr, actor=actor_for(request), reason=data["reason"]
            ),
            done_message=_("%(n)s deadlines extended."),
        )

    @admin.action(description=_("Assign to…"), permissions=["change"])
    def assign(self, request, queryset):
        return admin_tools.action_with_input(
            self,
            request,
            queryset,
            form_class=admin_tools.AssignForm,
            form_kwargs={"candidates": self._assignable_staff(queryset)},
            title=_("Assign requests"),
            intro=_("Only staff who work on the systems of every selected request are offered."),
            call=lambda dsr, data: services.request_assign(
                request=dsr, assignee=data["assignee"], actor=actor_for(request)
            ),
            done_message=_("%(n)s requests assigned."),
        )

    def _assignable_staff(self, queryset):
        wanted = queryset.count()
        people = get_user_model().objects.filter(is_active=True, is_staff=True)
        fit = [
            person.pk
            for person in people
            if scope_filter(queryset, staff_scope(person), request_systems_q).count() == wanted
        ]
        return people.filter(pk__in=fit).order_by("username")

    @admin.action(description=_("Assign to me"), permissions=["change"])
    def assign_to_me(self, request, queryset):
        admin_tools.apply_each(
            self,
            request,
            queryset,
            lambda dsr: services.request_assign(
                request=dsr, assignee=request.user, actor=actor_for(request)
            ),
            _("%(n)s requests assigned to you."),
        )

    @admin.action(description=_("Retry failed sources"), permissions=["change"])
    def retry_failed_sources(self, request, queryset):
        admin_tools.apply_each(
            self,
            request,
            queryset,
            lambda dsr: services.request_retry_failed(request=dsr, actor=actor_for(request)),
            _("%(n)s requests sent again."),
        )

    @admin.action(description=_("Cancel"), permissions=["change"])
    def cancel(self, request, queryset):
        admin_tools.apply_each(
            self,
            request,
            queryset,
            lambda dsr: services.request_cancel(
                request=dsr, actor=actor_for(request), reason="Cancelled by staff."
            ),
            _("%(n)s requests cancelled."),
        )

    @admin.action(
        description=_("Announce lifting the restriction (GDPR Art. 18(3))"), permissions=["change"]
    )
    def announce_restriction_lift(self, request, queryset):
        admin_tools.apply_each(
            self,
            request,
            queryset,
            lambda dsr: services.restriction_lift_announce(request=dsr, actor=actor_for(request)),
            _("%(n)s subjects told."),
        )

    @admin.action(description=_("Lift the restriction"), permissions=["change"])
    def lift_restriction(self, request, queryset):
        admin_tools.apply_each(
            self,
            request,
            queryset,
            lambda dsr: services.restriction_lift(request=dsr, actor=actor_for(request)),
            _("%(n)s restrictions lifted."),
        )


@admin.register(RequestRecord)
class RequestRecordAdmin(admin.ModelAdmin):
    """CCPA §7101 records: read-only evidence."""

    list_display = ["request_id", "type", "regulation", "outcome", "received_at", "responded_at"]
    list_filter = ["type", "regulation", "outcome"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
