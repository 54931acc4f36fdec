"""The accountability pages under /admin/accountability/; every view goes through
``admin.site.admin_view`` (active staff only, others are sent to the admin sign-in)."""

from django.contrib import admin
from django.urls import path

from compliance.workspace import views

app_name = "workspace"


def _staff(view):
    return admin.site.admin_view(view)


urlpatterns = [
    path("", _staff(views.dashboard), name="dashboard"),
    path("ccpa-metrics/", _staff(views.ccpa_metrics), name="ccpa-metrics"),
    path("ccpa-metrics/csv/", _staff(views.ccpa_metrics_csv), name="ccpa-metrics-csv"),
    path("ropa/", _staff(views.ropa), name="ropa"),
    path("ropa/csv/", _staff(views.ropa_csv), name="ropa-csv"),
    path("answer-flags/", _staff(views.answer_flag_stats), name="answer-flags"),
    path("audit/verify/", _staff(views.audit_verify_chain), name="audit-verify"),
]
