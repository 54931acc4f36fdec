"""Routes of OpenDSR v2 and of its predecessor OpenGDPR v1, whose names must keep working
(section 10.1): the v2 paths answer under both ``requests`` and ``opengdpr_requests``, and
``/opengdpr/v1/`` serves v1 (no ``regulation`` field). A trailing slash is optional: the
specification writes none, some controllers add one."""

from django.urls import re_path

from integrations.opendsr import views

REQUEST_ID = r"(?P<subject_request_id>[^/]+)"

v2_urlpatterns = [
    re_path(r"^discovery/?$", views.DiscoveryView.as_view(), name="opendsr-v2-discovery"),
    re_path(r"^certificate\.pem$", views.CertificateView.as_view(), name="opendsr-v2-certificate"),
    re_path(r"^requests/?$", views.RequestCreateView.as_view(), name="opendsr-v2-requests"),
    re_path(
        rf"^requests/{REQUEST_ID}/?$",
        views.RequestDetailView.as_view(),
        name="opendsr-v2-request",
    ),
    re_path(
        r"^opengdpr_requests/?$",
        views.RequestCreateView.as_view(),
        name="opendsr-v2-opengdpr-requests",
    ),
    re_path(
        rf"^opengdpr_requests/{REQUEST_ID}/?$",
        views.RequestDetailView.as_view(),
        name="opendsr-v2-opengdpr-request",
    ),
]

v1_urlpatterns = [
    re_path(
        r"^discovery/?$", views.DiscoveryView.as_view(api_major=1), name="opengdpr-v1-discovery"
    ),
    re_path(
        r"^certificate\.pem$",
        views.CertificateView.as_view(api_major=1),
        name="opengdpr-v1-certificate",
    ),
    re_path(
        r"^opengdpr_requests/?$",
        views.RequestCreateView.as_view(api_major=1),
        name="opengdpr-v1-requests",
    ),
    re_path(
        rf"^opengdpr_requests/{REQUEST_ID}/?$",
        views.RequestDetailView.as_view(api_major=1),
        name="opengdpr-v1-request",
    ),
]
