"""API routes of the consent app, included under /api/v1/. The two /.well-known/ documents
(gpc.json and jwks.json) are routed in compliance/urls.py, at the site root."""

from django.urls import path

from consent import api

urlpatterns = [
    # GET served by the hot path when it can (consent/hotpath.py), the rest by the view.
    path("consent/check", api.consent_check_route, name="api-consent-check"),
    path("consent/events/", api.ConsentEventCreateView.as_view(), name="api-consent-events"),
    path("consent/purposes/", api.PurposeListView.as_view(), name="api-consent-purposes"),
    path(
        "consent/receipts/<uuid:receipt_id>",
        api.ConsentReceiptView.as_view(),
        name="api-consent-receipt",
    ),
    path(
        "subjects/<uuid:subject_id>/consents/",
        api.SubjectConsentsView.as_view(),
        name="api-subject-consents",
    ),
]
