"""One error shape for the whole API:

{"error": {"code": "invalid_request", "message": "...",
           "errors": [{"field": "conversations[3].system", "message": "..."}]}}
"""

from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response

from compliance.services import ServiceError

logger = logging.getLogger(__name__)

_CODES = {
    400: "invalid_request",
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
    429: "throttled",
}
_SERVICE_STATUS = {"invalid": 400, "conflict": 409, "permission_denied": 403, "not_found": 404}


def _flatten(detail, prefix: str = "") -> list[dict]:
    """Turn DRF's nested error detail into a flat list of {field, message}."""
    items: list[dict] = []
    if isinstance(detail, dict):
        for key, value in detail.items():
            if key == "non_field_errors":
                field = prefix
            elif isinstance(key, int):  # a ListField's item: "conversations[3]"
                field = f"{prefix}[{key}]"
            elif prefix:
                field = f"{prefix}.{key}"
            else:
                field = str(key)
            items.extend(_flatten(value, field))
    elif isinstance(detail, list):
        if all(not isinstance(v, dict | list) for v in detail):
            items.extend({"field": prefix, "message": str(v)} for v in detail)
        else:
            for index, value in enumerate(detail):
                if value:
                    items.extend(_flatten(value, f"{prefix}[{index}]"))
    else:
        items.append({"field": prefix, "message": str(detail)})
    return items


def error_body(code: str, message: str, errors: list | None = None) -> dict:
    return {"error": {"code": code, "message": message, "errors": errors or []}}


def exception_handler(exc, context):
    if isinstance(exc, ServiceError):
        http_status = _SERVICE_STATUS.get(exc.code, 400)
        errors = [{"field": exc.field, "message": exc.message}] if exc.field else []
        return Response(error_body(_CODES[http_status], exc.message, errors), status=http_status)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound("Not found.")
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    if not isinstance(exc, exceptions.APIException):
        return None  # a bug: let Django log it and answer 500
    headers = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    if getattr(exc, "wait", None):
        headers["Retry-After"] = str(int(exc.wait))
    code = _CODES.get(exc.status_code, "error")
    if isinstance(exc, exceptions.ValidationError):
        errors = _flatten(exc.detail)
        message = "The request is not valid; see errors." if errors else "The request is not valid."
        if len(errors) == 1:
            message = (
                f"{errors[0]['field']}: {errors[0]['message']}"
                if errors[0]["field"]
                else errors[0]["message"]
            )
        return Response(error_body(code, message, errors), status=exc.status_code, headers=headers)
    if isinstance(exc, exceptions.ParseError):
        # DRF's parse message may quote the body; say what is wrong without echoing it.
        return Response(
            error_body(code, "The body is not valid JSON in UTF-8."),
            status=status.HTTP_400_BAD_REQUEST,
        )
    return Response(error_body(code, str(exc.detail)), status=exc.status_code, headers=headers)
