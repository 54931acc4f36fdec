"""Purposes with their versioned notices, the append-only consent history and the current
state beside it, and the count of conversations the log store refused for consent."""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from compliance.models import (
    AppendOnlyError,
    DataCategory,
    DataSubject,
    Jurisdiction,
    System,
)

# Purposes every installation has (created by migration 0002): the two CCPA opt-outs are
# purposes like any other, so they share the one event history and the one check.
SALE_SHARING = "sale-and-sharing"  # CCPA §7026: "Do not sell or share my personal information"
SENSITIVE_PI = "sensitive-pi-use"  # CCPA §7027: "Limit the use of my sensitive PI"
CONVERSATION_LOGGING = "conversation-logging"
BUILTIN_PURPOSES = (SALE_SHARING, SENSITIVE_PI)

# Jurisdictions where consent-based processing is off until the subject agrees (GDPR Art. 6(1)(a),
# Art. 7); elsewhere processing is on until the subject opts out (CCPA).
OPT_IN_JURISDICTIONS = frozenset({Jurisdiction.EU, Jurisdiction.UK})


class LawfulBasis(models.TextChoices):
    CONSENT = "consent", _("Consent (GDPR Art. 6(1)(a))")
    CONTRACT = "contract", _("Contract (GDPR Art. 6(1)(b))")
    LEGITIMATE_INTEREST = "legitimate_interest", _("Legitimate interest (GDPR Art. 6(1)(f))")
    LEGAL_OBLIGATION = "legal_obligation", _("Legal obligation (GDPR Art. 6(1)(c))")


class ReceiptPurposeCategory(models.TextChoices):
    """Purpose categories of the Kantara Consent Receipt v1.1 (its appendix)."""

    CORE_FUNCTION = "Core Function", _("Core function")
    CONTRACTED_SERVICE = "Contracted Service", _("Contracted service")
    DELIVERY = "Delivery", _("Delivery")
    CONTACT_REQUESTED = "Contact Requested", _("Contact requested")
    PERSONALIZED_EXPERIENCE = "Personalized Experience", _("Personalized experience")
    MARKETING = "Marketing", _("Marketing")
    MARKETING_THIRD_PARTIES = "Marketing Third Parties", _("Marketing by third parties")
    SHARING_FOR_DELIVERY = "Sharing for Delivery", _("Sharing for delivery")
    SHARING_FOR_MARKETING = "Sharing for Marketing", _("Sharing for marketing")
    THIRD_PARTY_CORE_FUNCTION = (
        "3rd Party Sharing for Core Function",
        _("Third-party sharing for a core function"),
    )
    LEGALLY_REQUIRED_RETENTION = "Legally Required Data Retention", _("Legally required retention")
    IMPROVE_PERFORMANCE = "Improve Performance", _("Improve performance")


class Purpose(models.Model):
    """Something the company does with personal data, which customers may allow or refuse."""

    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(help_text=_("Plain language, as customers read it."))
    lawful_basis = models.CharField(
        max_length=24, choices=LawfulBasis.choices, default=LawfulBasis.CONSENT
    )
    sensitive = models.BooleanField(
        default=False,
        help_text=_(
            "Uses sensitive personal information: a 'limit the use of my sensitive personal "
            "information' opt-out turns it off (CCPA §7027)."
        ),
    )
    sold_or_shared = models.BooleanField(
        default=False,
        help_text=_(
            "Sells or shares personal information (CCPA): an opt-out of sale/sharing or a "
            "Global Privacy Control signal turns it off (§7026, §7025)."
        ),
    )
    third_party_name = models.CharField(
        max_length=200,
        blank=True,
        help_text=_("Who receives the data, if it is disclosed to a third party."),
    )
    receipt_category = models.CharField(
        max_length=64,
        choices=ReceiptPurposeCategory.choices,
        default=ReceiptPurposeCategory.CORE_FUNCTION,
        help_text=_("The purpose category named in consent receipts."),
    )
    data_categories = models.ManyToManyField(DataCategory, blank=True, related_name="purposes")
    systems = models.ManyToManyField(System, blank=True, related_name="purposes")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def current_notice(self) -> PurposeNotice | None:
        return self.notices.order_by("-version").first()


class PurposeNotice(models.Model):
    """The text customers are shown for a purpose. A published version is never edited: a
    consent must stay provable against exactly what the customer read (GDPR Art. 7(1))."""

    purpose = models.ForeignKey(Purpose, on_delete=models.PROTECT, related_name="notices")
    version = models.PositiveIntegerField()
    text = models.TextField()
    published_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["purpose", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["purpose", "version"], name="notice_unique_version")
        ]

    def __str__(self) -> str:
        return f"{self.purpose.slug} notice v{self.version}"

    def save(self, *args, **kwargs) -> None:
        if self.pk is not None:
            raise AppendOnlyError("A published notice is never changed; publish a new version.")
        super().save(*args, **kwargs)


