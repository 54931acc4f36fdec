"""REST endpoints of data subject requests, under /api/v1/requests/.

An identity that matches nobody gets exactly the answer one that matches gets: the API never
tells a caller whether a person is known. A client bound to a system sees only the requests
it filed; anything else is a 404, as if it did not exist."""

from __future__ import annotations

from django.db import transaction
from django.http import FileResponse, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.loader import render_to_string
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import permissions, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from compliance.api.errors import error_body
from compliance.api.pagination import CursorPagination, paginated_response
from compliance.api.schema import ErrorResponseSerializer
from compliance.api.serializers import IdentitiesSerializer, StrictSerializer
from compliance.api.views import GPC_HEADER
from compliance.models import IdentityType
from compliance.subject_hooks import subject_identification_check, subject_identified
from dsar import api_examples, services
from dsar.links import (
    LinkInvalid,
    certificate_check,
    certificate_url,
    download_check,
    download_url,
)
from dsar.models import Channel, DataSubjectRequest, Regulation, RequestType
from dsar.selectors import request_progress, requests_visible_to


def actor_for(request) -> str:
    return f"api:{request.user.name}"


# --- serializers ---------------------------------------------------------------------------


class AgentInSerializer(StrictSerializer):
    name = serializers.CharField(max_length=200)
    permission_note = serializers.CharField(
        max_length=2000,
        help_text="Where the consumer's signed permission is kept (CCPA §7063).",
    )


class CorrectionInSerializer(StrictSerializer):
    type = serializers.ChoiceField(choices=IdentityType.choices)
    old = serializers.CharField(max_length=320)
    new = serializers.CharField(max_length=320)


class DetailsInSerializer(StrictSerializer):
    corrections = serializers.ListField(
        child=CorrectionInSerializer(), required=False, max_length=20
    )
    statement = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=10_000,
        help_text="A supplementary statement kept with the subject's data (GDPR Art. 16).",
    )


class RequestCreateSerializer(StrictSerializer):
    type = serializers.ChoiceField(choices=RequestType.choices)
    identity = IdentitiesSerializer(
        help_text="Exactly one of customer_id, email, phone: who the request is for."
    )
    regulation = serializers.ChoiceField(
        choices=Regulation.choices,
        required=False,
        help_text="Defaults to the subject's jurisdiction (California: ccpa, else gdpr). "
        "Name it to get the same deadline whether or not the person is known.",
    )
    agent = AgentInSerializer(required=False, help_text="An authorized agent (CCPA §7063).")
    details = DetailsInSerializer(required=False, help_text="Rectification only.")


class RequestAcceptedSerializer(serializers.Serializer):
    """What the caller learns on filing; the same whether or not the identity is known."""

    id = serializers.UUIDField()
    type = serializers.CharField()
    status = serializers.CharField()
    duplicate = serializers.BooleanField(
        help_text="An open request of this type already exists; this one is not run."
    )
    received_at = serializers.DateTimeField()


class ProgressSerializer(serializers.Serializer):
    sources_total = serializers.IntegerField()
    sources_done = serializers.IntegerField()
    sources_failed = serializers.IntegerField()
    records_found = serializers.IntegerField()


class DownloadSerializer(serializers.Serializer):
    url = serializers.CharField()
    expires_at = serializers.DateTimeField()
    sha256 = serializers.CharField()
    size = serializers.IntegerField()


class RequestOutSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    type = serializers.CharField()
    status = serializers.CharField()
    regulation = serializers.CharField()
    channel = serializers.CharField()
    received_at = serializers.DateTimeField()
    due_at = serializers.DateTimeField()
    extended = serializers.BooleanField()
    extension_reason = serializers.CharField()
    confirmation_due_at = serializers.DateTimeField(allow_null=True)
    verified = serializers.BooleanField()
    completed_at = serializers.DateTimeField(allow_null=True)
    rejection_reason = serializers.CharField()
    duplicate = serializers.BooleanField()
    progress = ProgressSerializer()
    download = DownloadSerializer(allow_null=True)
    certificate_url = serializers.CharField(allow_null=True)


def _accepted(dsr: DataSubjectRequest) -> dict:
    return {
        "id": dsr.pk,
        "type": dsr.type,
        "status": dsr.status,
        "duplicate": dsr.duplicate_of_id is not None,
        "received_at": dsr.received_at,
    }


def _download(dsr: DataSubjectRequest) -> dict | None:
    if (
        not dsr.export_path
        or dsr.export_deleted_at is not None
        or dsr.export_expires_at is None
        or dsr.export_expires_at <= timezone.now()
    ):
        return None
    return {
        "url": download_url(dsr),
        "expires_at": dsr.export_expires_at,
        "sha256": dsr.export_sha256,
        "size": dsr.export_size or 0,
    }


