from django.urls import path

from integrations import api

urlpatterns = [
    path("webhooks/", api.WebhookListCreateView.as_view(), name="api-webhooks"),
    path("webhooks/event-types/", api.WebhookEventTypesView.as_view(), name="api-webhook-events"),
    path("webhooks/<uuid:webhook_id>/", api.WebhookDetailView.as_view(), name="api-webhook"),
]
