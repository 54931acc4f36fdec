"""Error pages: JSON under the API prefixes, plain pages elsewhere. Never a traceback."""

from __future__ import annotations

from django.http import HttpResponseNotFound, HttpResponseServerError

from compliance.middleware import API_PREFIXES, error_response


def not_found(request, exception=None):
    if request.path.startswith(API_PREFIXES):
        return error_response(404, "not_found", "Not found.")
    return HttpResponseNotFound("<h1>Not found</h1><p>This page does not exist.</p>")


def server_error(request):
    if request.path.startswith(API_PREFIXES):
        return error_response(
            500, "server_error", "Something went wrong on our side; it has been logged."
        )
    return HttpResponseServerError(
        "<h1>Something went wrong</h1><p>It has been logged. Please try again later.</p>"
    )
