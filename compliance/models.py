"""Core domain: data subjects and their identities, systems, the built-in log store,
log sources, the audit trail and API clients."""

from __future__ import annotations

import hashlib
import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from compliance.minimisation import (
    MinimisationCategory,
    minimisation_default_categories,
    validate_minimise_categories,
)


class Jurisdiction(models.TextChoices):
    EU = "EU", _("European Union (GDPR)")
    UK = "UK", _("United Kingdom (UK GDPR)")
    US_CA = "US-CA", _("California (CCPA/CPRA)")
    OTHER = "OTHER", _("Other")


class DataSubject(models.Model):
    """A customer whose personal data we hold."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # The customer id the company's own systems use; also stored as a SubjectIdentity so
    # every lookup goes through one index.
    external_id = models.CharField(max_length=200, unique=True, null=True, blank=True)
    display_name = models.CharField(max_length=200, blank=True)
    jurisdiction = models.CharField(
        max_length=8, choices=Jurisdiction.choices, default=Jurisdiction.OTHER
    )
    # GDPR Art. 18: while set, the data is kept but every consent check answers no.
    restricted_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("data subject")

    def __str__(self) -> str:
        # Never the name or an identifier: this string ends up in logs and admin messages.
        return f"Subject {str(self.id)[:8]}"


class IdentityType(models.TextChoices):
    CUSTOMER_ID = "customer_id", _("Customer id")
    EMAIL = "email", _("Email address")
    PHONE = "phone", _("Phone number")


# The digests a processor protocol may name an identity by (OpenDSR: sha1, md5, sha256 of the
# normalized value), and the column of SubjectIdentity that holds each.
IDENTITY_DIGEST_COLUMNS = {"sha256": "value_sha256", "sha1": "value_sha1", "md5": "value_md5"}


class SubjectIdentityQuerySet(models.QuerySet):
    """Keeps the digest columns in step with ``value`` on the paths that skip ``save()``."""

    def bulk_create(self, objs, *args, **kwargs):
        objs = list(objs)
        for obj in objs:
            obj.fill_digests()
        update_fields = kwargs.get("update_fields")
        if update_fields and "value" in update_fields:
            kwargs["update_fields"] = [*update_fields, *IDENTITY_DIGEST_COLUMNS.values()]
        return super().bulk_create(objs, *args, **kwargs)

    def bulk_update(self, objs, fields, *args, **kwargs):
        objs, fields = list(objs), list(fields)
        if "value" in fields:
            for obj in objs:
                obj.fill_digests()
            fields += [c for c in IDENTITY_DIGEST_COLUMNS.values() if c not in fields]
        return super().bulk_update(objs, fields, *args, **kwargs)

    def update(self, **kwargs):
        digests_given = all(c in kwargs for c in IDENTITY_DIGEST_COLUMNS.values())
        if "value" in kwargs and not digests_given:  # bulk_update above gives them
            value = kwargs["value"]
            if not isinstance(value, str):
                # An expression would leave the digests describing the old value.
                raise TypeError("SubjectIdentity.value can only be updated to a plain string.")
            kwargs.update(SubjectIdentity.digests_of(value))
        return super().update(**kwargs)


class SubjectIdentity(models.Model):
    """One normalized identifier of a subject. ``type`` is open for more kinds
    (device ids, account handles); the three in ``IdentityType`` are normalized."""

    subject = models.ForeignKey(DataSubject, on_delete=models.CASCADE, related_name="identities")
    type = models.CharField(max_length=32, choices=IdentityType.choices)
    value = models.CharField(max_length=320)
    verified = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    # A controller may name a person only by a digest of the normalized value (OpenDSR
    # identity_format sha256/sha1/md5), so as not to send the value itself. Kept beside it,
    # derived on every write, so such a request is matched through an index.
    value_sha256 = models.CharField(max_length=64, editable=False, default="")
    value_sha1 = models.CharField(max_length=40, editable=False, default="")
    value_md5 = models.CharField(max_length=32, editable=False, default="")

    objects = SubjectIdentityQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["type", "value"], name="identity_unique_type_value")
        ]
        indexes = [
            models.Index(fields=["type", "value_sha256"], name="identity_type_sha256_idx"),
            models.Index(fields=["type", "value_sha1"], name="identity_type_sha1_idx"),
            models.Index(fields=["type", "value_md5"], name="identity_type_md5_idx"),
        ]
        verbose_name_plural = _("subject identities")

    def __str__(self) -> str:
        return f"{self.type} identity"

    def save(self, *args, **kwargs):
        self.fill_digests()
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and "value" in update_fields:
            kwargs["update_fields"] = {*update_fields, *IDENTITY_DIGEST_COLUMNS.values()}
        super().save(*args, **kwargs)

    @staticmethod
    def digests_of(value: str) -> dict[str, str]:
        """Lower-case hex digests of the UTF-8 bytes of a normalized value, by column."""
        raw = value.encode()
        return {
            column: hashlib.new(algorithm, raw, usedforsecurity=False).hexdigest()
            for algorithm, column in IDENTITY_DIGEST_COLUMNS.items()
        }

    def fill_digests(self) -> None:
        for column, digest in self.digests_of(self.value or "").items():
            setattr(self, column, digest)


class DataCategory(models.Model):
    """A category of personal data (contact details, conversation content, payment data)."""

    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    sensitive = models.BooleanField(
        default=False, help_text=_("Sensitive personal information (CCPA) / special category.")
    )

    class Meta:
        ordering = ["name"]
        verbose_name_plural = _("data categories")

    def __str__(self) -> str:
        return self.name


class SystemRole(models.TextChoices):
    CONTROLLER = "controller", _("Controller")
    PROCESSOR = "processor", _("Processor")


class System(models.Model):
    """A chatbot plugin or another system that holds personal data."""

    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    owner_contact = models.EmailField(help_text=_("Who answers for this system."))
    role = models.CharField(
        max_length=16, choices=SystemRole.choices, default=SystemRole.CONTROLLER
    )
    data_categories = models.ManyToManyField(DataCategory, blank=True, related_name="systems")
    recipients = models.TextField(
        blank=True, help_text=_("Recipients or categories of recipients of the data (Art. 30).")
    )
    # GDPR Art. 5(1)(c), 25(2): what this system's logs must never keep; all by default.
    minimise_categories = models.JSONField(
        default=minimisation_default_categories,
        blank=True,
        validators=[validate_minimise_categories],
        help_text=_("Redacted from every message before it is stored (docs/retention.md)."),
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def current_disclosure(self) -> AIDisclosure | None:
        return self.disclosures.order_by("-version").first()


class AIDisclosure(models.Model):
    """The text that tells customers they are talking to an AI (EU AI Act Art. 50), kept as
    numbered versions: a published version is never edited, a new text is a new version."""

    system = models.ForeignKey(System, on_delete=models.CASCADE, related_name="disclosures")
    version = models.PositiveIntegerField()
    text = models.TextField()
    published_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["system", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["system", "version"], name="disclosure_unique_version")
        ]

    def __str__(self) -> str:
        return f"{self.system.slug} disclosure v{self.version}"


class Conversation(models.Model):
    """One conversation a plugin had, in the built-in log store."""

    # No single-column indexes on system and subject: the unique constraint (system,
    # external_id) and the (subject, started_at) index start with them, and every index is
    # paid for on each conversation a plugin sends.
    system = models.ForeignKey(
        System, on_delete=models.PROTECT, related_name="conversations", db_index=False
    )
    subject = models.ForeignKey(
        DataSubject,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="conversations",
        db_index=False,
    )
    external_id = models.CharField(max_length=200, help_text=_("The plugin's conversation id."))
    started_at = models.DateTimeField()
    disclosure = models.ForeignKey(
        AIDisclosure,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="conversations",
        help_text=_("The AI disclosure version shown."),
    )
    disclosure_shown_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["system", "external_id"], name="conversation_unique_external_id"
            )
        ]
        indexes = [models.Index(fields=["subject", "started_at"])]

    def __str__(self) -> str:
        return f"Conversation {self.pk}"


class MessageRole(models.TextChoices):
    CUSTOMER = "customer", _("Customer")
    ASSISTANT = "assistant", _("AI assistant")
    HUMAN_AGENT = "human_agent", _("Human agent")
    SYSTEM = "system", _("System")


class Message(models.Model):
    # No separate index on conversation: the unique constraint below starts with it.
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages", db_index=False
    )
    sequence = models.PositiveIntegerField()
    role = models.CharField(max_length=16, choices=MessageRole.choices)
    text = models.TextField()
    sent_at = models.DateTimeField()

    class Meta:
        ordering = ["conversation", "sequence"]
        constraints = [
            models.UniqueConstraint(
                fields=["conversation", "sequence"], name="message_unique_sequence"
            )
        ]
        indexes = [models.Index(fields=["sent_at"])]

    def __str__(self) -> str:
        return f"Message {self.conversation_id}#{self.sequence}"


class ConnectorKind(models.TextChoices):
    BUILTIN = "builtin", _("Built-in conversation store")
    SQL = "sql", _("External SQL table")
    JSONL = "jsonl", _("Folder of JSONL files")


class LogSource(models.Model):
    """A place where a system's conversation logs live, with its connector's settings."""

    system = models.ForeignKey(System, on_delete=models.PROTECT, related_name="log_sources")
    name = models.CharField(max_length=200)
    connector = models.CharField(
        max_length=16, choices=ConnectorKind.choices, default=ConnectorKind.BUILTIN
    )
    config = models.JSONField(default=dict, blank=True)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["system", "name"]
        constraints = [
            models.UniqueConstraint(fields=["system", "name"], name="logsource_unique_name")
        ]

    def __str__(self) -> str:
        return f"{self.system.slug}: {self.name}"


class AppendOnlyError(ValidationError):
    pass


class AuditEvent(models.Model):
    """An append-only record of who did what, when and why. Each event carries the hash of
    the one before it, so an edited or deleted event breaks the chain (see audit_verify).
    ``detail`` holds no raw personal data: ids and counts, never names or identifiers."""

    occurred_at = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.CharField(max_length=200)
    action = models.CharField(max_length=100, db_index=True)
    target_type = models.CharField(max_length=100, blank=True)
    target_id = models.CharField(max_length=100, blank=True, db_index=True)
    detail = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.action} by {self.actor}"

    def save(self, *args, **kwargs) -> None:
        if self.pk is not None:
            raise AppendOnlyError("Audit events are never changed.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError("Audit events are never deleted.")


class AuditChainHead(models.Model):
    """A single row holding the newest hash of the chain. Appending locks it, which
    serializes appends so two transactions can never fork the chain; a deleted tail event
    shows because the head no longer matches the last event."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    last_hash = models.CharField(max_length=64)
    length = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"audit chain head ({self.length} events)"