def _out(dsr: DataSubjectRequest) -> dict:
    has_certificate = DataSubjectRequest.objects.filter(
        pk=dsr.pk, certificate__isnull=False
    ).exists()
    return {
        "id": dsr.pk,
        "type": dsr.type,
        "status": dsr.status,
        "regulation": dsr.regulation,
        "channel": dsr.channel,
        "received_at": dsr.received_at,
        "due_at": dsr.due_at,
        "extended": dsr.extended_at is not None,
        "extension_reason": dsr.extension_reason,
        "confirmation_due_at": dsr.confirmation_due_at,
        "verified": dsr.verified_at is not None,
        "completed_at": dsr.completed_at,
        "rejection_reason": dsr.rejection_reason,
        "duplicate": dsr.duplicate_of_id is not None,
        "progress": request_progress(dsr),
        "download": _download(dsr),
        "certificate_url": certificate_url(dsr) if has_certificate else None,
    }


class CodeInSerializer(StrictSerializer):
    code = serializers.CharField(max_length=20)


# --- views ---------------------------------------------------------------------------------


class RequestListCreateView(APIView):
    scopes_by_method = {"GET": ["dsar:read"], "POST": ["dsar:write"]}
    pagination_class = CursorPagination

    @extend_schema(
        operation_id="requests_create",
        examples=api_examples.REQUESTS_CREATE,
        summary="File a data subject request",
        description=(
            "Access, portability, erasure, rectification, restriction, objection, opt-out of "
            "sale/sharing or limit of sensitive use, for the person named by one identity. "
            "The answer is the same whether or not the identity matches anyone. A client "
            "with the `dsar:verified` scope files requests whose identity it has verified; "
            "others are verified by a code emailed to the subject "
            "(`POST /api/v1/requests/{id}/verify/`). Opt-out and limit requests need no "
            "verification (CCPA). `Sec-GPC: 1` records an opt-out of sale/sharing for the "
            "person if known; the answer does not say whether it did."
        ),
        request=RequestCreateSerializer,
        parameters=[GPC_HEADER],
        responses={202: RequestAcceptedSerializer, 400: ErrorResponseSerializer},
    )
    def post(self, request):
        wanted = subject_identification_check(request)
        serializer = RequestCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        agent = data.get("agent") or {}
        with transaction.atomic():
            dsr = services.request_create(
                type=data["type"],
                identity=data["identity"],
                channel=Channel.API,
                actor=actor_for(request),
                regulation=data.get("regulation"),
                filed_by=request.user,
                pre_verified=request.user.has_scope("dsar:verified"),
                agent_name=agent.get("name", ""),
                agent_permission_note=agent.get("permission_note", ""),
                details=data.get("details"),
            )
            if wanted and dsr.subject is not None:
                subject_identified(
                    request,
                    subjects=[dsr.subject],
                    actor=actor_for(request),
                    source="api:requests_create",
                )
        return Response(
            RequestAcceptedSerializer(_accepted(dsr)).data, status=status.HTTP_202_ACCEPTED
        )

    @extend_schema(
        operation_id="requests_list",
        examples=api_examples.REQUESTS_LIST,
        summary="List the requests this client may see",
        responses=RequestOutSerializer(many=True),
    )
    def get(self, request):
        queryset = requests_visible_to(request.user)
        return paginated_response(
            view=self,
            request=request,
            queryset=queryset,
            serialize=lambda page: RequestOutSerializer(map(_out, page), many=True).data,
        )


def _visible(request, request_id) -> DataSubjectRequest:
    return get_object_or_404(requests_visible_to(request.user), pk=request_id)


class RequestDetailView(APIView):
    required_scopes = ["dsar:read"]

    @extend_schema(
        operation_id="requests_retrieve",
        examples=api_examples.REQUEST_RETRIEVE,
        summary="State, progress and deadline of a request",
        responses={200: RequestOutSerializer, 404: ErrorResponseSerializer},
    )
    def get(self, request, request_id):
        return Response(RequestOutSerializer(_out(_visible(request, request_id))).data)


class RequestCancelView(APIView):
    required_scopes = ["dsar:write"]

    @extend_schema(
        operation_id="requests_cancel",
        examples=api_examples.REQUEST_CANCEL,
        summary="Cancel a request that has not started",
        request=None,
        responses={
            200: RequestOutSerializer,
            404: ErrorResponseSerializer,
            409: ErrorResponseSerializer,
        },
    )
    def post(self, request, request_id):
        dsr = services.request_cancel(
            request=_visible(request, request_id), actor=actor_for(request)
        )
        return Response(RequestOutSerializer(_out(dsr)).data)


