"""Health endpoints for load balancers and orchestrators."""

from __future__ import annotations

import logging

from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

logger = logging.getLogger(__name__)


@never_cache
@require_GET
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
@require_GET
def readyz(request):
    """Ready to serve: the database and the Celery broker answer. 503 with the reason."""
    problems = [p for p in (_check_database(), _check_broker()) if p]
    if problems:
        logger.warning("not ready: %s", "; ".join(problems))
        return JsonResponse({"status": "unavailable", "problems": problems}, status=503)
    return JsonResponse({"status": "ok", "checks": {"database": "ok", "broker": "ok"}})
