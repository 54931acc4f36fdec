"""The DPO's view of the core domain. Changes go through the same services as the API."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import Count
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from compliance import services
from compliance.audit import audit_verify
from compliance.models import (
    AIDisclosure,
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


@admin.register(System)
class SystemAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "role", "owner_contact", "disclosure_version"]
    list_filter = ["role"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    filter_horizontal = ["data_categories"]
    inlines = [AIDisclosureInline]
    actions = None

    def get_form(self, request, obj=None, **kwargs):
        from django import forms

        form = super().get_form(request, obj, **kwargs)
        form.base_fields["new_disclosure_text"] = forms.CharField(
            label=_("New AI disclosure text"),
            required=False,
            widget=forms.Textarea,
            help_text=_(
                "Publishing a new text creates a new version; earlier versions stay "
                "as evidence of what customers were shown (EU AI Act Art. 50)."
            ),
        )
        return form

    def get_fields(self, request, obj=None):
        fields = [f for f in super().get_fields(request, obj) if f != "new_disclosure_text"]
        return [*fields, "new_disclosure_text"]

    @admin.display(description=_("Disclosure"))
    def disclosure_version(self, obj):
        current = obj.current_disclosure
        return f"v{current.version}" if current else "—"

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
        return request.method in ("GET", "HEAD") and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(LogSource)
class LogSourceAdmin(admin.ModelAdmin):
    list_display = ["name", "system", "connector", "enabled"]
    list_filter = ["connector", "enabled", "system"]


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

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return request.method in ("GET", "HEAD") and super().has_view_permission(request, obj)

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


@admin.register(ApiClient)
class ApiClientAdmin(admin.ModelAdmin):
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
            unknown = [s for s in obj.scopes if s not in services.KNOWN_SCOPES]
            if unknown:
                raise services.ServiceError(f"Unknown scopes: {', '.join(unknown)}")
            obj.save()
            return
        created = services.api_client_create(
            name=obj.name, scopes=obj.scopes, system=obj.system, actor=actor_for(request)
        )
        obj.pk = created.pk

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