class ConsentAction(models.TextChoices):
    GRANT = "grant", _("Grant")
    WITHDRAW = "withdraw", _("Withdraw")
    OBJECT = "object", _("Object")
    OPT_OUT = "opt_out", _("Opt out")
    OPT_IN = "opt_in", _("Opt in")


class ConsentSource(models.TextChoices):
    PORTAL = "portal", _("Privacy portal")
    API = "api", _("API")
    PLUGIN = "plugin", _("Chatbot plugin")
    ADMIN = "admin", _("Admin (DPO)")
    GPC = "gpc", _("Global Privacy Control signal")


class ConsentStatus(models.TextChoices):
    GRANTED = "granted", _("Granted")
    WITHDRAWN = "withdrawn", _("Withdrawn")
    OBJECTED = "objected", _("Objected")
    OPTED_OUT = "opted_out", _("Opted out")


# What each action leaves behind. An opt-in (CCPA) and a grant both allow.
STATUS_AFTER = {
    ConsentAction.GRANT: ConsentStatus.GRANTED,
    ConsentAction.OPT_IN: ConsentStatus.GRANTED,
    ConsentAction.WITHDRAW: ConsentStatus.WITHDRAWN,
    ConsentAction.OBJECT: ConsentStatus.OBJECTED,
    ConsentAction.OPT_OUT: ConsentStatus.OPTED_OUT,
}


class ConsentEvent(models.Model):
    """One grant, withdrawal, objection, opt-out or opt-in. Never edited or deleted: it is
    the evidence (GDPR Art. 7(1)); it goes only when the subject is erased (cascade)."""

    receipt_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    subject = models.ForeignKey(
        DataSubject, on_delete=models.CASCADE, related_name="consent_events"
    )
    purpose = models.ForeignKey(Purpose, on_delete=models.PROTECT, related_name="events")
    action = models.CharField(max_length=16, choices=ConsentAction.choices)
    source = models.CharField(max_length=16, choices=ConsentSource.choices)
    notice = models.ForeignKey(
        PurposeNotice,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="events",
        help_text=_("The notice version the customer saw."),
    )
    jurisdiction = models.CharField(max_length=8, choices=Jurisdiction.choices)
    occurred_at = models.DateTimeField(default=timezone.now)
    actor = models.CharField(max_length=200)
    # The requesting system, the API client, a keyed hash of the IP: never the raw IP.
    evidence = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-occurred_at", "-id"]
        indexes = [models.Index(fields=["subject", "purpose", "id"])]

    def __str__(self) -> str:
        return f"{self.action} {self.purpose_id} ({self.source})"

    def save(self, *args, **kwargs) -> None:
        if self.pk is not None:
            raise AppendOnlyError("Consent events are never changed.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError("Consent events are never deleted.")


class ConsentState(models.Model):
    """The current answer per subject and purpose, written in the transaction that appends
    the event that changed it. Only explicit choices have a row; no row means the default."""

    subject = models.ForeignKey(
        DataSubject, on_delete=models.CASCADE, related_name="consent_states"
    )
    purpose = models.ForeignKey(Purpose, on_delete=models.PROTECT, related_name="states")
    status = models.CharField(max_length=16, choices=ConsentStatus.choices)
    source = models.CharField(max_length=16, choices=ConsentSource.choices)
    since = models.DateTimeField(help_text=_("When the subject's choice took this status."))
    # CASCADE: both go when the subject is erased; an event is never deleted otherwise.
    last_event = models.ForeignKey(ConsentEvent, on_delete=models.CASCADE, related_name="+")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["subject", "purpose"]
        constraints = [
            models.UniqueConstraint(fields=["subject", "purpose"], name="consent_state_unique")
        ]

    def __str__(self) -> str:
        return f"{self.purpose_id}: {self.status}"


class IngestRefusal(models.Model):
    """How many conversations the built-in log store refused per system because the customer
    withdrew, objected to or opted out of conversation logging. A counter, not a log: the
    refused conversations are not kept anywhere."""

    system_slug = models.SlugField(unique=True)
    count = models.PositiveBigIntegerField(default=0)
    last_refused_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["system_slug"]
        verbose_name = _("log refusal count")

    def __str__(self) -> str:
        return f"{self.system_slug}: {self.count}"
