"""REST endpoints of the consent app: the consent check (the hot path), recording consent
events, a subject's consents, the purpose catalogue and signed consent receipts."""

from __future__ import annotations

import functools
import logging
import re

from django.conf import settings
from django.db import transaction
from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    extend_schema_field,
)
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from compliance.api.errors import error_body
from compliance.api.serializers import StrictSerializer
from compliance.api.views import ErrorSerializer, actor_for
from compliance.identities import InvalidIdentity, parse_identity_ref
from compliance.models import DataSubject, Jurisdiction
from compliance.selectors import subject_find_by_identity
from compliance.services import ServiceError
from consent import api_examples, hotpath, selectors, services
from consent.gpc import gpc_signal
from consent.models import ConsentAction, ConsentEvent, ConsentSource, Purpose
from consent.receipts import ReceiptSigningUnavailable, receipt_issue

logger = logging.getLogger(__name__)

IDENTITY_HELP = "type:value, e.g. customer_id:C-1001, email:ana@example.com, phone:+4915112345678"
GPC_HEADER = OpenApiParameter(
    "Sec-GPC",
    OpenApiTypes.STR,
    location=OpenApiParameter.HEADER,
    required=False,
    enum=["1"],
    description=(
        "Global Privacy Control, relayed from the customer's browser. Only `1` is valid; it "
        "records an opt-out of sale/sharing for the customers the request names (CCPA §7025)."
    ),
)


def _evidence(request) -> dict:
    client = request.user
    evidence = {"client": client.name[:100]}
    if client.system_id:
        evidence["system"] = client.system.slug
    return evidence


def _record_gpc(request, subject_ids) -> int:
    """Record the GPC signal for the known customers a request named; returns how many got
    a new opt-out (those already opted out get none)."""
    recorded = 0
    for subject in DataSubject.objects.filter(pk__in=set(subject_ids)):
        event = services.gpc_signal_record(
            subject=subject, actor=actor_for(request), evidence=_evidence(request)
        )
        recorded += event is not None
    return recorded


def _purpose_or_404(slug: str, field: str = "purpose") -> Purpose:
    purpose = Purpose.objects.filter(slug=slug).first()
    if purpose is None:
        raise services.NotFoundError(
            "No purpose has this slug; GET /api/v1/consent/purposes/ lists them.", field=field
        )
    return purpose


# --- the consent check ----------------------------------------------------------------------


class CheckQuerySerializer(StrictSerializer):
    subject = serializers.CharField(max_length=400, help_text=IDENTITY_HELP)
    purpose = serializers.SlugField(max_length=50)
    jurisdiction = serializers.ChoiceField(
        choices=Jurisdiction.choices,
        required=False,
        help_text="Whose defaults apply if the subject is unknown (default: "
        "CONSENT_UNKNOWN_SUBJECT_JURISDICTION, EU unless configured).",
    )
    gpc = serializers.BooleanField(
        required=False,
        default=False,
        help_text="The customer's browser sent a Global Privacy Control signal.",
    )


class CheckPairSerializer(StrictSerializer):
    subject = serializers.CharField(max_length=400, help_text=IDENTITY_HELP)
    purpose = serializers.SlugField(max_length=50)
    gpc = serializers.BooleanField(required=False, default=False)


SLUG = re.compile(r"^[-a-zA-Z0-9_]{1,50}$")
PAIR_FIELDS = frozenset(CheckPairSerializer().fields)


