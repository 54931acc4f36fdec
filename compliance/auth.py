"""API key authentication and per-view scopes for the REST API."""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, permissions

from compliance.models import ApiKey
from compliance.services import api_key_authenticate

# last_used_at is written at most this often per key, so the hot path does not write.
LAST_USED_RESOLUTION_SECONDS = 300


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer <key>``. Authenticates the key's ApiClient as request.user."""

    keyword = "bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request)
        if not header:
            return None
        try:
            keyword, raw = header.decode("ascii").split(None, 1)
        except (UnicodeDecodeError, ValueError):
            raise exceptions.AuthenticationFailed(
                "Send the API key as 'Authorization: Bearer <key>'."
            ) from None
        if keyword.lower() != self.keyword:
            raise exceptions.AuthenticationFailed(
                "Send the API key as 'Authorization: Bearer <key>'."
            )
        key = api_key_authenticate(raw.strip())
        if key is None:
            raise exceptions.AuthenticationFailed("This API key is unknown or revoked.")
        now = timezone.now()
        if key.last_used_at is None or (now - key.last_used_at).total_seconds() > (
            LAST_USED_RESOLUTION_SECONDS
        ):
            ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        return key.client, key

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="api"'


class HasScopes(permissions.BasePermission):
    """Every view names ``required_scopes`` (or ``scopes_by_method``); a key without them is
    refused. A view that names none is refused too, so a forgotten declaration fails closed."""

    message = "This API key lacks the scope this endpoint needs."

    def has_permission(self, request, view) -> bool:
        client = request.user
        if client is None or not getattr(client, "is_authenticated", False):
            raise exceptions.NotAuthenticated("Authenticate with 'Authorization: Bearer <key>'.")
        by_method = getattr(view, "scopes_by_method", None)
        if by_method is not None:
            required = by_method.get(request.method, by_method.get("*"))
        else:
            required = getattr(view, "required_scopes", None)
        if required is None:
            return False
        missing = [scope for scope in required if not client.has_scope(scope)]
        if missing:
            self.message = f"This API key lacks the scope: {', '.join(missing)}."
            return False
        return True


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "compliance.auth.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "An API key."}
