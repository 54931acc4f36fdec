"""API routes of data subject requests, included under /api/v1/."""

from django.urls import path

from dsar import api

urlpatterns = [
    path("requests/", api.RequestListCreateView.as_view(), name="api-dsar-requests"),
    path("requests/<uuid:request_id>/", api.RequestDetailView.as_view(), name="api-dsar-request"),
    path(
        "requests/<uuid:request_id>/cancel/",
        api.RequestCancelView.as_view(),
        name="api-dsar-cancel",
    ),
    path(
        "requests/<uuid:request_id>/verify/",
        api.RequestVerifyView.as_view(),
        name="api-dsar-verify",
    ),
    path(
        "requests/<uuid:request_id>/verification-code/",
        api.RequestResendCodeView.as_view(),
        name="api-dsar-resend-code",
    ),
    path(
        "requests/<uuid:request_id>/download/",
        api.RequestDownloadView.as_view(),
        name="api-dsar-download",
    ),
    path(
        "requests/<uuid:request_id>/certificate/",
        api.RequestCertificateView.as_view(),
        name="api-dsar-certificate",
    ),
]