@extend_schema_field(CheckPairSerializer(many=True))
class CheckPairsField(serializers.Field):
    """The batch's pairs, checked by hand against the rules of CheckPairSerializer: running
    1,000 nested serializers costs more CPU than answering the 1,000 checks."""

    def to_internal_value(self, data):
        if not isinstance(data, list):
            raise serializers.ValidationError("Give a list of checks.")
        limit = settings.CONSENT_CHECK_MAX_BATCH
        if not data:
            raise serializers.ValidationError("Give at least one check.")
        if len(data) > limit:
            raise serializers.ValidationError(f"A batch holds at most {limit} checks.")
        pairs, errors = [], {}
        for i, raw in enumerate(data):
            if not isinstance(raw, dict):
                errors[i] = {"non_field_errors": ["Give an object with subject and purpose."]}
                continue
            problems = {name: ["This field is not known."] for name in raw.keys() - PAIR_FIELDS}
            subject, purpose, gpc = raw.get("subject"), raw.get("purpose"), raw.get("gpc", False)
            if not isinstance(subject, str) or not subject.strip() or len(subject) > 400:
                problems["subject"] = [f"Give the subject as {IDENTITY_HELP} (at most 400)."]
            if not isinstance(purpose, str) or not SLUG.match(purpose):
                problems["purpose"] = ["Give the purpose's slug."]
            if not isinstance(gpc, bool):
                problems["gpc"] = ["Must be true or false."]
            if problems:
                errors[i] = problems
            else:
                pairs.append({"subject": subject, "purpose": purpose, "gpc": gpc})
        if errors:
            raise serializers.ValidationError([errors.get(i, {}) for i in range(len(data))])
        return pairs

    def to_representation(self, value):
        return value


class CheckBatchSerializer(StrictSerializer):
    checks = CheckPairsField(help_text="Up to 1,000 (subject, purpose) pairs.")
    jurisdiction = serializers.ChoiceField(choices=Jurisdiction.choices, required=False)
    gpc = serializers.BooleanField(
        required=False,
        default=False,
        help_text="A GPC signal that applies to every customer in the batch.",
    )


class CheckResultSerializer(serializers.Serializer):
    allowed = serializers.BooleanField()
    reason = serializers.ChoiceField(choices=[r.value for r in selectors.Reason])
    state_since = serializers.DateTimeField(allow_null=True)


class BatchResultItemSerializer(CheckResultSerializer):
    subject = serializers.CharField()
    purpose = serializers.CharField()


class BatchResultSerializer(serializers.Serializer):
    results = BatchResultItemSerializer(many=True)


def _result(result: selectors.CheckResult) -> dict:
    return hotpath.result_fields(result)


# The GET view's shortcut past CheckQuerySerializer (the hot path shares it).
_plain_check_query = hotpath.plain_check_query


class ConsentCheckView(APIView):
    required_scopes = ["consent:read"]

    @extend_schema(
        operation_id="consent_check",
        examples=api_examples.CHECK,
        summary="May this customer's data be used for this purpose?",
        description=(
            "Answers from the subject's restriction, refusals, opt-outs (and GPC signal), "
            "grants, and else the jurisdiction's default. `reason` is one of "
            "explicit_grant, default, withdrawn, objected, opted_out, gpc, restricted, "
            "unknown_subject_default. Prefer the POST form to keep identities out of URLs."
        ),
        parameters=[CheckQuerySerializer, GPC_HEADER],
        responses={200: CheckResultSerializer, 400: ErrorSerializer, 404: ErrorSerializer},
    )
    def get(self, request):
        gpc_header = gpc_signal(request)
        params = request.query_params.dict()
        data = _plain_check_query(params)
        if data is None:
            query = CheckQuerySerializer(data=params)
            query.is_valid(raise_exception=True)
            data = query.validated_data
        outcome = selectors.consent_check(
            subject=data["subject"],
            purpose=data["purpose"],
            gpc=gpc_header or data["gpc"],
            unknown_jurisdiction=data.get("jurisdiction"),
        )
        if outcome.gpc_to_record:
            _record_gpc(request, [outcome.subject_id])
        return Response(_result(outcome.result))

    @extend_schema(
        operation_id="consent_check_batch",
        summary="Answer up to 1,000 (subject, purpose) pairs at once",
        request=CheckBatchSerializer,
        parameters=[GPC_HEADER],
        responses={200: BatchResultSerializer, 400: ErrorSerializer, 404: ErrorSerializer},
        examples=api_examples.CHECK_BATCH,
    )
    def post(self, request):
        gpc_header = gpc_signal(request)
        batch = CheckBatchSerializer(data=request.data)
        batch.is_valid(raise_exception=True)
        data = batch.validated_data
        gpc_all = gpc_header or data["gpc"]
        pairs = data["checks"]
        outcomes = selectors.consent_check_many(
            requests=[
                selectors.CheckRequest(
                    subject=p["subject"], purpose=p["purpose"], gpc=gpc_all or p["gpc"]
                )
                for p in pairs
            ],
            unknown_jurisdiction=data.get("jurisdiction"),
        )
        to_record = [o.subject_id for o in outcomes if o.gpc_to_record]
        if to_record:
            _record_gpc(request, to_record)
        return Response(
            {
                "results": [
                    {"subject": p["subject"], "purpose": p["purpose"], **_result(o.result)}
                    for p, o in zip(pairs, outcomes, strict=True)
                ]
            }
        )


