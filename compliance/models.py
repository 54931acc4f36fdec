"""Core domain: data subjects and their identities, systems, the built-in log store,
log sources, the audit trail and API clients."""

from __future__ import annotations

import uuid

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


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


class SubjectIdentity(models.Model):
    """One normalized identifier of a subject. ``type`` is open for more kinds
    (device ids, account handles); the three in ``IdentityType`` are normalized."""

    subject = models.ForeignKey(DataSubject, on_delete=models.CASCADE, related_name="identities")
    type = models.CharField(max_length=32, choices=IdentityType.choices)
    value = models.CharField(max_length=320)
    verified = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["type", "value"], name="identity_unique_type_value")
        ]
        verbose_name_plural = _("subject identities")

    def __str__(self) -> str:
        return f"{self.type} identity"


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

    system = models.ForeignKey(System, on_delete=models.PROTECT, related_name="conversations")
    subject = models.ForeignKey(
        DataSubject,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="conversations",
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
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages"
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
