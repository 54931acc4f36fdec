"""Request guards that must run before a body is parsed."""

from __future__ import annotations

from django.conf import settings
from django.http import JsonResponse

API_PREFIXES = ("/api/", "/opendsr/", "/opengdpr")


def error_response(status: int, code: str, message: str, errors: list | None = None):
    return JsonResponse(
        {"error": {"code": code, "message": message, "errors": errors or []}}, status=status
    )


class ApiBodyLimitMiddleware:
    """Refuse oversized API bodies with 413 before anything reads them."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path.startswith(API_PREFIXES):
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                return error_response(400, "invalid_request", "Content-Length is not a number.")
            if length > settings.API_MAX_BODY_BYTES:
                return error_response(
                    413,
                    "payload_too_large",
                    f"The body is larger than {settings.API_MAX_BODY_BYTES} bytes; "
                    "send smaller batches.",
                )
        return self.get_response(request)
