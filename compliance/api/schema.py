"""OpenAPI description of the API's one error shape (see compliance.api.errors).

Views name ``ErrorResponse`` for the errors specific to them (a 409 on a duplicate, a 404
on an unknown id). The errors every endpoint can answer (a missing key, a missing scope,
the rate limit, a malformed body) are added to every operation by ``add_default_errors``,
a drf-spectacular post-processing hook, so an endpoint added by any app is described
completely without repeating them.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, extend_schema_serializer
from rest_framework import serializers

ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}

# The same shape as the serializers below, for the hook when no view has named them yet.
ERROR_COMPONENTS = {
    "ErrorItem": {
        "type": "object",
        "properties": {
            "field": {"type": "string"},
            "message": {"type": "string"},
        },
        "required": ["field", "message"],
    },
    "ErrorBody": {
        "type": "object",
        "properties": {
            "code": {"type": "string"},
            "message": {"type": "string"},
            "errors": {"type": "array", "items": {"$ref": "#/components/schemas/ErrorItem"}},
        },
        "required": ["code", "message", "errors"],
    },
    "ErrorResponse": {
        "type": "object",
        "properties": {"error": {"$ref": "#/components/schemas/ErrorBody"}},
        "required": ["error"],
    },
}


class ErrorItemSerializer(serializers.Serializer):
    field = serializers.CharField(
        allow_blank=True,
        help_text="The input at fault, e.g. `conversations[3].system` or `Idempotency-Key`; "
        "empty when the error concerns the request as a whole.",
    )
    message = serializers.CharField(help_text="What is wrong with it, for a developer.")


class ErrorBodySerializer(serializers.Serializer):
    code = serializers.CharField(
        help_text="Stable and machine-readable: `invalid_request`, `not_authenticated`, "
        "`permission_denied`, `not_found`, `method_not_allowed`, `not_acceptable`, "
        "`conflict`, `payload_too_large`, `unsupported_media_type`, `unprocessable`, "
        "`throttled`, `server_error`."
    )
    message = serializers.CharField(help_text="A sentence for a developer; never personal data.")
    errors = ErrorItemSerializer(many=True, help_text="One entry per invalid input; may be empty.")


@extend_schema_serializer(
    examples=[
        OpenApiExample(
            "A validation error",
            value={
                "error": {
                    "code": "invalid_request",
                    "message": "identities.email: Enter a valid email address.",
                    "errors": [
                        {"field": "identities.email", "message": "Enter a valid email address."}
                    ],
                }
            },
        )
    ]
)
class ErrorResponseSerializer(serializers.Serializer):
    """The body of every 4xx and 5xx answer."""

    error = ErrorBodySerializer()


# status: (description, applies(operation, path) -> bool)
_DEFAULT_ERRORS = {
    "400": "The request is not valid (body, query or headers); see `error.errors`.",
    "401": "No API key, or an unknown or revoked one.",
    "403": "The API key lacks the scope this endpoint needs, or may not act for this system.",
    "404": "Not found (an unknown id, an invalid pagination cursor).",
    "406": "The Accept header asks for something other than JSON.",
    "413": "The body is larger than API_MAX_BODY_BYTES.",
    "415": "The body is not JSON.",
    "422": "The Idempotency-Key was already used with a different request.",
    "429": "This API key sent too many requests; retry after `Retry-After` seconds.",
}
_BODY_ONLY = {"413", "415"}


def _has_idempotency_key(operation: dict) -> bool:
    return any(
        p.get("in") == "header" and p.get("name", "").lower() == "idempotency-key"
        for p in operation.get("parameters", [])
    )


def add_default_errors(result, generator, request, public):
    """drf-spectacular post-processing hook: every operation documents the errors any
    endpoint can answer, in the one error shape, unless it documents them itself."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    for name, component in ERROR_COMPONENTS.items():
        schemas.setdefault(name, component)
    for path_item in result.get("paths", {}).values():
        for method, operation in path_item.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            responses = operation.setdefault("responses", {})
            has_body = "requestBody" in operation
            for code, description in _DEFAULT_ERRORS.items():
                if code in _BODY_ONLY and not has_body:
                    continue
                if code == "422" and not _has_idempotency_key(operation):
                    continue
                response = responses.setdefault(
                    code,
                    {
                        "description": description,
                        "content": {"application/json": {"schema": ERROR_REF}},
                    },
                )
                if code == "429":
                    response.setdefault("headers", {})["Retry-After"] = {
                        "schema": {"type": "integer"},
                        "description": "Seconds to wait before the next request.",
                    }
    return result
