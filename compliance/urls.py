from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from compliance import views
from consent import gpc as consent_gpc
from consent import receipts as consent_receipts
from integrations.opendsr import urls as opendsr_urls

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    # The DPO workspace's accountability pages, inside the admin (docs/workspace.md).
    path("admin/accountability/", include("compliance.workspace.urls")),
    path("admin/", admin.site.urls),
    path(
        "api/schema/",
        SpectacularAPIView.as_view(authentication_classes=[], permission_classes=[]),
        name="api-schema",
    ),
    path(
        "api/docs/",
        SpectacularSwaggerView.as_view(
            url_name="api-schema", authentication_classes=[], permission_classes=[]
        ),
        name="api-docs",
    ),
    path("api/v1/", include("compliance.api.urls")),
    # Consent: the consent check, events, receipts; GPC support and the receipts' public key.
    path("api/v1/", include("consent.urls")),
    path(".well-known/gpc.json", consent_gpc.gpc_json, name="gpc-json"),
    path(".well-known/jwks.json", consent_receipts.jwks_json, name="jwks-json"),
    path("api/v1/", include("integrations.urls")),  # webhooks
    path("api/v1/", include("dsar.urls")),  # data subject requests
    # OpenDSR v2 and the OpenGDPR v1 names it must keep (integrations/opendsr, docs/opendsr.md).
    path("opendsr/v2/", include(opendsr_urls.v2_urlpatterns)),
    path("opengdpr/v1/", include(opendsr_urls.v1_urlpatterns)),
    # The customers' privacy portal: "/" and "/portal/...".
    path("", include("compliance.portal.urls")),
]

handler404 = "compliance.errors.not_found"
handler500 = "compliance.errors.server_error"
