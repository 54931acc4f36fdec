"""REST endpoints for webhook subscriptions. A client bound to a system sees and manages
only that system's subscriptions; another system's look like they do not exist."""

from __future__ import annotations

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from compliance.api.pagination import CursorPagination, paginated_response
from compliance.api.schema import ErrorResponseSerializer
from compliance.api.serializers import StrictSerializer
from compliance.models import System
from compliance.services import ForbiddenError, ServiceError
from integrations import api_examples
from integrations.events import EVENT_TYPES
from integrations.idempotency import idempotent
from integrations.models import WebhookSubscription
from integrations.services import webhook_subscription_create, webhook_subscription_delete


def actor_for(request) -> str:
    return f"api:{request.user.name}"


def subscriptions_visible_to(client) -> QuerySet[WebhookSubscription]:
    queryset = WebhookSubscription.objects.select_related("system").filter(deleted_at__isnull=True)
    if client.system_id is not None:
        queryset = queryset.filter(system_id=client.system_id)
    return queryset


class WebhookCreateSerializer(StrictSerializer):
    system = serializers.SlugField(
        max_length=50,
        required=False,
        help_text="The system's slug. A client bound to a system may leave it out.",
    )
    target_url = serializers.CharField(max_length=2000, help_text="An http(s) URL.")
    event_types = serializers.ListField(
        child=serializers.ChoiceField(choices=sorted(EVENT_TYPES)),
        min_length=1,
        max_length=len(EVENT_TYPES),
    )
    description = serializers.CharField(required=False, allow_blank=True, max_length=200)


class WebhookOutSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    system = serializers.CharField(source="system.slug")
    target_url = serializers.CharField()
    event_types = serializers.ListField(child=serializers.CharField())
    description = serializers.CharField()
    active = serializers.BooleanField()
    created_at = serializers.DateTimeField()


class WebhookCreatedSerializer(WebhookOutSerializer):
    secret = serializers.CharField(
        help_text="The signing secret. Shown only in this answer: store it now."
    )


class EventTypeSerializer(serializers.Serializer):
    name = serializers.CharField()
    description = serializers.CharField()
    personal_data = serializers.ListField(
        child=serializers.CharField(),
        help_text="Payload keys of this event that carry personal data (usually none).",
    )


class WebhookListCreateView(APIView):
    required_scopes = ["webhooks:manage"]
    pagination_class = CursorPagination

    @extend_schema(
        operation_id="webhooks_list",
        examples=api_examples.WEBHOOKS_LIST,
        summary="List webhook subscriptions",
        responses=WebhookOutSerializer(many=True),
    )
    def get(self, request):
        return paginated_response(
            view=self,
            request=request,
            queryset=subscriptions_visible_to(request.user),
            serialize=lambda page: WebhookOutSerializer(page, many=True).data,
        )

    @extend_schema(
        operation_id="webhooks_create",
        summary="Subscribe an endpoint to events",
        description=(
            "Deliveries are POSTed as JSON and signed: `X-Webhook-Signature: v1=<hex "
            'HMAC-SHA256(secret, "{X-Webhook-Timestamp}.{raw body}")>`. The secret is in '
            "this answer only."
        ),
        request=WebhookCreateSerializer,
        responses={201: WebhookCreatedSerializer, 400: ErrorResponseSerializer},
        examples=api_examples.WEBHOOKS_CREATE,
    )
    @idempotent
    def post(self, request):
        serializer = WebhookCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        client = request.user
        slug = data.get("system")
        if client.system_id is not None:
            if slug and slug != client.system.slug:
                raise ForbiddenError(
                    "This API key may only manage its own system's webhooks.", field="system"
                )
            system = client.system
        else:
            if not slug:
                raise ServiceError("Name the system to subscribe.", field="system")
            system = System.objects.filter(slug=slug).first()
            if system is None:
                raise ServiceError("No system has this slug.", field="system")
        subscription, secret = webhook_subscription_create(
            system=system,
            target_url=data["target_url"],
            event_types=data["event_types"],
            description=data.get("description", ""),
            actor=actor_for(request),
        )
        body = {**WebhookOutSerializer(subscription).data, "secret": secret}
        return Response(body, status=status.HTTP_201_CREATED)


class WebhookDetailView(APIView):
    required_scopes = ["webhooks:manage"]

    @extend_schema(
        operation_id="webhooks_retrieve",
        examples=api_examples.WEBHOOK_RETRIEVE,
        summary="One webhook subscription",
        responses={200: WebhookOutSerializer, 404: ErrorResponseSerializer},
    )
    def get(self, request, webhook_id):
        subscription = get_object_or_404(subscriptions_visible_to(request.user), pk=webhook_id)
        return Response(WebhookOutSerializer(subscription).data)

    @extend_schema(
        operation_id="webhooks_delete",
        summary="Delete a webhook subscription",
        description="Pending deliveries are cancelled; past ones stay on record.",
        responses={204: OpenApiResponse(description="Deleted."), 404: ErrorResponseSerializer},
    )
    def delete(self, request, webhook_id):
        subscription = get_object_or_404(subscriptions_visible_to(request.user), pk=webhook_id)
        webhook_subscription_delete(subscription=subscription, actor=actor_for(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookEventTypesView(APIView):
    required_scopes = ["webhooks:manage"]

    @extend_schema(
        operation_id="webhooks_event_types",
        examples=api_examples.EVENT_TYPES_LIST,
        summary="The event types a subscription can name",
        responses=EventTypeSerializer(many=True),
    )
    def get(self, request):
        data = [
            {"name": e.name, "description": e.description, "personal_data": sorted(e.personal_keys)}
            for e in EVENT_TYPES.values()
        ]
        return Response(EventTypeSerializer(data, many=True).data)
