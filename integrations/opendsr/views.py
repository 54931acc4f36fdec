"""The OpenDSR endpoints: ``/opendsr/v2/`` (and the OpenGDPR v1 names, which must keep
working: ``/opengdpr_requests`` and ``/opengdpr/v1/``).

They follow the OpenDSR specification rather than this service's REST conventions: their
own error shape (``{"error": {"code": <HTTP status>, "message", "errors": [{"domain",
"reason", "message"}]}}``), every answer signed in ``X-OpenDSR-Signature`` (and
``X-OpenGDPR-Signature``), and no place in the ``/api/`` OpenAPI schema (the specification
is their contract). Authentication and scopes are the API's: ``Authorization: Bearer <key>``.
"""

from __future__ import annotations

import base64
import json

from django.conf import settings
from django.db import transaction
from django.http import Http404, HttpResponse
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, permissions
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.views import APIView

from compliance.services import ConflictError, ForbiddenError, ServiceError
from compliance.subject_hooks import subject_identification_check, subject_identified
from integrations.opendsr import services
from integrations.opendsr.callbacks import (
    effective_request,
    opendsr_status_of,
    rfc3339,
    status_body,
)
from integrations.opendsr.models import OpenDsrRequest
from integrations.opendsr.parsing import (
    IDENTITY_FORMATS,
    SUBJECT_REQUEST_TYPES,
    SUPPORTED_IDENTITY_TYPES,
    UUID4,
    OpenDsrInvalid,
    submission_parse,
)
from integrations.opendsr.selectors import opendsr_request_of
from integrations.opendsr.signing import SigningUnavailable, processor_identity, signature_headers

NOT_FOUND = "The specified subject request id could not be found."
CERTIFICATE_URL_NAMES = {2: "opendsr-v2-certificate", 1: "opengdpr-v1-certificate"}


def actor_for(request) -> str:
    return f"api:{request.user.name}"


def opendsr_response(body: dict, *, status: int, headers: dict | None = None) -> HttpResponse:
    """JSON in the exact bytes that are signed: the signature covers the raw body."""
    content = json.dumps(body, separators=(",", ":")).encode()
    response = HttpResponse(content, status=status, content_type="application/json")
    try:
        for name, value in signature_headers(content).items():
            response[name] = value
    except SigningUnavailable:
        pass  # only the 503 that says so goes out unsigned
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def opendsr_error(
    status: int, message: str, *, domain: str, reason: str, headers: dict | None = None
) -> HttpResponse:
    body = {
        "error": {
            "code": status,
            "message": message,
            "errors": [{"domain": domain, "reason": reason, "message": message}],
        }
    }
    return opendsr_response(
        body, status=status, headers={"Cache-Control": "no-store", **(headers or {})}
    )


def opendsr_exception_handler(exc, context):
    """Every error of these endpoints in the OpenDSR shape (section 7.6). Input errors are
    400, as the specification says; authentication, scopes, unknown ids and rate limits keep
    their HTTP status so that clients and proxies understand them."""
    if isinstance(exc, OpenDsrInvalid):
        return opendsr_error(400, exc.message, domain="Validation", reason=exc.reason)
    if isinstance(exc, ConflictError):
        return opendsr_error(400, exc.message, domain="Request", reason="conflict")
    if isinstance(exc, ForbiddenError):
        return opendsr_error(403, exc.message, domain="Authorization", reason="permission_denied")
    if isinstance(exc, ServiceError):
        return opendsr_error(400, exc.message, domain="Validation", reason=exc.code)
    if isinstance(exc, SigningUnavailable):
        return opendsr_error(503, str(exc), domain="Service", reason="signing_unavailable")
    if isinstance(exc, Http404):
        return opendsr_error(404, NOT_FOUND, domain="Request", reason="not_found")
    if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        headers = {"WWW-Authenticate": exc.auth_header} if getattr(exc, "auth_header", "") else {}
        status = 401 if headers else 403
        return opendsr_error(
            status,
            str(exc.detail),
            domain="Authentication",
            reason="not_authenticated",
            headers=headers,
        )
    if isinstance(exc, exceptions.PermissionDenied):
        return opendsr_error(
            403, str(exc.detail), domain="Authorization", reason="permission_denied"
        )
    if isinstance(exc, exceptions.Throttled):
        return opendsr_error(
            429,
            "Too many requests; retry after the time in Retry-After.",
            domain="Request",
            reason="throttled",
            headers={"Retry-After": str(int(exc.wait or 1))},
        )
    if isinstance(exc, exceptions.MethodNotAllowed):
        return opendsr_error(405, str(exc.detail), domain="Request", reason="method_not_allowed")
    if isinstance(exc, exceptions.APIException):
        return opendsr_error(exc.status_code, str(exc.detail), domain="Request", reason="invalid")
    return None  # a bug: Django logs it and answers 500