class ApiClient(models.Model):
    """A service account (a plugin, the CRM) that calls the REST API."""

    name = models.CharField(max_length=200, unique=True)
    system = models.ForeignKey(
        System,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="api_clients",
        help_text=_("If set, the client may only act for this system."),
    )
    scopes = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    # The API authenticates an ApiClient as DRF's ``request.user``.
    is_authenticated = True
    is_anonymous = False

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes


class ApiKey(models.Model):
    """An API key: shown once, stored as a SHA-256 digest (keys carry 256 bits of
    randomness, so a fast hash is as safe as a slow one and keeps checks cheap)."""

    client = models.ForeignKey(ApiClient, on_delete=models.CASCADE, related_name="keys")
    prefix = models.CharField(max_length=16, help_text=_("First characters, to tell keys apart."))
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}…"


class MessageMention(models.Model):
    """An email address or phone number written in a message's text, normalized like a
    SubjectIdentity, so a subject's identifiers are found in other people's conversations
    through one index lookup instead of a scan of every message. Filled at ingest (and by
    ``backfill_mentions`` for older rows); removed with the message or when its text is
    redacted."""

    # No separate index on message_id: the unique constraint below starts with it.
    message = models.ForeignKey(
        Message, on_delete=models.CASCADE, related_name="mentions", db_index=False
    )
    type = models.CharField(max_length=16, choices=IdentityType.choices)
    value = models.CharField(max_length=320)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["message", "type", "value"], name="mention_unique_message_value"
            )
        ]
        indexes = [models.Index(fields=["type", "value"], name="mention_type_value_idx")]

    def __str__(self) -> str:
        return f"{self.type} mention in message {self.message_id}"


