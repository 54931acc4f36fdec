"""Core REST endpoints: conversation ingest and data subjects."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from compliance.api import examples
from compliance.api.errors import error_body
from compliance.api.pagination import CursorPagination, paginated_response
from compliance.api.schema import ErrorResponseSerializer
from compliance.api.serializers import (
    ConversationDetailSerializer,
    ConversationOutSerializer,
    IngestBatchSerializer,
    IngestResultSerializer,
    LogSourceOutSerializer,
    SubjectCreateSerializer,
    SubjectLookupSerializer,
    SubjectOutSerializer,
)
from compliance.identities import InvalidIdentity, normalize_identity, parse_identity_ref
from compliance.ingest import conversations_ingest
from compliance.models import LogSource
from compliance.selectors import conversations_visible, subject_find_by_identity, subject_list
from compliance.services import subject_create
from integrations.idempotency import idempotent


def actor_for(request) -> str:
    return f"api:{request.user.name}"


# The old name, still imported by other apps' views; new code names ErrorResponseSerializer.
ErrorSerializer = ErrorResponseSerializer


INGEST_EXAMPLE = {
    "conversations": [
        {
            "system": "shop-assistant",
            "conversation_id": "c-1842",
            "subject": {"customer_id": "C-1001"},
            "started_at": "2026-11-20T09:14:00Z",
            "disclosure_version": 2,
            "disclosure_shown_at": "2026-11-20T09:14:00Z",
            "messages": [
                {
                    "sequence": 0,
                    "role": "assistant",
                    "text": "Hi! I'm an AI assistant.",
                    "sent_at": "2026-11-20T09:14:00Z",
                },
                {
                    "sequence": 1,
                    "role": "customer",
                    "text": "Where is my order 5512?",
                    "sent_at": "2026-11-20T09:14:09Z",
                },
            ],
        }
    ]
}


class ConversationIngestView(APIView):
    scopes_by_method = {"POST": ["logs:write"], "GET": ["logs:read"]}
    pagination_class = CursorPagination

    @extend_schema(
        operation_id="conversations_list",
        examples=examples.CONVERSATIONS_LIST,
        summary="List conversations in the built-in log store",
        description="Newest first. A client bound to a system sees only that system's.",
        parameters=[
            OpenApiParameter("subject", OpenApiTypes.UUID, description="Only this subject's."),
            OpenApiParameter("system", OpenApiTypes.STR, description="Only this system's slug."),
        ],
        responses=ConversationOutSerializer(many=True),
    )
    def get(self, request):
        queryset = conversations_visible(client=request.user)
        form = ConversationFilterSerializer(data=request.query_params)
        form.is_valid(raise_exception=True)
        if form.validated_data.get("subject"):
            queryset = queryset.filter(subject_id=form.validated_data["subject"])
        if form.validated_data.get("system"):
            queryset = queryset.filter(system__slug=form.validated_data["system"])
        return paginated_response(
            view=self,
            request=request,
            queryset=queryset,
            serialize=lambda page: ConversationOutSerializer(page, many=True).data,
        )

    @extend_schema(
        operation_id="conversations_ingest",
        summary="Push conversations and their messages to the built-in log store",
        description=(
            'Send one conversation object, or `{"conversations": [...]}` with up to 1,000. '
            "A batch is all or nothing. Re-sending a conversation stores only messages whose "
            "sequence number is new. The subject is named by any identity and created if "
            "unknown. Answers 201 when something was stored, 200 when everything was "
            "already there."
        ),
        request=IngestBatchSerializer,
        responses={
            200: IngestResultSerializer,
            201: IngestResultSerializer,
            400: ErrorResponseSerializer,
            403: ErrorResponseSerializer,
        },
        examples=[
            OpenApiExample("A batch of one", value=INGEST_EXAMPLE, request_only=True),
            *examples.CONVERSATIONS_INGEST,
        ],
    )
    @idempotent
    def post(self, request):
        data = request.data
        if isinstance(data, dict) and "conversations" not in data and "system" in data:
            # One object is a batch of one, so its errors are named conversations[0].… just
            # as the service names them.
            data = {"conversations": [data]}
        batch = IngestBatchSerializer(data=data)
        batch.is_valid(raise_exception=True)
        conversations = batch.validated_data["conversations"]
        result = conversations_ingest(
            conversations=conversations,
            actor=actor_for(request),
            allowed_system=request.user.system,
        )
        code = (
            status.HTTP_201_CREATED
            if (result.messages_created or result.conversations_created)
            else status.HTTP_200_OK
        )
        return Response(IngestResultSerializer(result).data, status=code)


IDENTITY_FILTERS = [
    OpenApiParameter(
        name,
        OpenApiTypes.STR,
        description=f"Find the subject with this {name}. "
        "Prefer POST /api/v1/subjects/lookup/, which keeps identities out of URLs "
        "and access logs.",
    )
    for name in ("customer_id", "email", "phone")
]


class SubjectListCreateView(APIView):
    scopes_by_method = {"GET": ["subjects:read"], "POST": ["subjects:write"]}
    pagination_class = CursorPagination

    @extend_schema(
        operation_id="subjects_list",
        examples=examples.SUBJECTS_LIST,
        summary="List data subjects",
        parameters=IDENTITY_FILTERS,
        responses=SubjectOutSerializer(many=True),
    )
    def get(self, request):
        queryset = subject_list()
        for name in ("customer_id", "email", "phone"):
            if name in request.query_params:
                try:
                    value = normalize_identity(name, request.query_params[name])
                except InvalidIdentity as exc:
                    return Response(
                        error_body(
                            "invalid_request", str(exc), [{"field": name, "message": str(exc)}]
                        ),
                        status=400,
                    )
                queryset = queryset.filter(identities__type=name, identities__value=value)
        return paginated_response(
            view=self,
            request=request,
            queryset=queryset,
            serialize=lambda page: SubjectOutSerializer(page, many=True).data,
        )

    @extend_schema(
        operation_id="subjects_create",
        examples=examples.SUBJECTS_CREATE,
        summary="Register a data subject",
        request=SubjectCreateSerializer,
        responses={
            201: SubjectOutSerializer,
            400: ErrorResponseSerializer,
            409: ErrorResponseSerializer,
        },
    )
    @idempotent
    def post(self, request):
        serializer = SubjectCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        subject = subject_create(
            identities=data["identities"],
            display_name=data.get("display_name", ""),
            jurisdiction=data["jurisdiction"],
            actor=actor_for(request),
        )
        return Response(SubjectOutSerializer(subject).data, status=status.HTTP_201_CREATED)


class SubjectDetailView(APIView):
    required_scopes = ["subjects:read"]

    @extend_schema(
        operation_id="subjects_retrieve",
        examples=examples.SUBJECT_RETRIEVE,
        summary="One data subject",
        responses={200: SubjectOutSerializer, 404: ErrorResponseSerializer},
    )
    def get(self, request, subject_id):
        subject = get_object_or_404(subject_list(), pk=subject_id)
        return Response(SubjectOutSerializer(subject).data)


class ConversationFilterSerializer(serializers.Serializer):
    subject = serializers.UUIDField(required=False)
    system = serializers.SlugField(required=False, max_length=50)


class ConversationDetailView(APIView):
    required_scopes = ["logs:read"]

    @extend_schema(
        operation_id="conversations_retrieve",
        examples=examples.CONVERSATION_RETRIEVE,
        summary="One conversation with its messages",
        responses={200: ConversationDetailSerializer, 404: ErrorResponseSerializer},
    )
    def get(self, request, conversation_id):
        conversation = get_object_or_404(
            conversations_visible(client=request.user).prefetch_related("messages"),
            pk=conversation_id,
        )
        return Response(ConversationDetailSerializer(conversation).data)


class LogSourceListView(APIView):
    required_scopes = ["sources:read"]
    pagination_class = CursorPagination

    @extend_schema(
        operation_id="sources_list",
        examples=examples.SOURCES_LIST,
        summary="The log sources a DPO configured (read-only, without their settings)",
        responses=LogSourceOutSerializer(many=True),
    )
    def get(self, request):
        queryset = LogSource.objects.select_related("system")
        if request.user.system_id is not None:
            queryset = queryset.filter(system_id=request.user.system_id)
        return paginated_response(
            view=self,
            request=request,
            queryset=queryset,
            serialize=lambda page: LogSourceOutSerializer(page, many=True).data,
        )


class SubjectLookupView(APIView):
    required_scopes = ["subjects:read"]

    @extend_schema(
        operation_id="subjects_lookup",
        examples=examples.SUBJECTS_LOOKUP,
        summary="Find a subject by an identity",
        request=SubjectLookupSerializer,
        responses={
            200: SubjectOutSerializer,
            400: ErrorResponseSerializer,
            404: ErrorResponseSerializer,
        },
    )
    def post(self, request):
        serializer = SubjectLookupSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            ref = parse_identity_ref(serializer.validated_data["identity"])
        except InvalidIdentity as exc:
            return Response(
                error_body(
                    "invalid_request", str(exc), [{"field": "identity", "message": str(exc)}]
                ),
                status=400,
            )
        subject = subject_find_by_identity(identity_type=ref["type"], value=ref["value"])
        if subject is None:
            return Response(error_body("not_found", "No subject has this identity."), status=404)
        return Response(SubjectOutSerializer(subject).data)