class _JsonOnly(BaseContentNegotiation):
    """The answers are JSON whatever the Accept header says (the specification's examples
    send ``Accept: application/json``; a controller that sends another must not get 406)."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class OpenDsrView(APIView):
    api_major = 2
    content_negotiation_class = _JsonOnly

    def get_exception_handler(self):
        return opendsr_exception_handler

    def initial(self, request, *args, **kwargs):
        # A method the protocol does not define is a 405 for everyone, before the scope
        # check would call it a 403.
        if request.method.lower() not in self.http_method_names:
            raise exceptions.MethodNotAllowed(request.method)
        super().initial(request, *args, **kwargs)

    def base_url(self, request) -> str:
        return settings.DSAR_PUBLIC_BASE_URL.rstrip("/") or request.build_absolute_uri("/")[:-1]

    def link_or_404(self, request, subject_request_id: str) -> OpenDsrRequest:
        if not UUID4.fullmatch(subject_request_id):
            raise OpenDsrInvalid(
                "subject_request_id must be a lowercase UUID v4.", field="subject_request_id"
            )
        # Another controller's request is answered exactly as one that does not exist.
        link = opendsr_request_of(client=request.user, subject_request_id=subject_request_id)
        if link is None:
            raise Http404()
        return link


@extend_schema(exclude=True)
class DiscoveryView(OpenDsrView):
    """Section 6: what this processor supports. Public: a controller checking a callback's
    signature reaches the certificate from here."""

    http_method_names = ["get"]
    authentication_classes: list = []
    permission_classes = [permissions.AllowAny]
    throttle_classes: list = []

    def get(self, request):
        body = {
            "api_version": f"{self.api_major}.0",
            "supported_identities": [
                {"identity_type": identity_type, "identity_format": identity_format}
                for identity_type in SUPPORTED_IDENTITY_TYPES
                for identity_format in IDENTITY_FORMATS
            ],
            "supported_subject_request_types": list(SUBJECT_REQUEST_TYPES),
            "processor_certificate": request.build_absolute_uri(
                reverse(CERTIFICATE_URL_NAMES[self.api_major])
            ),
        }
        return opendsr_response(body, status=200)


@extend_schema(exclude=True)
class CertificateView(OpenDsrView):
    """The X.509 certificate whose key signs callbacks and answers, in PEM."""

    http_method_names = ["get"]
    authentication_classes: list = []
    permission_classes = [permissions.AllowAny]
    throttle_classes: list = []

    def get(self, request):
        response = HttpResponse(
            processor_identity().certificate_pem, content_type="application/x-pem-file"
        )
        response["Cache-Control"] = "public, max-age=3600"
        return response


@extend_schema(exclude=True)
class RequestCreateView(OpenDsrView):
    """Section 7. The controller vouches for the subject's identity (it verified the
    request before sending it, section 3.2), hence ``dsar:verified`` besides ``dsar:write``:
    the protocol has no step where the subject could prove it here.

    A ``Sec-GPC: 1`` the controller relays from the consumer's browser records an opt-out
    of sale/sharing for the subject, if known, with the request (CCPA §7025); any other
    value is a 400 (domain Validation) and files nothing."""

    http_method_names = ["post"]
    required_scopes = ["dsar:write", "dsar:verified"]

    def post(self, request):
        wanted = subject_identification_check(request)
        raw = request.body
        if len(raw) > settings.OPENDSR_MAX_BODY_BYTES:
            return opendsr_error(
                413,
                f"The body is larger than {settings.OPENDSR_MAX_BODY_BYTES} bytes.",
                domain="Validation",
                reason="too_large",
            )
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            raise OpenDsrInvalid("The body is not valid JSON.", reason="malformed") from None
        submission = submission_parse(data, major=self.api_major)
        with transaction.atomic():
            link = services.opendsr_request_create(
                client=request.user, submission=submission, actor=actor_for(request)
            )
            if wanted and link.request.subject is not None:
                subject_identified(
                    request,
                    subjects=[link.request.subject],
                    actor=actor_for(request),
                    source="opendsr:requests",
                )
        dsr = effective_request(link)
        body = {
            "controller_id": str(link.client_id),
            "expected_completion_time": rfc3339(dsr.due_at),
            "received_time": rfc3339(link.request.received_at),
            # Section 7.3: the whole request as received, so the controller can prove what
            # the processor acknowledged. Not stored here.
            "encoded_request": base64.b64encode(raw).decode("ascii"),
            "subject_request_id": str(link.subject_request_id),
        }
        return opendsr_response(body, status=201)


@extend_schema(exclude=True)
class RequestDetailView(OpenDsrView):
    """Section 8 (status) and 9 (cancellation while pending)."""

    http_method_names = ["get", "delete"]
    scopes_by_method = {"GET": ["dsar:read"], "DELETE": ["dsar:write"]}

    def get(self, request, subject_request_id: str):
        link = self.link_or_404(request, subject_request_id)
        dsr = effective_request(link)
        body = status_body(
            link,
            dsr=dsr,
            status=opendsr_status_of(link, dsr),
            base=self.base_url(request),
        )
        return opendsr_response(body, status=200)

    def delete(self, request, subject_request_id: str):
        link = self.link_or_404(request, subject_request_id)
        services.opendsr_request_cancel(link=link, actor=actor_for(request))
        body = {
            "controller_id": str(link.client_id),
            "subject_request_id": str(link.subject_request_id),
            "received_time": rfc3339(timezone.now()),
            "api_version": link.api_version,
        }
        return opendsr_response(body, status=202)
