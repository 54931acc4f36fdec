"""Input and output serializers of the core API. Output serializers list their fields."""

from __future__ import annotations

import datetime

from django.utils import timezone
from django.utils.dateparse import parse_datetime
from rest_framework import serializers

from compliance.identities import IDENTITY_TYPES
from compliance.ingest import MAX_MESSAGE_CHARS, MAX_MESSAGES_PER_CONVERSATION
from compliance.models import DataSubject, Jurisdiction, MessageRole


class StrictSerializer(serializers.Serializer):
    """Refuses fields it does not know, so a typo is an error and not silently dropped."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError(
                    {name: ["This field is not known."] for name in unknown}
                )
        return super().to_internal_value(data)


class AwareDateTimeField(serializers.DateTimeField):
    """A moment in time with its UTC offset. A naive "2026-11-20T09:14:00" is refused rather
    than guessed: a log's times are evidence (when a disclosure was shown, when data was
    given), and a plugin in another time zone would otherwise be hours off silently."""

    default_error_messages = {
        "naive": "Give the time with a UTC offset, e.g. 2026-11-20T09:14:00Z.",
    }

    def to_internal_value(self, value):
        if isinstance(value, datetime.datetime):
            naive = timezone.is_naive(value)
        elif isinstance(value, str):
            try:
                parsed = parse_datetime(value.strip())
            except ValueError:
                parsed = None  # out of range: the parent says what is wrong
            naive = parsed is not None and timezone.is_naive(parsed)
        else:
            naive = False
        if naive:
            self.fail("naive")
        return super().to_internal_value(value)


class StrictBooleanField(serializers.BooleanField):
    """JSON ``true`` or ``false`` only. DRF's BooleanField also reads "yes", "on", 1 or "0";
    a flag with legal effect (a Global Privacy Control signal) is not guessed from those."""

    default_error_messages = {"invalid": "Must be true or false."}

    def to_internal_value(self, data):
        if isinstance(data, bool):
            return data
        self.fail("invalid")


class IdentitiesSerializer(StrictSerializer):
    """A subject named by any of its identities; at least one is needed."""

    customer_id = serializers.CharField(required=False, max_length=200)
    email = serializers.CharField(required=False, max_length=254)
    phone = serializers.CharField(required=False, max_length=40)

    def validate(self, attrs):
        if not attrs:
            raise serializers.ValidationError(
                f"Give at least one identity: {', '.join(IDENTITY_TYPES)}."
            )
        return attrs


class MessageInSerializer(StrictSerializer):
    sequence = serializers.IntegerField(min_value=0, max_value=2_147_483_647)
    role = serializers.ChoiceField(choices=MessageRole.choices)
    text = serializers.CharField(
        allow_blank=True, trim_whitespace=False, max_length=MAX_MESSAGE_CHARS
    )
    sent_at = AwareDateTimeField()


class ConversationInSerializer(StrictSerializer):
    system = serializers.SlugField(max_length=50, help_text="The system's slug.")
    conversation_id = serializers.CharField(
        max_length=200, help_text="The plugin's own conversation id."
    )
    subject = IdentitiesSerializer(required=False, allow_null=True)
    started_at = AwareDateTimeField(required=False, allow_null=True)
    disclosure_version = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        max_value=1_000_000,
        help_text="The AI disclosure version shown in this conversation (EU AI Act Art. 50).",
    )
    disclosure_shown_at = AwareDateTimeField(required=False, allow_null=True)
    gpc = StrictBooleanField(
        required=False,
        help_text="The customer's browser sent a Global Privacy Control signal (Sec-GPC: 1) "
        "in this conversation: records an opt-out of sale/sharing for its subject (CCPA "
        "§7025). Leave it out otherwise; false changes nothing and never opts anyone back in.",
    )
    messages = serializers.ListField(
        child=MessageInSerializer(), allow_empty=True, max_length=MAX_MESSAGES_PER_CONVERSATION
    )


class IngestBatchSerializer(StrictSerializer):
    conversations = serializers.ListField(
        child=ConversationInSerializer(), min_length=1, max_length=1000
    )


class IngestResultSerializer(serializers.Serializer):
    conversations_created = serializers.IntegerField()
    conversations_seen = serializers.IntegerField()
    messages_created = serializers.IntegerField()
    messages_skipped = serializers.IntegerField(
        help_text="Messages already stored (same system, conversation id and sequence)."
    )


class IdentityOutSerializer(serializers.Serializer):
    type = serializers.CharField()
    value = serializers.CharField()
    verified = serializers.BooleanField()


class SubjectOutSerializer(serializers.ModelSerializer):
    identities = IdentityOutSerializer(many=True, read_only=True)

    class Meta:
        model = DataSubject
        fields = ["id", "external_id", "display_name", "jurisdiction", "identities", "created_at"]
        read_only_fields = fields


class SubjectCreateSerializer(StrictSerializer):
    identities = IdentitiesSerializer()
    display_name = serializers.CharField(required=False, allow_blank=True, max_length=200)
    jurisdiction = serializers.ChoiceField(
        choices=Jurisdiction.choices, required=False, default=Jurisdiction.OTHER
    )


class SubjectLookupSerializer(StrictSerializer):
    identity = serializers.CharField(
        max_length=400, help_text="type:value, e.g. email:ana@example.com or customer_id:C-1"
    )


class MessageOutSerializer(serializers.Serializer):
    sequence = serializers.IntegerField()
    role = serializers.CharField()
    text = serializers.CharField()
    sent_at = serializers.DateTimeField()


class ConversationOutSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    system = serializers.CharField(source="system.slug")
    conversation_id = serializers.CharField(source="external_id")
    subject = serializers.UUIDField(source="subject_id", allow_null=True)
    started_at = serializers.DateTimeField()
    disclosure_version = serializers.IntegerField(
        source="disclosure.version", allow_null=True, default=None
    )
    disclosure_shown_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()


class ConversationDetailSerializer(ConversationOutSerializer):
    messages = MessageOutSerializer(many=True)


class LogSourceOutSerializer(serializers.Serializer):
    """A log source as other services may see it: never its configuration, which may hold
    a connection string."""

    id = serializers.IntegerField()
    system = serializers.CharField(source="system.slug")
    name = serializers.CharField()
    connector = serializers.CharField()
    enabled = serializers.BooleanField()
    created_at = serializers.DateTimeField()