_check_view = ConsentCheckView.as_view()


def consent_check_route(request, *args, **kwargs):
    """The URL of the consent check: a GET the hot path can answer (consent/hotpath.py) is
    answered there, everything else by ConsentCheckView. It carries the view's attributes
    (``cls``, ``initkwargs``, ``csrf_exempt``), so the OpenAPI schema describes both
    operations from the view as before."""
    if request.method == "GET":
        try:
            body = hotpath.answer(request.META)
        except Exception as exc:
            # Its class only: a message may quote the request's input.
            logger.error(
                "consent check hot path failed (%s); the full view answers",
                exc.__class__.__name__,
            )
            body = None
        if body is not None:
            response = HttpResponse(body, content_type="application/json")
            response["Allow"] = check_view_allow()
            return response
    return _check_view(request, *args, **kwargs)


@functools.cache
def check_view_allow() -> str:
    """The view's ``Allow`` header (HEAD included, as Django's setup() adds it)."""
    view = ConsentCheckView()
    view.setup(None)
    return ", ".join(view.allowed_methods)


for _name in ("cls", "initkwargs", "view_class", "view_initkwargs", "csrf_exempt"):
    setattr(consent_check_route, _name, getattr(_check_view, _name))


# --- recording consent ----------------------------------------------------------------------


class EvidenceInSerializer(StrictSerializer):
    collection_point = serializers.CharField(
        required=False,
        max_length=100,
        help_text="Where the customer made the choice, e.g. chat-widget or checkout.",
    )


class ConsentEventInSerializer(StrictSerializer):
    subject = serializers.CharField(required=False, max_length=400, help_text=IDENTITY_HELP)
    subject_id = serializers.UUIDField(required=False)
    purpose = serializers.SlugField(max_length=50)
    action = serializers.ChoiceField(choices=ConsentAction.choices)
    source = serializers.ChoiceField(
        choices=[ConsentSource.API, ConsentSource.PLUGIN],
        default=ConsentSource.API,
        help_text="api, or plugin when the customer chose inside a chatbot plugin.",
    )
    notice_version = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=1_000_000,
        help_text="The notice version the customer saw; default: the current one.",
    )
    evidence = EvidenceInSerializer(required=False)
    ip_address = serializers.IPAddressField(
        required=False, help_text="The customer's IP address; stored only as a keyed hash."
    )
    gpc = serializers.BooleanField(
        required=False,
        default=False,
        help_text="The customer's browser sent a Global Privacy Control signal.",
    )

    def validate(self, attrs):
        if ("subject" in attrs) == ("subject_id" in attrs):
            raise serializers.ValidationError("Name the subject by subject or by subject_id.")
        return attrs


class ConsentEventOutSerializer(serializers.Serializer):
    receipt_id = serializers.UUIDField()
    subject_id = serializers.UUIDField()
    purpose = serializers.CharField(source="purpose.slug")
    action = serializers.CharField()
    source = serializers.CharField()
    notice_version = serializers.IntegerField(source="notice.version", allow_null=True)
    jurisdiction = serializers.CharField()
    occurred_at = serializers.DateTimeField()
    evidence = serializers.DictField()


