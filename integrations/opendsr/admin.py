"""OpenDSR requests and their status callbacks in the DPO's admin, read-only: the request
itself is worked in "Data subject requests"; a callback that failed can be sent again."""

from __future__ import annotations

from django.contrib import admin, messages
from django.utils.translation import gettext_lazy as _

from integrations.opendsr.callbacks import opendsr_callback_retry
from integrations.opendsr.models import OpenDsrCallback, OpenDsrRequest


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class OpenDsrCallbackInline(admin.TabularInline):
    model = OpenDsrCallback
    fields = [
        "sequence",
        "request_status",
        "url",
        "status",
        "attempts",
        "last_status_code",
        "last_error",
        "created_at",
        "delivered_at",
    ]
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ["url", "sequence"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(OpenDsrRequest)
class OpenDsrRequestAdmin(ReadOnlyAdmin):
    list_display = [
        "subject_request_id",
        "client",
        "request",
        "announced_status",
        "api_version",
        "created_at",
    ]
    list_filter = ["announced_status", "api_version", "client"]
    search_fields = ["=subject_request_id"]
    readonly_fields = [
        "subject_request_id",
        "client",
        "request",
        "api_version",
        "submitted_time",
        "status_callback_urls",
        "announced_status",
        "cancelled_at",
        "created_at",
    ]
    fields = readonly_fields
    inlines = [OpenDsrCallbackInline]


@admin.register(OpenDsrCallback)
class OpenDsrCallbackAdmin(ReadOnlyAdmin):
    list_display = [
        "__str__",
        "opendsr_request",
        "url",
        "status",
        "attempts",
        "last_status_code",
        "next_attempt_at",
        "delivered_at",
    ]
    list_filter = ["status", "request_status"]
    readonly_fields = [
        "opendsr_request",
        "url",
        "sequence",
        "request_status",
        "body",
        "status",
        "attempts",
        "next_attempt_at",
        "last_status_code",
        "last_error",
        "created_at",
        "delivered_at",
    ]
    fields = readonly_fields
    actions = ["retry_now"]

    @admin.action(description=_("Retry now"))
    def retry_now(self, request, queryset):
        actor = f"user:{request.user.pk}"
        retried = sum(opendsr_callback_retry(callback=c, actor=actor) for c in queryset)
        messages.info(request, _("%(count)d callbacks queued.") % {"count": retried})
