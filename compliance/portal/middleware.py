"""Security headers for the portal's pages."""

from __future__ import annotations

from django.conf import settings
from django.utils.cache import add_never_cache_headers


def is_portal_path(path: str) -> bool:
    return path == "/" or path.startswith("/portal/")


class PortalSecurityHeadersMiddleware:
    """A Content-Security-Policy that only allows this site's own scripts, styles and
    forms, so an injected ``<script>`` or a form pointed elsewhere does nothing; and no
    caching, so the back button on a shared computer does not show someone's data after
    they signed out."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if is_portal_path(request.path_info):
            if "Content-Security-Policy" not in response:
                response["Content-Security-Policy"] = settings.PORTAL_CONTENT_SECURITY_POLICY
            if "Cache-Control" not in response:
                add_never_cache_headers(response)
        return response