class ConsentEventCreatedSerializer(ConsentEventOutSerializer):
    answer = CheckResultSerializer(help_text="What a consent check answers now.")
    gpc_recorded = serializers.BooleanField()


def _subject_from(data: dict) -> DataSubject:
    if "subject_id" in data:
        subject = DataSubject.objects.filter(pk=data["subject_id"]).first()
        field = "subject_id"
    else:
        try:
            ref = parse_identity_ref(data["subject"])
        except InvalidIdentity as exc:
            raise ServiceError(str(exc), field="subject") from None
        subject = subject_find_by_identity(identity_type=ref["type"], value=ref["value"])
        field = "subject"
    if subject is None:
        raise services.NotFoundError(
            "No data subject has this identity; register it with POST /api/v1/subjects/ first.",
            field=field,
        )
    return subject


class ConsentEventCreateView(APIView):
    required_scopes = ["consent:write"]

    @extend_schema(
        operation_id="consent_events_create",
        summary="Record a grant, withdrawal, objection, opt-out or opt-in",
        description=(
            "Appends an event to the subject's consent history and updates the current "
            "state; the consent check answers accordingly as soon as this returns. "
            "Withdrawing takes exactly the same call as granting (GDPR Art. 7(3)). "
            "Opt-outs need no identity verification (CCPA). The subject must exist."
        ),
        request=ConsentEventInSerializer,
        parameters=[GPC_HEADER],
        responses={
            201: ConsentEventCreatedSerializer,
            400: ErrorSerializer,
            404: ErrorSerializer,
        },
        examples=api_examples.EVENTS_CREATE,
    )
    def post(self, request):
        gpc_header = gpc_signal(request)
        serializer = ConsentEventInSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        subject = _subject_from(data)
        purpose = _purpose_or_404(data["purpose"])
        evidence = {**_evidence(request), **data.get("evidence", {})}
        with transaction.atomic():
            # One transaction: the event and the signal it came with are recorded together.
            event = services.consent_record(
                subject=subject,
                purpose=purpose,
                action=data["action"],
                source=data["source"],
                actor=actor_for(request),
                notice_version=data.get("notice_version"),
                evidence=evidence,
                ip_address=data.get("ip_address"),
            )
            gpc_event = None
            if gpc_header or data["gpc"]:
                gpc_event = services.gpc_signal_record(
                    subject=subject,
                    actor=actor_for(request),
                    evidence=_evidence(request),
                    ip_address=data.get("ip_address"),
                )
        answer = selectors.consent_answer(subject=subject, purpose=purpose)
        body = ConsentEventOutSerializer(event).data
        body["answer"] = _result(answer)
        body["gpc_recorded"] = gpc_event is not None
        return Response(body, status=status.HTTP_201_CREATED)


# --- a subject's consents -------------------------------------------------------------------


class PurposeStateOutSerializer(serializers.Serializer):
    purpose = serializers.CharField()
    name = serializers.CharField()
    lawful_basis = serializers.CharField()
    allowed = serializers.BooleanField()
    reason = serializers.CharField()
    state_since = serializers.DateTimeField(allow_null=True)
    status = serializers.CharField(allow_null=True, help_text="The subject's own choice, if any.")
    source = serializers.CharField(allow_null=True)


class SubjectConsentsOutSerializer(serializers.Serializer):
    subject_id = serializers.UUIDField()
    jurisdiction = serializers.CharField()
    restricted = serializers.BooleanField()
    purposes = PurposeStateOutSerializer(many=True)
    history = ConsentEventOutSerializer(many=True)