class PendingMentionScan(models.Model):
    """Messages an ingest stored whose mentions are not indexed yet: the few that may hold an
    email address or phone number, as ``[conversation id, sequence]`` pairs. Written in the
    ingest's transaction and deleted in the transaction that indexes them, so a message is
    always either indexed or named here (see ``compliance.mention_index``)."""

    messages = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    def __str__(self) -> str:
        return f"Pending mention scan {self.pk}"


class AnswerFlagCategory(models.TextChoices):
    WRONG = "wrong", _("Wrong")
    HARMFUL = "harmful", _("Harmful")
    BIASED = "biased", _("Biased or unfair")
    OFF_TOPIC = "off_topic", _("Not what I asked")


class AnswerFlagState(models.TextChoices):
    NEW = "new", _("New")
    REVIEWED = "reviewed", _("Reviewed")
    RECTIFICATION = "rectification", _("Led to a rectification")
    DISMISSED = "dismissed", _("Dismissed")


class AnswerFlag(models.Model):
    """A customer's report that an AI answer was wrong, harmful, biased or off the point.
    People must have a way to report AI errors and a human must look at them (EU AI Act
    Art. 14 human oversight; GDPR Art. 16 when the answer holds wrong data about them), so
    every flag lands in the DPO's review queue. The comment is personal data: it goes with
    the message or the subject on erasure (CASCADE) and never into the audit trail."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="flags")
    subject = models.ForeignKey(DataSubject, on_delete=models.CASCADE, related_name="answer_flags")
    category = models.CharField(max_length=16, choices=AnswerFlagCategory.choices)
    comment = models.TextField(blank=True)
    state = models.CharField(
        max_length=16, choices=AnswerFlagState.choices, default=AnswerFlagState.NEW
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # One report per answer and customer: a second click must not queue a duplicate.
            models.UniqueConstraint(fields=["message", "subject"], name="answerflag_unique_report")
        ]
        indexes = [models.Index(fields=["state", "created_at"], name="answerflag_queue_idx")]
        verbose_name = _("reported AI answer")

    def __str__(self) -> str:
        return f"Flag {self.pk} ({self.category})"


# --- Minimisation counts, retention policies, legal holds (docs/retention.md) ---------------


class RedactionCount(models.Model):
    """How many values of a minimisation category were redacted at ingest for a system
    (GDPR Art. 5(1)(c)). Written in bulk once per ingest transaction, never per message."""

    system = models.ForeignKey(System, on_delete=models.CASCADE, related_name="redaction_counts")
    category = models.CharField(max_length=32, choices=MinimisationCategory.choices)
    count = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["system", "category"]
        constraints = [
            models.UniqueConstraint(
                fields=["system", "category"], name="redactioncount_unique_category"
            )
        ]

    def __str__(self) -> str:
        return f"{self.system_id}: {self.category}: {self.count}"


class RetentionAction(models.TextChoices):
    # Same values as compliance.connectors.base.PurgeStrategy, which carries them out.
    DELETE = "delete", _("Delete the records")
    REDACT = "redact", _("Redact personal data in place")
    DETACH = "detach", _("Detach from the subject (text stays, no longer identifies anyone)")


RETENTION_MIN_DAYS = 1
# Ten years: longer than any statutory retention period we know of for conversation logs;
# a larger number is a typo (days for months) rather than a decision.
RETENTION_MAX_DAYS = 3650


def _exactly_one(*fields: str) -> models.Q:
    condition = models.Q(pk__in=[])
    for field in fields:
        condition |= models.Q(
            **{f"{field}__isnull": False},
            **{f"{other}__isnull": True for other in fields if other != field},
        )
    return condition


class RetentionPolicy(models.Model):
    """How long the logs of a source, a system or a data category are kept, and what happens
    to them then (GDPR Art. 5(1)(e) storage limitation). Where several policies cover one
    source the shortest applies (``compliance.retention.effective_policy_for_source``); a
    legal hold suspends it for what the hold covers."""

    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(
        blank=True,
        help_text=_(
            "Why this period: the criteria subjects are told (GDPR Art. 13(2)(a), 15(1)(d))."
        ),
    )
    source = models.ForeignKey(
        LogSource,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="retention_policies",
    )
    system = models.ForeignKey(
        System,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="retention_policies",
    )
    data_category = models.ForeignKey(
        DataCategory,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="retention_policies",
        help_text=_("Covers every source of every system that holds this category."),
    )
    duration_days = models.PositiveIntegerField(
        help_text=_("Keep records this many days after they were sent (1 to 3650).")
    )
    action = models.CharField(
        max_length=16, choices=RetentionAction.choices, default=RetentionAction.DELETE
    )
    on_logging_withdrawal = models.BooleanField(
        default=False,
        help_text=_(
            "Also act on all of a customer's logs in the covered sources as soon as they "
            "withdraw consent to conversation logging (GDPR Art. 7(3), 17(1)(b))."
        ),
    )
    enabled = models.BooleanField(default=True)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    approved_at = models.DateTimeField()
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = _("retention policies")
        constraints = [
            models.CheckConstraint(
                condition=_exactly_one("source", "system", "data_category"),
                name="retentionpolicy_one_scope",
            ),
            models.CheckConstraint(
                condition=models.Q(
                    duration_days__gte=RETENTION_MIN_DAYS, duration_days__lte=RETENTION_MAX_DAYS
                ),
                name="retentionpolicy_duration_range",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def scope_kind(self) -> str:
        if self.source_id:
            return "source"
        if self.system_id:
            return "system"
        return "data_category"

    @property
    def scope_label(self) -> str:
        if self.source_id:
            return f"source {self.source}"
        if self.system_id:
            return f"system {self.system}"
        return f"category {self.data_category}"

    def clean(self) -> None:
        scopes = [self.source_id, self.system_id, self.data_category_id]
        if sum(s is not None for s in scopes) != 1:
            raise ValidationError(
                _("A policy covers exactly one of: a log source, a system or a data category.")
            )
        if self.duration_days is not None and not (
            RETENTION_MIN_DAYS <= self.duration_days <= RETENTION_MAX_DAYS
        ):
            raise ValidationError(
                {
                    "duration_days": _("Give a number of days from %(min)s to %(max)s.")
                    % {"min": RETENTION_MIN_DAYS, "max": RETENTION_MAX_DAYS}
                }
            )


class LegalHoldReason(models.TextChoices):
    # GDPR Art. 17(3): the exceptions to the right to erasure; the subject is told which.
    FREEDOM_OF_EXPRESSION = (
        "expression",
        _("GDPR Art. 17(3)(a): freedom of expression and information"),
    )
    LEGAL_OBLIGATION = (
        "legal_obligation",
        _("GDPR Art. 17(3)(b): a legal obligation or a task in the public interest"),
    )
    PUBLIC_HEALTH = "public_health", _("GDPR Art. 17(3)(c): public health")
    ARCHIVING = (
        "archiving",
        _("GDPR Art. 17(3)(d): archiving in the public interest, research or statistics"),
    )
    LEGAL_CLAIMS = (
        "legal_claims",
        _("GDPR Art. 17(3)(e): establishment, exercise or defence of legal claims"),
    )


class LegalHold(models.Model):
    """Keeps what it covers (one subject's logs everywhere, a whole system, or one source)
    from retention and erasure while it is active: started, not ended, not lifted."""

    subject = models.ForeignKey(
        DataSubject, null=True, blank=True, on_delete=models.CASCADE, related_name="legal_holds"
    )
    system = models.ForeignKey(
        System, null=True, blank=True, on_delete=models.PROTECT, related_name="legal_holds"
    )
    source = models.ForeignKey(
        LogSource, null=True, blank=True, on_delete=models.PROTECT, related_name="legal_holds"
    )
    reason = models.CharField(max_length=32, choices=LegalHoldReason.choices)
    reason_detail = models.TextField(
        blank=True,
        help_text=_("Case or matter reference. Shown to staff only; no personal data."),
    )
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    starts_at = models.DateTimeField(default=timezone.now)
    ends_at = models.DateTimeField(
        null=True, blank=True, help_text=_("Leave empty for a hold until it is lifted.")
    )
    lifted_at = models.DateTimeField(null=True, blank=True)
    lifted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-starts_at"]
        constraints = [
            models.CheckConstraint(
                condition=_exactly_one("subject", "system", "source"),
                name="legalhold_one_scope",
            ),
            models.CheckConstraint(
                condition=models.Q(ends_at__isnull=True)
                | models.Q(ends_at__gt=models.F("starts_at")),
                name="legalhold_ends_after_start",
            ),
        ]

    def __str__(self) -> str:
        return f"Legal hold {self.pk} ({self.scope_label})"

    @property
    def scope_label(self) -> str:
        if self.subject_id:
            return f"subject {str(self.subject_id)[:8]}"
        if self.system_id:
            return f"system {self.system}"
        return f"source {self.source}"

    def is_active(self, at=None) -> bool:
        at = at or timezone.now()
        return (
            self.lifted_at is None
            and self.starts_at <= at
            and (self.ends_at is None or self.ends_at > at)
        )

    def clean(self) -> None:
        scopes = [self.subject_id, self.system_id, self.source_id]
        if sum(s is not None for s in scopes) != 1:
            raise ValidationError(_("A hold covers exactly one of: a subject, a system, a source."))
        if self.ends_at is not None and self.starts_at and self.ends_at <= self.starts_at:
            raise ValidationError({"ends_at": _("The hold must end after it starts.")})


class RetentionRunKind(models.TextChoices):
    SCHEDULED = "scheduled", _("Scheduled (daily)")
    ON_DEMAND = "on_demand", _("On demand")
    WITHDRAWAL = "withdrawal", _("Consent to logging withdrawn")


class RetentionRunStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    RUNNING = "running", _("Running")
    COMPLETED = "completed", _("Completed")
    COMPLETED_WITH_FAILURES = "failures", _("Completed, some sources failed")


class RetentionRun(models.Model):
    """One enforcement of the retention policies (or of one policy, or of the withdrawal
    rule for one subject), with a row per log source in ``sources``."""

    kind = models.CharField(max_length=16, choices=RetentionRunKind.choices)
    status = models.CharField(
        max_length=16, choices=RetentionRunStatus.choices, default=RetentionRunStatus.PENDING
    )
    dry_run = models.BooleanField(default=False)
    policy = models.ForeignKey(
        RetentionPolicy,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="runs",
        help_text=_("Empty: every policy."),
    )
    subject = models.ForeignKey(
        DataSubject,
        null=True,
        blank=True,
        # The run is evidence that outlives a later erasure of the subject.
        on_delete=models.SET_NULL,
        related_name="+",
    )
    requested_by = models.CharField(max_length=200)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    in_scope = models.BigIntegerField(default=0)
    acted_on = models.BigIntegerField(default=0)
    held = models.BigIntegerField(default=0)
    failed = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "created_at"], name="retentionrun_status_idx")]

    def __str__(self) -> str:
        return f"Retention run {self.pk}{' (dry run)' if self.dry_run else ''}"


class RetentionRunSourceStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    RUNNING = "running", _("Running")
    DONE = "done", _("Done")
    HELD = "held", _("Held (legal hold)")
    FAILED = "failed", _("Failed")


class RetentionRunSource(models.Model):
    """What one run did to one log source. ``cursor`` is the connector's position after the
    last committed batch, so an interrupted run resumes there and counts nothing twice."""

    run = models.ForeignKey(RetentionRun, on_delete=models.CASCADE, related_name="sources")
    source = models.ForeignKey(LogSource, on_delete=models.PROTECT, related_name="+")
    policy = models.ForeignKey(
        RetentionPolicy, null=True, on_delete=models.PROTECT, related_name="+"
    )
    action = models.CharField(max_length=16, choices=RetentionAction.choices)
    cutoff = models.DateTimeField(
        null=True, blank=True, help_text=_("Records sent before this are in scope.")
    )
    status = models.CharField(
        max_length=16,
        choices=RetentionRunSourceStatus.choices,
        default=RetentionRunSourceStatus.PENDING,
    )
    in_scope = models.BigIntegerField(default=0)
    acted_on = models.BigIntegerField(default=0)
    held = models.BigIntegerField(default=0)
    failed = models.BigIntegerField(default=0)
    held_reasons = models.JSONField(
        default=list, blank=True, help_text=_("The Art. 17(3) exceptions that applied.")
    )
    error = models.TextField(blank=True)
    cursor = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["run", "source"]
        constraints = [
            models.UniqueConstraint(fields=["run", "source"], name="retentionrunsource_unique")
        ]

    def __str__(self) -> str:
        return f"Run {self.run_id} / source {self.source_id}"
