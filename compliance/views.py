"""Health endpoints for load balancers and orchestrators."""

from __future__ import annotations

import functools
import logging

from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache

from compliance.middleware import error_response

logger = logging.getLogger(__name__)


def _get_only(view):
    """GET and HEAD only; anything else is a 405 in the API's one JSON error shape, since
    the callers of these endpoints are machines that parse the answer."""

    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        if request.method not in ("GET", "HEAD"):
            response = error_response(405, "method_not_allowed", "Use GET.")
            response["Allow"] = "GET, HEAD"
            return response
        return view(request, *args, **kwargs)

    return wrapper


@never_cache
@_get_only
def healthz(request):
    """The process is alive. Touches nothing else, so it stays cheap."""
    return JsonResponse({"status": "ok"})


def _check_database() -> str | None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:  # any failure means not ready; the reason is reported
        return f"database unreachable ({exc.__class__.__name__})"
    return None


def _check_broker() -> str | None:
    from compliance.celery import app

    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=2)
    except Exception as exc:  # any failure means not ready; the reason is reported
        return f"broker unreachable ({exc.__class__.__name__})"
    return None


@never_cache
@_get_only
def readyz(request):
    """Ready to serve: the database and the Celery broker answer. 503 with the reason."""
    problems = [p for p in (_check_database(), _check_broker()) if p]
    if problems:
        logger.warning("not ready: %s", "; ".join(problems))
        return JsonResponse({"status": "unavailable", "problems": problems}, status=503)
    return JsonResponse({"status": "ok", "checks": {"database": "ok", "broker": "ok"}})
