"""Webhooks in the DPO's admin: subscriptions, and every delivery with its attempts.
Changes go through the services, like the API's."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.utils.translation import gettext_lazy as _

from integrations import services
from integrations.events import EVENT_TYPES
from integrations.models import WebhookAttempt, WebhookDelivery, WebhookSubscription


def actor_for(request) -> str:
    return f"user:{request.user.pk}"


class WebhookSubscriptionAddForm(forms.ModelForm):
    target_url = forms.URLField(max_length=2000, assume_scheme="https")
    event_types = forms.MultipleChoiceField(
        choices=[(name, name) for name in EVENT_TYPES], widget=forms.CheckboxSelectMultiple
    )

    class Meta:
        model = WebhookSubscription
        fields = ["system", "target_url", "event_types", "description"]


@admin.register(WebhookSubscription)
class WebhookSubscriptionAdmin(admin.ModelAdmin):
    list_display = ["__str__", "system", "target_url", "active", "created_at", "deleted_at"]
    list_filter = ["active", "system"]
    readonly_fields = [
        "id",
        "system",
        "target_url",
        "event_types",
        "description",
        "active",
        "secret_hint",
        "created_by",
        "created_at",
        "deleted_at",
    ]
    actions = ["pause", "resume", "unsubscribe"]

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = WebhookSubscriptionAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields if obj is not None else []

    def get_fields(self, request, obj=None):
        if obj is None:
            return WebhookSubscriptionAddForm.Meta.fields
        return self.readonly_fields

    def save_model(self, request, obj, form, change):
        subscription, secret = services.webhook_subscription_create(
            system=form.cleaned_data["system"],
            target_url=form.cleaned_data["target_url"],
            event_types=form.cleaned_data["event_types"],
            description=form.cleaned_data.get("description", ""),
            actor=actor_for(request),
        )
        obj.pk = subscription.pk
        # Shown once: the secret is never displayed again (only its first characters).
        messages.warning(
            request, _("Signing secret, shown only now: %(secret)s") % {"secret": secret}
        )

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # changes go through the actions below, which call the services

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # "unsubscribe" keeps the record of what was sent

    @admin.action(description=_("Pause (hold deliveries)"))
    def pause(self, request, queryset):
        for subscription in queryset:
            services.webhook_subscription_set_active(
                subscription=subscription, active=False, actor=actor_for(request)
            )

    @admin.action(description=_("Resume"))
    def resume(self, request, queryset):
        for subscription in queryset:
            services.webhook_subscription_set_active(
                subscription=subscription, active=True, actor=actor_for(request)
            )

    @admin.action(description=_("Unsubscribe (cancel pending deliveries)"))
    def unsubscribe(self, request, queryset):
        for subscription in queryset:
            services.webhook_subscription_delete(
                subscription=subscription, actor=actor_for(request)
            )


class WebhookAttemptInline(admin.TabularInline):
    model = WebhookAttempt
    extra = 0
    can_delete = False
    fields = ["attempted_at", "status_code", "error", "duration_ms"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = [
        "__str__",
        "event_type",
        "subscription",
        "status",
        "attempts",
        "last_status_code",
        "next_attempt_at",
        "created_at",
    ]
    list_filter = ["status", "event_type"]
    search_fields = ["=event_id", "=ordering_key"]
    list_select_related = ["subscription__system"]
    inlines = [WebhookAttemptInline]
    actions = ["retry_now"]
    fields = [
        "subscription",
        "event_type",
        "event_id",
        "ordering_key",
        "sequence",
        "status",
        "attempts",
        "next_attempt_at",
        "last_status_code",
        "last_error",
        "payload",
        "created_at",
        "delivered_at",
    ]
    readonly_fields = fields

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # the outbox is evidence: read-only, changed only by the services

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.action(description=_("Retry now"), permissions=["view"])
    def retry_now(self, request, queryset):
        queued = sum(
            services.webhook_delivery_retry(delivery=d, actor=actor_for(request)) for d in queryset
        )
        skipped = queryset.count() - queued
        messages.info(
            request,
            _("%(queued)d queued; %(skipped)d already delivered, cancelled or being sent.")
            % {"queued": queued, "skipped": skipped},
        )
