"""The DPO's view of consent. Purposes are edited through the consent services; notices,
events and states are evidence and read-only."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.utils.translation import gettext_lazy as _

from compliance.services import ServiceError
from consent import services
from consent.models import (
    ConsentEvent,
    ConsentState,
    IngestRefusal,
    Purpose,
    PurposeNotice,
)


def actor_for(request) -> str:
    return f"user:{request.user.pk}"


class ReadOnlyAdmin(admin.ModelAdmin):
    """Evidence: visible, never added, changed or deleted from the admin."""

    actions = None

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return request.method in ("GET", "HEAD") and super().has_view_permission(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class PurposeNoticeInline(admin.TabularInline):
    model = PurposeNotice
    fields = ["version", "text", "published_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class PurposeForm(forms.ModelForm):
    new_notice_text = forms.CharField(
        label=_("New notice text"),
        required=False,
        widget=forms.Textarea,
        help_text=_(
            "Publishing a new text creates a new version; earlier versions stay as evidence "
            "of what customers agreed to (GDPR Art. 7(1)). Required for a new purpose."
        ),
    )

    class Meta:
        model = Purpose
        fields = [
            "slug",
            "name",
            "description",
            "lawful_basis",
            "sensitive",
            "sold_or_shared",
            "third_party_name",
            "receipt_category",
            "data_categories",
            "systems",
        ]

    def clean(self):
        cleaned = super().clean()
        if self.instance.pk is None and not (cleaned.get("new_notice_text") or "").strip():
            self.add_error("new_notice_text", _("A new purpose needs the text customers see."))
        if self.instance.pk is not None and cleaned.get("slug") != self.instance.slug:
            self.add_error("slug", _("A purpose's slug cannot change: plugins ask by slug."))
        return cleaned


@admin.register(Purpose)
class PurposeAdmin(admin.ModelAdmin):
    form = PurposeForm
    list_display = ["name", "slug", "lawful_basis", "sensitive", "sold_or_shared", "notice"]
    list_filter = ["lawful_basis", "sensitive", "sold_or_shared"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    filter_horizontal = ["data_categories", "systems"]
    inlines = [PurposeNoticeInline]
    actions = None
    fields = [*PurposeForm.Meta.fields, "new_notice_text"]

    @admin.display(description=_("Notice"))
    def notice(self, obj):
        current = obj.current_notice
        return f"v{current.version}" if current else "—"

    def save_model(self, request, obj, form, change):
        services.purpose_save(purpose=obj, actor=actor_for(request), created=not change)

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        text = form.cleaned_data.get("new_notice_text", "")
        if text.strip():
            try:
                notice = services.purpose_notice_publish(
                    purpose=form.instance, text=text, actor=actor_for(request)
                )
            except ServiceError as exc:
                messages.error(request, exc.message)
                return
            messages.success(request, _("Published notice v%(v)s.") % {"v": notice.version})

    def has_delete_permission(self, request, obj=None) -> bool:
        # Events point at purposes and their notices: they stay as evidence.
        return False


@admin.register(PurposeNotice)
class PurposeNoticeAdmin(ReadOnlyAdmin):
    list_display = ["purpose", "version", "published_at"]
    list_filter = ["purpose"]
    list_select_related = ["purpose"]
    fields = ["purpose", "version", "text", "published_at"]
    readonly_fields = fields


@admin.register(ConsentEvent)
class ConsentEventAdmin(ReadOnlyAdmin):
    list_display = [
        "occurred_at",
        "subject_short",
        "purpose",
        "action",
        "source",
        "notice_version",
        "jurisdiction",
    ]
    list_filter = ["action", "source", "purpose", "jurisdiction"]
    search_fields = ["=subject__identities__value", "=subject__id", "=receipt_id"]
    list_select_related = ["purpose", "notice"]
    fields = [
        "receipt_id",
        "subject",
        "purpose",
        "action",
        "source",
        "notice",
        "jurisdiction",
        "occurred_at",
        "actor",
        "evidence",
    ]
    readonly_fields = fields
    show_full_result_count = False

    @admin.display(description=_("Subject"))
    def subject_short(self, obj):
        return str(obj.subject_id)[:8]

    @admin.display(description=_("Notice"))
    def notice_version(self, obj):
        return f"v{obj.notice.version}" if obj.notice_id else "—"


@admin.register(ConsentState)
class ConsentStateAdmin(ReadOnlyAdmin):
    list_display = ["subject_short", "purpose", "status", "source", "since"]
    list_filter = ["status", "source", "purpose"]
    search_fields = ["=subject__identities__value", "=subject__id"]
    list_select_related = ["purpose"]
    fields = ["subject", "purpose", "status", "source", "since", "last_event", "updated_at"]
    readonly_fields = fields
    show_full_result_count = False

    @admin.display(description=_("Subject"))
    def subject_short(self, obj):
        return str(obj.subject_id)[:8]


@admin.register(IngestRefusal)
class IngestRefusalAdmin(ReadOnlyAdmin):
    list_display = ["system_slug", "count", "last_refused_at"]
    fields = ["system_slug", "count", "last_refused_at"]
    readonly_fields = fields
