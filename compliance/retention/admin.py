"""The DPO's pages for retention policies, legal holds and retention runs, and the helpers
the core admin uses to show retention on log sources and redaction counts on systems.
Imported by compliance/admin.py; every change goes through compliance.retention services."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db.models import Sum
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _

from compliance.models import (
    LegalHold,
    LogSource,
    RedactionCount,
    RetentionPolicy,
    RetentionRun,
    RetentionRunSource,
    System,
)
from compliance.retention import selectors, services
from compliance.services import ServiceError
from compliance.workspace.permissions import SystemScopedAdminMixin


def _actor(request) -> str:
    return f"user:{request.user.pk}"


# --- Helpers for the core admin's System and LogSource pages ----------------------------------


def redaction_counts_html(system: System) -> str:
    rows = list(RedactionCount.objects.filter(system=system).order_by("category"))
    if not rows:
        return "—"
    return format_html(
        "<table><tr><th>{}</th><th>{}</th><th>{}</th></tr>{}</table>",
        _("Category"),
        _("Redacted"),
        _("Last"),
        format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (r.get_category_display(), r.count, r.updated_at.strftime("%Y-%m-%d %H:%M"))
                for r in rows
            ),
        ),
    )


def redaction_total(system: System) -> int:
    return RedactionCount.objects.filter(system=system).aggregate(n=Sum("count"))["n"] or 0


def effective_policy_html(source: LogSource) -> str:
    if source.pk is None:
        return "—"
    policy = selectors.effective_policy_for_source(source)
    holds = selectors.source_holds(source)
    held = format_html(" <strong>{}</strong>", _("(held)")) if holds else ""
    if policy is None:
        return format_html(
            '<span style="color:#ba2121">⚠ {}</span>{}',
            _("No retention policy: logs are kept without limit"),
            held,
        )
    url = reverse("admin:compliance_retentionpolicy_change", args=[policy.pk])
    return format_html(
        '<a href="{}">{}</a> ({} {}, {}){}',
        url,
        policy.name,
        policy.duration_days,
        _("days"),
        policy.get_action_display(),
        held,
    )


def warn_sources_without_policy(request, *, within=None) -> None:
    uncovered = selectors.sources_without_policy()
    if within is not None:
        # Only the sources the user may see (compliance/workspace/permissions.py).
        visible = set(within.values_list("pk", flat=True))
        uncovered = [s for s in uncovered if s.pk in visible]
    if uncovered:
        messages.warning(
            request,
            _(
                "%(n)s enabled log source(s) have no retention policy, so their logs are kept "
                "without limit (GDPR Art. 5(1)(e)): %(names)s."
            )
            % {"n": len(uncovered), "names": ", ".join(str(s) for s in uncovered)},
        )


# --- Retention policies ------------------------------------------------------------------------


class RetentionPolicyForm(forms.ModelForm):
    class Meta:
        model = RetentionPolicy
        fields = [
            "name",
            "description",
            "source",
            "system",
            "data_category",
            "duration_days",
            "action",
            "on_logging_withdrawal",
            "enabled",
        ]


@admin.register(RetentionPolicy)
class RetentionPolicyAdmin(SystemScopedAdminMixin, admin.ModelAdmin):
    form = RetentionPolicyForm
    # A data-category policy covers every system holding the category: it is changed only
    # by staff who may act on all of them (compliance/workspace/permissions.py).
    system_path = ("system", "source__system", "data_category__systems")
    list_display = [
        "name",
        "scope",
        "duration_days",
        "action",
        "on_logging_withdrawal",
        "enabled",
        "governs",
        "approved_by",
        "approved_at",
    ]
    list_filter = ["enabled", "action", "on_logging_withdrawal"]
    search_fields = ["name"]
    list_select_related = ["source__system", "system", "data_category", "approved_by"]
    readonly_fields = ["approved_by", "approved_at", "governed_sources"]
    actions = ["dry_run_policies", "run_policies_now"]
    fieldsets = [
        (None, {"fields": ["name", "description"]}),
        (
            _("What it covers (exactly one)"),
            {"fields": ["source", "system", "data_category"]},
        ),
        (
            _("How long, and then what"),
            {"fields": ["duration_days", "action", "on_logging_withdrawal", "enabled"]},
        ),
        (_("Approval"), {"fields": ["approved_by", "approved_at"]}),
        (_("Sources and precedence"), {"fields": ["governed_sources"]}),
    ]

    @admin.display(description=_("Covers"))
    def scope(self, obj):
        return obj.scope_label

    @admin.display(description=_("Applies to"))
    def governs(self, obj):
        governed = selectors.policy_sources(obj)
        applies = sum(1 for g in governed if not g.overridden and obj.enabled)
        overridden = sum(1 for g in governed if g.overridden)
        text = _("%(a)s of %(n)s sources") % {"a": applies, "n": len(governed)}
        if overridden:
            text += " " + _("(%(o)s overridden by a shorter policy)") % {"o": overridden}
        return text

    @admin.display(description=_("Sources it covers"))
    def governed_sources(self, obj):
        if obj.pk is None:
            return _("Shown once the policy is saved.")
        governed = selectors.policy_sources(obj)
        if not governed:
            return _("No log source is in this scope yet.")
        rows = []
        for g in governed:
            if not obj.enabled:
                state = _("policy disabled")
            elif g.overridden:
                state = format_html(
                    '{} <a href="{}">{}</a> ({} {})',
                    _("overridden by"),
                    reverse("admin:compliance_retentionpolicy_change", args=[g.effective.pk]),
                    g.effective.name,
                    g.effective.duration_days,
                    _("days"),
                )
            else:
                state = _("applies")
            holds = "; ".join(selectors.hold_reasons(g.holds)) if g.holds else "—"
            enabled = "" if g.source.enabled else f" ({_('source disabled')})"
            rows.append((f"{g.source}{enabled}", state, holds))
        return format_html(
            "<table><tr><th>{}</th><th>{}</th><th>{}</th></tr>{}</table>",
            _("Source"),
            _("This policy"),
            _("Legal holds on the whole source"),
            format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td></tr>", rows),
        )

    def save_model(self, request, obj, form, change):
        # The DPO who saves the policy approves it (GDPR Art. 5(2) accountability).
        values = {
            "name": obj.name,
            "description": obj.description,
            "source_id": obj.source_id,
            "system_id": obj.system_id,
            "data_category_id": obj.data_category_id,
            "duration_days": obj.duration_days,
            "action": obj.action,
            "on_logging_withdrawal": obj.on_logging_withdrawal,
            "enabled": obj.enabled,
        }
        if change:
            saved = services.retention_policy_update(
                policy=obj, approved_by=request.user, actor=_actor(request), **values
            )
        else:
            saved = services.retention_policy_create(
                approved_by=request.user, actor=_actor(request), **values
            )
        obj.pk = saved.pk
        obj.approved_by, obj.approved_at = saved.approved_by, saved.approved_at

    def has_delete_permission(self, request, obj=None) -> bool:
        # Runs refer to policies as evidence; a policy no longer wanted is disabled.
        return False

    def has_run_permission(self, request) -> bool:
        return request.user.has_perm("compliance.change_retentionpolicy")

    def _start(self, request, queryset, *, dry_run: bool) -> None:
        for policy in queryset:
            try:
                run = services.retention_run_create(
                    actor=_actor(request), policy=policy, dry_run=dry_run
                )
            except ServiceError as exc:
                self.message_user(request, f"{policy.name}: {exc.message}", messages.ERROR)
                continue
            services.retention_run_dispatch(run_id=run.pk)
            url = reverse("admin:compliance_retentionrun_change", args=[run.pk])
            self.message_user(
                request,
                format_html(
                    '{}: <a href="{}">{} {}</a> {}',
                    policy.name,
                    url,
                    _("dry run") if dry_run else _("run"),
                    run.pk,
                    _("queued for %(n)s source(s); its page shows the counts per source.")
                    % {"n": run.sources.count()},
                ),
                messages.SUCCESS,
            )

    @admin.action(
        description=_("Dry run: count what the policy would act on, change nothing"),
        permissions=["run"],
    )
    def dry_run_policies(self, request, queryset):
        self._start(request, queryset, dry_run=True)

    @admin.action(description=_("Enforce now"), permissions=["run"])
    def run_policies_now(self, request, queryset):
        self._start(request, queryset, dry_run=False)


# --- Legal holds -------------------------------------------------------------------------------


class LegalHoldForm(forms.ModelForm):
    class Meta:
        model = LegalHold
        fields = [
            "subject",
            "system",
            "source",
            "reason",
            "reason_detail",
            "owner",
            "starts_at",
            "ends_at",
        ]


class HoldStateFilter(admin.SimpleListFilter):
    title = _("state")
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("active", _("Active")), ("inactive", _("Lifted, ended or not started"))]

    def queryset(self, request, queryset):
        active = selectors.holds_active().values("pk")
        if self.value() == "active":
            return queryset.filter(pk__in=active)
        if self.value() == "inactive":
            return queryset.exclude(pk__in=active)
        return queryset


@admin.register(LegalHold)
class LegalHoldAdmin(SystemScopedAdminMixin, admin.ModelAdmin):
    form = LegalHoldForm
    system_path = ("system", "source__system", "subject__conversations__system")
    list_display = [
        "id",
        "scope",
        "reason",
        "owner",
        "starts_at",
        "ends_at",
        "state",
        "lifted_at",
    ]
    list_filter = [HoldStateFilter, "reason"]
    list_select_related = ["system", "source__system", "owner"]
    raw_id_fields = ["subject"]
    actions = ["lift_holds"]

    def get_fields(self, request, obj=None):
        fields = list(LegalHoldForm.Meta.fields)
        return [*fields, "lifted_at", "lifted_by"] if obj else fields

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        # Scope and start are fixed once placed: covering something else is a new hold.
        readonly = ["subject", "system", "source", "starts_at", "lifted_at", "lifted_by"]
        if obj.lifted_at is not None:
            readonly += ["reason", "reason_detail", "owner", "ends_at"]
        return readonly

    def get_changeform_initial_data(self, request):
        return {"owner": request.user.pk, "starts_at": timezone.now()}

    @admin.display(description=_("Covers"))
    def scope(self, obj):
        return obj.scope_label

    @admin.display(description=_("State"))
    def state(self, obj):
        if obj.lifted_at is not None:
            return _("lifted")
        now = timezone.now()
        if obj.starts_at > now:
            return _("not started")
        if obj.ends_at is not None and obj.ends_at <= now:
            return _("ended")
        return _("active")

    def save_model(self, request, obj, form, change):
        if change:
            services.legal_hold_update(
                hold=obj,
                actor=_actor(request),
                reason=obj.reason,
                reason_detail=obj.reason_detail,
                ends_at=obj.ends_at,
                owner=obj.owner,
            )
            return
        created = services.legal_hold_create(
            reason=obj.reason,
            reason_detail=obj.reason_detail,
            owner=obj.owner,
            actor=_actor(request),
            subject_id=obj.subject_id,
            system_id=obj.system_id,
            source_id=obj.source_id,
            starts_at=obj.starts_at,
            ends_at=obj.ends_at,
        )
        obj.pk = created.pk

    def has_delete_permission(self, request, obj=None) -> bool:
        # A hold is evidence of why data was kept: it is lifted, never deleted.
        return False

    def has_lift_permission(self, request) -> bool:
        return request.user.has_perm("compliance.change_legalhold")

    @admin.action(description=_("Lift the selected holds now"), permissions=["lift"])
    def lift_holds(self, request, queryset):
        lifted = 0
        for hold in queryset:
            try:
                services.legal_hold_lift(hold=hold, lifted_by=request.user, actor=_actor(request))
                lifted += 1
            except ServiceError as exc:
                self.message_user(request, f"{hold}: {exc.message}", messages.WARNING)
        if lifted:
            self.message_user(
                request,
                _("%(n)s hold(s) lifted. Retention acts on what they kept at its next run.")
                % {"n": lifted},
                messages.SUCCESS,
            )


# --- Retention runs (read-only) ---------------------------------------------------------------


class RetentionRunSourceInline(admin.TabularInline):
    model = RetentionRunSource
    extra = 0
    can_delete = False
    fields = [
        "source",
        "policy",
        "action",
        "cutoff",
        "status",
        "in_scope",
        "acted_on",
        "held",
        "failed",
        "held_because",
        "error",
        "attempts",
        "started_at",
        "finished_at",
    ]
    readonly_fields = fields

    @admin.display(description=_("Held because"))
    def held_because(self, obj):
        return "; ".join(obj.held_reasons) or "—"

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(RetentionRun)
class RetentionRunAdmin(SystemScopedAdminMixin, admin.ModelAdmin):
    system_path = ("policy__system", "sources__source__system")
    list_display = [
        "id",
        "created_at",
        "kind",
        "dry_run",
        "policy",
        "status",
        "sum_in_scope",
        "sum_acted_on",
        "sum_held",
        "sum_failed",
        "requested_by",
    ]
    list_filter = ["status", "kind", "dry_run"]
    list_select_related = ["policy"]
    fields = [
        "kind",
        "dry_run",
        "policy",
        "subject_short",
        "status",
        "requested_by",
        "created_at",
        "started_at",
        "finished_at",
        "in_scope",
        "acted_on",
        "held",
        "failed",
    ]
    readonly_fields = fields
    inlines = [RetentionRunSourceInline]

    def get_queryset(self, request):
        # Live sums over the sources, so a run in progress shows how far it got.
        return (
            super()
            .get_queryset(request)
            .annotate(
                _in_scope=Sum("sources__in_scope"),
                _acted_on=Sum("sources__acted_on"),
                _held=Sum("sources__held"),
                _failed=Sum("sources__failed"),
            )
        )

    @admin.display(description=_("In scope"), ordering="_in_scope")
    def sum_in_scope(self, obj):
        return obj._in_scope or 0

    @admin.display(description=_("Acted on (would, in a dry run)"), ordering="_acted_on")
    def sum_acted_on(self, obj):
        return obj._acted_on or 0

    @admin.display(description=_("Held"), ordering="_held")
    def sum_held(self, obj):
        return obj._held or 0

    @admin.display(description=_("Failed"), ordering="_failed")
    def sum_failed(self, obj):
        return obj._failed or 0

    @admin.display(description=_("Subject"))
    def subject_short(self, obj):
        return str(obj.subject_id)[:8] if obj.subject_id else "—"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return request.method in ("GET", "HEAD") and super().has_view_permission(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
