"""Core REST endpoints: conversation ingest and data subjects."""

from __future__ import annotations

from contextlib import nullcontext

from django.db import transaction
from django.db.models import Q
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
from compliance.models import DataSubject, LogSource, SubjectIdentity
from compliance.selectors import conversations_visible, subject_find_by_identity, subject_list
from compliance.services import normalize_identities, subject_create
from compliance.subject_hooks import subject_identification_check, subject_identified
from integrations.idempotency import idempotent


def actor_for(request) -> str:
    return f"api:{request.user.name}"


# The old name, still imported by other apps' views; new code names ErrorResponseSerializer.
ErrorSerializer = ErrorResponseSerializer


# Every operation that names a customer documents the header; what it does is the consent
# app's, through compliance.subject_hooks (docs/consent.md, "Global Privacy Control").
GPC_HEADER = OpenApiParameter(
    "Sec-GPC",
    OpenApiTypes.STR,
    location=OpenApiParameter.HEADER,
    required=False,
    enum=["1"],
    description=(
        "Global Privacy Control, relayed from the customer's browser. Only `1` is valid (any "
        "other value is a 400 and changes nothing); it records an opt-out of sale/sharing "
        "for the known customers the request names (CCPA §7025). Its absence changes "
        "nothing."
    ),
)


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

# A plugin relays the Global Privacy Control signal of the customer's browser per
# conversation: the batch's own Sec-GPC header, if any, would cover every customer in it.
INGEST_GPC_EXAMPLE = {
    "conversations": [
        {
            "system": "shop-assistant",
            "conversation_id": "c-1843",
            "subject": {"email": "ana@example.com"},
            "gpc": True,
            "messages": [
                {
                    "sequence": 0,
                    "role": "customer",
                    "text": "Do you ship to Lisbon?",
                    "sent_at": "2026-11-20T09:20:00Z",
                }
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
            GPC_HEADER,
        ],
        responses=ConversationOutSerializer(many=True),
    )
    def get(self, request):
        wanted = subject_identification_check(request)
        queryset = conversations_visible(client=request.user)
        form = ConversationFilterSerializer(data=request.query_params)
        form.is_valid(raise_exception=True)
        if form.validated_data.get("subject"):
            queryset = queryset.filter(subject_id=form.validated_data["subject"])
            if wanted:
                subject_identified(
                    request,
                    subjects=list(DataSubject.objects.filter(pk=form.validated_data["subject"])),
                    actor=actor_for(request),
                    source="api:conversations_list",
                )
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
            'already there. `"gpc": true` on a conversation relays the Global Privacy '
            "Control signal of that customer's browser: an opt-out of sale/sharing is "
            "recorded for the conversation's subject in the same transaction (none for a "
            "conversation without a subject). A `Sec-GPC: 1` header on the batch covers "
            "every customer the batch names."
        ),
        request=IngestBatchSerializer,
        parameters=[GPC_HEADER],
        responses={
            200: IngestResultSerializer,
            201: IngestResultSerializer,
            400: ErrorResponseSerializer,
            403: ErrorResponseSerializer,
        },
        examples=[
            OpenApiExample("A batch of one", value=INGEST_EXAMPLE, request_only=True),
            OpenApiExample(
                "A customer whose browser sent Global Privacy Control",
                value=INGEST_GPC_EXAMPLE,
                request_only=True,
            ),
            *examples.CONVERSATIONS_INGEST,
        ],
    )
    @idempotent
    def post(self, request):
        wanted = subject_identification_check(request)
        data = request.data
        if isinstance(data, dict) and "conversations" not in data and "system" in data:
            # One object is a batch of one, so its errors are named conversations[0].… just
            # as the service names them.
            data = {"conversations": [data]}
        batch = IngestBatchSerializer(data=data)
        batch.is_valid(raise_exception=True)
        conversations = batch.validated_data["conversations"]
        # The ingest service knows nothing of GPC: the relayed flags are taken out here.
        relayed = [item.pop("gpc", False) for item in conversations]
        signalled = wanted or any(relayed)
        # With a signal, the opt-outs commit with the conversations or not at all.
        with transaction.atomic() if signalled else nullcontext():
            result = conversations_ingest(
                conversations=conversations,
                actor=actor_for(request),
                allowed_system=request.user.system,
            )
            if signalled:
                _ingest_identified(request, conversations, relayed=relayed, everyone=wanted)
        code = (
            status.HTTP_201_CREATED
            if (result.messages_created or result.conversations_created)
            else status.HTTP_200_OK
        )
        return Response(IngestResultSerializer(result).data, status=code)


