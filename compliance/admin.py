"""The DPO's view of the core domain. Changes go through the same services as the API."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db.models import Count
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from compliance import services
from compliance.audit import audit_verify
from compliance.minimisation import MinimisationCategory
from compliance.models import (
    AIDisclosure,
    AnswerFlag,
    ApiClient,
    ApiKey,
    AuditEvent,
    Conversation,
    DataCategory,
    DataSubject,
    LogSource,
    Message,
    SubjectIdentity,
    System,
)
from compliance.portal import services as portal_services
from compliance.retention import admin as retention_admin
from compliance.workspace.permissions import SystemScopedAdminMixin

admin.site.site_header = _("Privacy compliance")
admin.site.site_title = _("Privacy compliance")
admin.site.index_title = _("DPO workspace")


def actor_for(request) -> str:
    return f"user:{request.user.pk}"


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class SubjectIdentityInline(ReadOnlyInline):
    model = SubjectIdentity
    fields = ["type", "value", "verified", "created_at"]
    readonly_fields = fields


@admin.register(DataSubject)
class DataSubjectAdmin(admin.ModelAdmin):
    list_display = ["short_id", "display_name", "jurisdiction", "identity_count", "created_at"]
    list_filter = ["jurisdiction"]
    search_fields = ["=identities__value", "=external_id", "display_name"]
    fields = ["id", "external_id", "display_name", "jurisdiction", "created_at", "updated_at"]
    readonly_fields = ["id", "external_id", "created_at", "updated_at"]
    inlines = [SubjectIdentityInline]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_identities=Count("identities"))

    @admin.display(description=_("Subject"))
    def short_id(self, obj):
        return str(obj.pk)[:8]

    @admin.display(description=_("Identities"), ordering="_identities")
    def identity_count(self, obj):
        return obj._identities

    def has_add_permission(self, request) -> bool:
        # Subjects come from the API, ingest or the portal, always with an identity.
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        # Erasure is a data subject request with evidence, never a delete button.
        return False

    def save_model(self, request, obj, form, change):
        original = DataSubject.objects.get(pk=obj.pk)
        display_name, jurisdiction = obj.display_name, obj.jurisdiction
        services.subject_update(
            subject=original,
            actor=actor_for(request),
            display_name=display_name,
            jurisdiction=jurisdiction,
        )


class AIDisclosureInline(ReadOnlyInline):
    model = AIDisclosure
    fields = ["version", "text", "published_at"]
    readonly_fields = fields


class SystemForm(forms.ModelForm):
    new_disclosure_text = forms.CharField(
        label=_("New AI disclosure text"),
        required=False,
        widget=forms.Textarea,
        help_text=_(
            "Publishing a new text creates a new version; earlier versions stay as evidence "
            "of what customers were shown (EU AI Act Art. 50)."
        ),
    )
    minimise_categories = forms.MultipleChoiceField(
        label=_("Never keep in logs"),
        choices=MinimisationCategory.choices,
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text=_("Redacted from every message before it is stored (GDPR Art. 5(1)(c))."),
    )

    class Meta:
        model = System
        fields = ["name", "slug", "description", "owner_contact", "role", "data_categories",
                  "recipients", "minimise_categories"]


@admin.register(System)
class SystemAdmin(admin.ModelAdmin):
    form = SystemForm
    list_display = ["name", "slug", "role", "owner_contact", "disclosure_version", "redactions"]
    list_filter = ["role"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    filter_horizontal = ["data_categories"]
    inlines = [AIDisclosureInline]
    actions = None

    fields = ["name", "slug", "description", "owner_contact", "role", "data_categories",
              "recipients", "minimise_categories", "redaction_counts", "new_disclosure_text"]
    readonly_fields = ["redaction_counts"]

    @admin.display(description=_("Disclosure"))
    def disclosure_version(self, obj):
        current = obj.current_disclosure
        return f"v{current.version}" if current else "—"

    @admin.display(description=_("Redactions at ingest"))
    def redaction_counts(self, obj):
        return retention_admin.redaction_counts_html(obj)

    @admin.display(description=_("Redactions"))
    def redactions(self, obj):
        return retention_admin.redaction_total(obj)

    def save_model(self, request, obj, form, change):
        services.system_save(system=obj, actor=actor_for(request), created=not change)

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        text = form.cleaned_data.get("new_disclosure_text", "")
        if text.strip():
            disclosure = services.disclosure_publish(
                system=form.instance, text=text, actor=actor_for(request)
            )
            messages.success(
                request, _("Published AI disclosure v%(v)s.") % {"v": disclosure.version}
            )

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(DataCategory)
class DataCategoryAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "sensitive"]
    list_filter = ["sensitive"]
    prepopulated_fields = {"slug": ["name"]}


class MessageInline(ReadOnlyInline):
    model = Message
    fields = ["sequence", "role", "text", "sent_at"]
    readonly_fields = fields


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ["id", "system", "external_id", "subject_short", "started_at", "disclosure"]
    list_filter = ["system", ("started_at", admin.DateFieldListFilter)]
    search_fields = ["=external_id", "=subject__identities__value"]
    list_select_related = ["system", "subject", "disclosure"]
    readonly_fields = [
        "system",
        "subject",
        "external_id",
        "started_at",
        "disclosure",
        "disclosure_shown_at",
        "created_at",
    ]
    fields = readonly_fields
    inlines = [MessageInline]
    show_full_result_count = False

    @admin.display(description=_("Subject"))
    def subject_short(self, obj):
        return str(obj.subject_id)[:8] if obj.subject_id else "—"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        # Read-only: the view permission shows the page without Save buttons that would
        # only lead to a 403.
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class LogSourceForm(forms.ModelForm):
    class Meta:
        model = LogSource
        fields = ["system", "name", "connector", "config", "enabled"]

    def clean(self):
        from compliance.connectors import connector_class

        cleaned = super().clean()
        if "connector" not in cleaned or "config" not in cleaned:
            return cleaned
        try:
            cls = connector_class(cleaned["connector"])
            # Stored normalized, so what the DSAR and retention engines read is what the
            # DPO was shown as valid.
            cleaned["config"] = cls.validate_config(cleaned["config"] or {})
        except services.ServiceError as exc:
            field = exc.field.removeprefix("config.")
            message = f"{field}: {exc.message}" if field and field != "config" else exc.message
            self.add_error("connector" if exc.field == "connector" else "config", message)
        return cleaned


@admin.register(LogSource)
class LogSourceAdmin(SystemScopedAdminMixin, admin.ModelAdmin):
    form = LogSourceForm
    system_path = "system"  # staff see and change only their systems' sources
    list_display = ["name", "system", "connector", "enabled", "retention_policy"]
    list_filter = ["connector", "enabled", ("system", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["name", "system__name", "system__slug"]
    readonly_fields = ["retention_policy"]

    @admin.display(description=_("Effective retention policy"))
    def retention_policy(self, obj):
        return retention_admin.effective_policy_html(obj)

    def changelist_view(self, request, extra_context=None):
        retention_admin.warn_sources_without_policy(request, within=self.get_queryset(request))
        return super().changelist_view(request, extra_context)

    def save_model(self, request, obj, form, change):
        services.log_source_save(source=obj, actor=actor_for(request), created=not change)


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ["id", "occurred_at", "actor", "action", "target_type", "target_id"]
    list_filter = ["action", ("occurred_at", admin.DateFieldListFilter)]
    search_fields = ["=actor", "=target_id", "action"]
    readonly_fields = [
        "occurred_at",
        "actor",
        "action",
        "target_type",
        "target_id",
        "detail",
        "prev_hash",
        "hash",
    ]
    fields = readonly_fields
    actions = ["verify_chain"]
    show_full_result_count = False
    # Adds the "Verify chain" button, which checks the chain without selecting rows.
    change_list_template = "workspace/admin/auditevent_change_list.html"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        # Append-only: the view permission shows an event read-only, without Save buttons.
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    @admin.action(description=_("Verify the whole audit chain"))
    def verify_chain(self, request, queryset):
        report = audit_verify()
        if report.intact:
            self.message_user(
                request,
                _("The audit chain is intact (%(n)s events).") % {"n": report.checked},
                messages.SUCCESS,
            )
        else:
            self.message_user(
                request,
                _("The audit chain is broken at event %(id)s: %(reason)s.")
                % {"id": report.broken_at or "—", "reason": report.reason},
                messages.ERROR,
            )


class ApiKeyInline(ReadOnlyInline):
    model = ApiKey
    fields = ["prefix", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = fields


class ApiClientForm(forms.ModelForm):
    class Meta:
        model = ApiClient
        fields = ["name", "system", "scopes"]

    def clean_scopes(self):
        scopes = self.cleaned_data.get("scopes")
        if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
            raise forms.ValidationError(_('Give a list of scopes, e.g. ["logs:write"].'))
        unknown = [s for s in scopes if s not in services.KNOWN_SCOPES]
        if unknown:
            raise forms.ValidationError(_("Unknown scopes: %(s)s.") % {"s": ", ".join(unknown)})
        return scopes


@admin.register(ApiClient)
class ApiClientAdmin(admin.ModelAdmin):
    form = ApiClientForm
    list_display = ["name", "system", "scope_list", "revoked_at"]
    list_filter = ["system"]
    fields = ["name", "system", "scopes", "created_at", "revoked_at"]
    readonly_fields = ["created_at", "revoked_at"]
    inlines = [ApiKeyInline]
    actions = ["issue_key", "revoke_clients"]

    @admin.display(description=_("Scopes"))
    def scope_list(self, obj):
        return ", ".join(obj.scopes)

    def get_readonly_fields(self, request, obj=None):
        return [*self.readonly_fields, "name"] if obj else self.readonly_fields

    def save_model(self, request, obj, form, change):
        if change:
            services.api_client_update(client=obj, scopes=obj.scopes, system=obj.system,
                                       actor=actor_for(request))
            return
        created = services.api_client_create(name=obj.name, scopes=obj.scopes,
                                             system=obj.system, actor=actor_for(request))
        obj.pk = created.pk

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        form.base_fields["scopes"].help_text = _("A list of scopes, e.g. %(example)s. Known: "
                                                 "%(known)s.") % {
            "example": '["logs:write", "consent:read"]',
            "known": ", ".join(services.KNOWN_SCOPES)}
        return form

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.action(description=_("Issue a new API key (shown once)"))
    def issue_key(self, request, queryset):
        for client in queryset:
            try:
                _, raw = services.api_key_issue(client=client, actor=actor_for(request))
            except services.ServiceError as exc:
                self.message_user(request, f"{client.name}: {exc.message}", messages.ERROR)
                continue
            self.message_user(
                request,
                format_html(
                    "New key for <strong>{}</strong>, shown only now: <code>{}</code>",
                    client.name,
                    raw,
                ),
                messages.WARNING,
            )

    @admin.action(description=_("Revoke the client and all its keys"))
    def revoke_clients(self, request, queryset):
        for client in queryset:
            services.api_client_revoke(client=client, actor=actor_for(request))
        self.message_user(request, _("Revoked."), messages.SUCCESS)


# --- Reported AI answers (the portal's "Report this answer") ---------------------------------


@admin.register(AnswerFlag)
class AnswerFlagAdmin(SystemScopedAdminMixin, admin.ModelAdmin):
    """The review queue of customers' reports on AI answers: a person looks at each one
    and decides, through ``answer_flag_review``, never by editing the row."""

    list_display = [
        "id",
        "created_at",
        "category",
        "state",
        "system_name",
        "conversation_link",
        "subject_short",
        "reviewed_at",
    ]
    list_filter = [
        "state",
        "category",
        ("message__conversation__system", admin.RelatedOnlyFieldListFilter),
        ("created_at", admin.DateFieldListFilter),
    ]
    list_select_related = ["message__conversation__system", "reviewed_by"]
    readonly_fields = [
        "category",
        "state",
        "comment",
        "answer_text",
        "conversation_link",
        "subject_short",
        "created_at",
        "reviewed_by",
        "reviewed_at",
    ]
    fields = readonly_fields
    actions = ["mark_reviewed", "mark_rectification", "mark_dismissed"]
    show_full_result_count = False
    system_path = "message__conversation__system"
    # Links the per-plugin, per-month statistics (compliance/workspace).
    change_list_template = "workspace/admin/answerflag_change_list.html"

    @admin.display(description=_("AI assistant"), ordering="message__conversation__system__name")
    def system_name(self, obj):
        return obj.message.conversation.system.name

    @admin.display(description=_("Conversation"))
    def conversation_link(self, obj):
        from django.urls import reverse

        conversation_id = obj.message.conversation_id
        url = reverse("admin:compliance_conversation_change", args=[conversation_id])
        return format_html(
            '<a href="{}">{} #{}</a>', url, conversation_id, obj.message.sequence
        )

    @admin.display(description=_("Subject"))
    def subject_short(self, obj):
        return str(obj.subject_id)[:8]

    @admin.display(description=_("Reported answer"))
    def answer_text(self, obj):
        return obj.message.text

    def has_add_permission(self, request) -> bool:
        return False  # flags come from customers through the portal

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        # The detail page is read-only; decisions are the actions below.
        return request.method in ("GET", "HEAD") and super().has_change_permission(request, obj)

    def has_review_permission(self, request) -> bool:
        return request.user.has_perm("compliance.change_answerflag")

    def _review(self, request, queryset, state: str) -> None:
        done, refused = 0, 0
        for flag in queryset.select_related(None):
            try:
                portal_services.answer_flag_review(
                    flag=flag, state=state, reviewer=request.user, actor=actor_for(request)
                )
                done += 1
            except services.ServiceError:
                refused += 1
        if done:
            self.message_user(request, _("%(n)s reports updated.") % {"n": done}, messages.SUCCESS)
        if refused:
            self.message_user(
                request,
                _("%(n)s reports were already decided and stay as they are.") % {"n": refused},
                messages.WARNING,
            )

    @admin.action(description=_("Mark as reviewed"), permissions=["review"])
    def mark_reviewed(self, request, queryset):
        self._review(request, queryset, "reviewed")

    @admin.action(description=_("Mark as led to a rectification"), permissions=["review"])
    def mark_rectification(self, request, queryset):
        self._review(request, queryset, "rectification")

    @admin.action(description=_("Dismiss"), permissions=["review"])
    def mark_dismissed(self, request, queryset):
        self._review(request, queryset, "dismissed")