class RequestVerifyView(APIView):
    required_scopes = ["dsar:write"]

    @extend_schema(
        operation_id="requests_verify",
        examples=api_examples.REQUEST_VERIFY,
        summary="Verify a request with the code emailed to the subject",
        request=CodeInSerializer,
        responses={
            200: RequestOutSerializer,
            400: ErrorResponseSerializer,
            404: ErrorResponseSerializer,
            409: ErrorResponseSerializer,
        },
    )
    def post(self, request, request_id):
        serializer = CodeInSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        dsr = services.verification_code_check(
            request=_visible(request, request_id),
            code=serializer.validated_data["code"],
            actor=actor_for(request),
        )
        return Response(RequestOutSerializer(_out(dsr)).data)


class RequestResendCodeView(APIView):
    required_scopes = ["dsar:write"]

    @extend_schema(
        operation_id="requests_resend_code",
        summary="Email the subject a new verification code",
        request=None,
        responses={202: OpenApiResponse(description="Sent if there is somewhere to send it.")},
    )
    def post(self, request, request_id):
        services.verification_code_send(
            request=_visible(request, request_id), actor=actor_for(request)
        )
        # The same answer whether or not an email could be sent: no hint about the person.
        return Response(status=status.HTTP_202_ACCEPTED)


TOKEN_PARAMETER = OpenApiParameter(
    "token", OpenApiTypes.STR, required=True, description="The signed token from the link."
)
GPC_BROWSER_HEADER = OpenApiParameter(
    "Sec-GPC",
    OpenApiTypes.STR,
    location=OpenApiParameter.HEADER,
    required=False,
    description=(
        "Global Privacy Control, sent by the customer's browser. `1` records an opt-out of "
        "sale/sharing for the subject of the request; any other value is no signal."
    ),
)


def _invalid_link() -> Response:
    return Response(
        error_body("not_found", "This link is not valid or has expired."),
        status=status.HTTP_404_NOT_FOUND,
    )


class RequestDownloadView(APIView):
    """The link itself is the credential: the subject who received it by email has no API
    key. It is signed, expires, and names the request and the subject it is for."""

    authentication_classes: list = []
    permission_classes = [permissions.AllowAny]
    required_scopes: list = []

    @extend_schema(
        operation_id="requests_download",
        summary="Download the export package (ZIP) through a signed link",
        parameters=[TOKEN_PARAMETER, GPC_BROWSER_HEADER],
        auth=[],
        responses={
            (200, "application/zip"): OpenApiTypes.BINARY,
            404: ErrorResponseSerializer,
            410: ErrorResponseSerializer,
        },
    )
    def get(self, request, request_id):
        dsr = DataSubjectRequest.objects.filter(pk=request_id).first()
        if dsr is None:
            return _invalid_link()
        try:
            download_check(dsr, request.query_params.get("token", ""))
        except LinkInvalid:
            return _invalid_link()
        # The customer's own browser follows the emailed link, as it opens the portal: an
        # odd Sec-GPC value is no signal here, never an error. (The certificate's link names
        # a person who was erased: there is nobody left to opt out.)
        if dsr.subject is not None and subject_identification_check(request, strict=False):
            subject_identified(
                request,
                subjects=[dsr.subject],
                actor=f"subject:{dsr.subject_id}",
                source="link:requests_download",
                strict=False,
            )
        if _download(dsr) is None:
            return Response(
                error_body("gone", "The package has expired and was deleted; file a new request."),
                status=status.HTTP_410_GONE,
            )
        try:
            handle = open(dsr.export_path, "rb")  # noqa: SIM115 - FileResponse closes it
        except FileNotFoundError:
            return Response(
                error_body("gone", "The package is no longer available; file a new request."),
                status=status.HTTP_410_GONE,
            )
        response = FileResponse(
            handle,
            as_attachment=True,
            filename=f"privacy-export-{str(dsr.pk)[:8]}.zip",
            content_type="application/zip",
        )
        response["Cache-Control"] = "no-store"
        return response


class RequestCertificateView(APIView):
    authentication_classes: list = []
    permission_classes = [permissions.AllowAny]
    required_scopes: list = []

    @extend_schema(
        operation_id="requests_certificate",
        examples=api_examples.CERTIFICATE,
        summary="The certificate of erasure (JSON, or a readable page with as=html)",
        parameters=[
            TOKEN_PARAMETER,
            # Not "format": DRF reserves that name to pick a renderer.
            OpenApiParameter("as", OpenApiTypes.STR, enum=["json", "html"]),
        ],
        auth=[],
        responses={200: OpenApiTypes.OBJECT, 404: ErrorResponseSerializer},
    )
    def get(self, request, request_id):
        dsr = DataSubjectRequest.objects.filter(pk=request_id).first()
        if dsr is None:
            return _invalid_link()
        try:
            certificate_check(dsr, request.query_params.get("token", ""))
        except LinkInvalid:
            return _invalid_link()
        certificate = getattr(dsr, "certificate", None)
        if certificate is None:
            return _invalid_link()
        if request.query_params.get("as") == "html":
            html = render_to_string("dsar/certificate.html", {"body": certificate.body})
            return HttpResponse(html, content_type="text/html; charset=utf-8")
        return Response(certificate.body)