def _ingest_identified(
    request, conversations: list[dict], *, relayed: list[bool], everyone: bool
) -> None:
    """Tell the hooks whom a stored batch named: the subjects of the conversations that
    relayed ``"gpc": true``, and, when the batch itself carries a signal (``everyone``),
    every subject of the batch, as on the batch consent check."""
    indexes = range(len(conversations)) if everyone else [i for i, f in enumerate(relayed) if f]
    named = _ingested_subjects(conversations, indexes)
    flagged = {subject for i, subject in named.items() if relayed[i]}
    if flagged:
        subject_identified(
            request,
            subjects=list(flagged),
            actor=actor_for(request),
            source="api:conversations_ingest",
            gpc_relayed=True,
        )
    if everyone:
        subject_identified(
            request,
            subjects=list(set(named.values())),
            actor=actor_for(request),
            source="api:conversations_ingest",
        )


def _ingested_subjects(conversations: list[dict], indexes) -> dict[int, DataSubject]:
    """{item index: its subject} for the items at ``indexes`` that name one, in one query.
    Called after the ingest in its transaction: by then every identity of an item belongs
    to that item's subject."""
    refs = {
        i: normalize_identities(raw, field=f"conversations[{i}].subject")
        for i in indexes
        if (raw := conversations[i].get("subject"))
    }
    by_type: dict[str, set[str]] = {}
    for ref in refs.values():
        for identity_type, value in ref.items():
            by_type.setdefault(identity_type, set()).add(value)
    if not by_type:
        return {}
    wanted = Q(pk__in=[])
    for identity_type, values in by_type.items():
        wanted |= Q(type=identity_type, value__in=values)
    owners = {
        (identity.type, identity.value): identity.subject
        for identity in SubjectIdentity.objects.filter(wanted).select_related("subject")
    }
    named = {}
    for i, ref in refs.items():
        subject = next((owners[pair] for pair in ref.items() if pair in owners), None)
        if subject is not None:
            named[i] = subject
    return named


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
        parameters=[*IDENTITY_FILTERS, GPC_HEADER],
        responses=SubjectOutSerializer(many=True),
    )
    def get(self, request):
        wanted = subject_identification_check(request)
        queryset = subject_list()
        named = False
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
                named = True
        if named and wanted:
            # An identity filter names one customer (or nobody); a plain listing names none.
            subject_identified(
                request,
                subjects=list(queryset),
                actor=actor_for(request),
                source="api:subjects_list",
            )
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
        parameters=[GPC_HEADER],
        responses={
            201: SubjectOutSerializer,
            400: ErrorResponseSerializer,
            409: ErrorResponseSerializer,
        },
    )
    @idempotent
    def post(self, request):
        wanted = subject_identification_check(request)
        serializer = SubjectCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        with transaction.atomic():
            subject = subject_create(
                identities=data["identities"],
                display_name=data.get("display_name", ""),
                jurisdiction=data["jurisdiction"],
                actor=actor_for(request),
            )
            if wanted:
                subject_identified(
                    request,
                    subjects=[subject],
                    actor=actor_for(request),
                    source="api:subjects_create",
                )
        return Response(SubjectOutSerializer(subject).data, status=status.HTTP_201_CREATED)


class SubjectDetailView(APIView):
    required_scopes = ["subjects:read"]

    @extend_schema(
        operation_id="subjects_retrieve",
        examples=examples.SUBJECT_RETRIEVE,
        summary="One data subject",
        parameters=[GPC_HEADER],
        responses={200: SubjectOutSerializer, 404: ErrorResponseSerializer},
    )
    def get(self, request, subject_id):
        wanted = subject_identification_check(request)
        subject = get_object_or_404(subject_list(), pk=subject_id)
        if wanted:
            subject_identified(
                request,
                subjects=[subject],
                actor=actor_for(request),
                source="api:subjects_retrieve",
            )
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
        parameters=[GPC_HEADER],
        responses={
            200: SubjectOutSerializer,
            400: ErrorResponseSerializer,
            404: ErrorResponseSerializer,
        },
    )
    def post(self, request):
        wanted = subject_identification_check(request)
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
        if wanted:
            subject_identified(
                request, subjects=[subject], actor=actor_for(request), source="api:subjects_lookup"
            )
        return Response(SubjectOutSerializer(subject).data)