class SubjectConsentsView(APIView):
    required_scopes = ["consent:read"]

    @extend_schema(
        operation_id="subjects_consents",
        examples=api_examples.SUBJECT_CONSENTS,
        summary="A subject's consents: the current answer per purpose and the full history",
        parameters=[GPC_HEADER],
        responses={200: SubjectConsentsOutSerializer, 404: ErrorSerializer},
    )
    def get(self, request, subject_id):
        gpc_header = gpc_signal(request)
        subject = get_object_or_404(DataSubject, pk=subject_id)
        if gpc_header:
            _record_gpc(request, [subject.pk])
        overview = selectors.subject_consent_overview(subject=subject)
        purposes = [
            {
                "purpose": row.purpose.slug,
                "name": row.purpose.name,
                "lawful_basis": row.purpose.lawful_basis,
                **_result(row.result),
                "status": row.state.status if row.state else None,
                "source": row.state.source if row.state else None,
            }
            for row in overview
        ]
        history = selectors.subject_consent_history(subject=subject)
        return Response(
            {
                "subject_id": str(subject.pk),
                "jurisdiction": subject.jurisdiction,
                "restricted": subject.restricted_at is not None,
                "purposes": PurposeStateOutSerializer(purposes, many=True).data,
                "history": ConsentEventOutSerializer(history, many=True).data,
            }
        )


# --- the purpose catalogue ------------------------------------------------------------------


class PurposeOutSerializer(serializers.Serializer):
    slug = serializers.CharField()
    name = serializers.CharField()
    description = serializers.CharField()
    lawful_basis = serializers.CharField()
    sensitive = serializers.BooleanField()
    sold_or_shared = serializers.BooleanField()
    third_party_name = serializers.CharField()
    data_categories = serializers.SerializerMethodField()
    systems = serializers.SerializerMethodField()
    notice_version = serializers.SerializerMethodField()
    notice = serializers.SerializerMethodField()

    def _notice(self, obj):
        notices = sorted(obj.notices.all(), key=lambda n: n.version)
        return notices[-1] if notices else None

    def get_data_categories(self, obj) -> list[str]:
        return sorted(c.slug for c in obj.data_categories.all())

    def get_systems(self, obj) -> list[str]:
        return sorted(s.slug for s in obj.systems.all())

    def get_notice_version(self, obj) -> int | None:
        notice = self._notice(obj)
        return notice.version if notice else None

    def get_notice(self, obj) -> str | None:
        notice = self._notice(obj)
        return notice.text if notice else None


class PurposeListView(APIView):
    required_scopes = ["consent:read"]

    @extend_schema(
        operation_id="consent_purposes_list",
        examples=api_examples.PURPOSES_LIST,
        summary="The purposes customers can allow or refuse, with their current notice",
        responses=PurposeOutSerializer(many=True),
    )
    def get(self, request):
        return Response(PurposeOutSerializer(selectors.purpose_list(), many=True).data)


# --- receipts -------------------------------------------------------------------------------


class ReceiptOutSerializer(serializers.Serializer):
    consentReceiptID = serializers.UUIDField()  # the Kantara field name
    kid = serializers.CharField(help_text="The key id in /.well-known/jwks.json.")
    jwt = serializers.CharField(help_text="The receipt, signed (RS256).")
    receipt = serializers.DictField(help_text="The same receipt, unsigned, for reading.")


class ConsentReceiptView(APIView):
    required_scopes = ["consent:read"]

    @extend_schema(
        operation_id="consent_receipts_retrieve",
        examples=api_examples.RECEIPT,
        summary="The signed Kantara Consent Receipt v1.1 of one consent event",
        description="Verify `jwt` with the key of id `kid` published at /.well-known/jwks.json.",
        responses={200: ReceiptOutSerializer, 404: ErrorSerializer, 503: ErrorSerializer},
    )
    def get(self, request, receipt_id):
        event: ConsentEvent | None = selectors.event_by_receipt_id(receipt_id=receipt_id)
        if event is None:
            return Response(error_body("not_found", "No consent receipt has this id."), status=404)
        try:
            signed = receipt_issue(event)
        except ReceiptSigningUnavailable as exc:
            return Response(error_body("unavailable", str(exc)), status=503)
        return Response(
            {
                "consentReceiptID": str(event.receipt_id),
                "kid": signed.kid,
                "jwt": signed.jwt,
                "receipt": signed.claims,
            }
        )
