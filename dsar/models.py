"""Data subject requests: the request with its lifecycle and deadlines, one task row per log
source, verification codes, erasure certificates and the pseudonymized record kept after
the request is answered.

State changes never happen here: every transition goes through ``dsar.services``."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from compliance.models import ApiClient, DataSubject, LogSource


class RequestType(models.TextChoices):
    ACCESS = "access", _("Access (copy of the data)")
    PORTABILITY = "portability", _("Portability (machine-readable copy)")
    ERASURE = "erasure", _("Erasure")
    RECTIFICATION = "rectification", _("Rectification")
    RESTRICTION = "restriction", _("Restriction of processing")
    OBJECTION = "objection", _("Objection to processing")
    OPT_OUT_SALE = "opt_out_sale", _("Opt-out of sale/sharing")
    LIMIT_SENSITIVE = "limit_sensitive", _("Limit use of sensitive personal information")


# Types carried out across every log source by Celery; the others act on this service's own
# records in one transaction.
FAN_OUT_TYPES = frozenset({RequestType.ACCESS, RequestType.PORTABILITY, RequestType.ERASURE})
EXPORT_TYPES = frozenset({RequestType.ACCESS, RequestType.PORTABILITY})
# CCPA §7026/§7027: opt-out and limit requests are not verified.
UNVERIFIED_TYPES = frozenset({RequestType.OPT_OUT_SALE, RequestType.LIMIT_SENSITIVE})


class Regulation(models.TextChoices):
    GDPR = "gdpr", _("GDPR / UK GDPR")
    CCPA = "ccpa", _("CCPA / CPRA")


class Channel(models.TextChoices):
    PORTAL = "portal", _("Privacy portal")
    API = "api", _("API")
    ADMIN = "admin", _("Entered by staff")
    EMAIL = "email", _("Email (entered by staff)")
    PHONE = "phone", _("Phone (entered by staff)")


class RequestStatus(models.TextChoices):
    RECEIVED = "received", _("Received")
    AWAITING_VERIFICATION = "awaiting_verification", _("Awaiting identity verification")
    VERIFIED = "verified", _("Identity verified")
    AWAITING_APPROVAL = "awaiting_approval", _("Awaiting approval")
    IN_PROGRESS = "in_progress", _("In progress")
    COMPLETED = "completed", _("Completed")
    PARTIALLY_COMPLETED = "partially_completed", _("Partially completed")
    REJECTED = "rejected", _("Rejected")
    CANCELLED = "cancelled", _("Cancelled")


S = RequestStatus
# The lifecycle. A partially completed request goes back in progress when its failed
# sources are retried; completed, rejected and cancelled are final.
TRANSITIONS: dict[str, frozenset[str]] = {
    S.RECEIVED: frozenset({S.AWAITING_VERIFICATION, S.VERIFIED, S.REJECTED, S.CANCELLED}),
    S.AWAITING_VERIFICATION: frozenset({S.VERIFIED, S.REJECTED, S.CANCELLED}),
    S.VERIFIED: frozenset({S.AWAITING_APPROVAL, S.IN_PROGRESS, S.REJECTED, S.CANCELLED}),
    S.AWAITING_APPROVAL: frozenset({S.IN_PROGRESS, S.REJECTED, S.CANCELLED}),
    S.IN_PROGRESS: frozenset({S.COMPLETED, S.PARTIALLY_COMPLETED}),
    S.PARTIALLY_COMPLETED: frozenset({S.IN_PROGRESS}),
    S.COMPLETED: frozenset(),
    S.REJECTED: frozenset(),
    S.CANCELLED: frozenset(),
}
OPEN_STATUSES = frozenset(
    {S.RECEIVED, S.AWAITING_VERIFICATION, S.VERIFIED, S.AWAITING_APPROVAL, S.IN_PROGRESS}
)
# A deadline no longer runs once the request is answered.
ANSWERED_STATUSES = frozenset({S.COMPLETED, S.PARTIALLY_COMPLETED, S.REJECTED, S.CANCELLED})


class DataSubjectRequest(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    type = models.CharField(max_length=20, choices=RequestType.choices)
    regulation = models.CharField(max_length=8, choices=Regulation.choices)
    channel = models.CharField(max_length=8, choices=Channel.choices)
    status = models.CharField(
        max_length=24, choices=RequestStatus.choices, default=RequestStatus.RECEIVED
    )
    # Null while the identity given matches nobody: the request is still answered (the
    # sources are searched by the identity given) and the caller is never told.
    subject = models.ForeignKey(
        DataSubject,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="requests",
    )
    identity_type = models.CharField(max_length=32)
    identity_value = models.CharField(
        max_length=320, blank=True, help_text=_("Normalized; cleared after an erasure.")
    )
    contact_email = models.EmailField(
        blank=True, help_text=_("Where notices go; cleared after an erasure.")
    )
    # Keyed hash of the subject (or of the identity given): binds download links to the
    # subject and survives the erasure of the subject row. See dsar.records.subject_ref.
    subject_ref = models.CharField(max_length=64, db_index=True)
    filed_by = models.ForeignKey(
        ApiClient,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="dsar_requests",
        help_text=_("The API client that filed it; clients bound to a system see only these."),
    )
    # CCPA §7063: an authorized agent acting with the consumer's signed permission.
    agent_name = models.CharField(max_length=200, blank=True)
    agent_permission_note = models.TextField(blank=True)
    details = models.JSONField(
        default=dict,
        blank=True,
        help_text=_("Type-specific input, e.g. the corrections and statement of a rectification."),
    )
    duplicate_of = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="duplicates",
        help_text=_("An open request of the same type for the same subject; this one is not run."),
    )

    received_at = models.DateTimeField(default=timezone.now)
    due_at = models.DateTimeField()
    confirmation_due_at = models.DateTimeField(null=True, blank=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    extended_at = models.DateTimeField(null=True, blank=True)
    extension_reason = models.TextField(blank=True)
    verified_at = models.DateTimeField(null=True, blank=True)
    verification_method = models.CharField(max_length=32, blank=True)
    approved_at = models.DateTimeField(null=True, blank=True)
    approved_by = models.CharField(max_length=200, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    rejection_reason = models.TextField(blank=True, help_text=_("Shown to the subject."))
    cancelled_reason = models.CharField(max_length=200, blank=True)
    outcome_note = models.TextField(
        blank=True, help_text=_("What the subject is told on completion (e.g. holds applied).")
    )

    # The export package of an access or portability request.
    export_path = models.CharField(max_length=500, blank=True)
    export_sha256 = models.CharField(max_length=64, blank=True)
    export_size = models.BigIntegerField(null=True, blank=True)
    export_expires_at = models.DateTimeField(null=True, blank=True)
    export_deleted_at = models.DateTimeField(null=True, blank=True)

    # Set while a finalizer builds the package, so the watchdog does not start a second one.
    finalize_heartbeat_at = models.DateTimeField(null=True, blank=True)

    # GDPR Art. 18: the subject is told before a restriction is lifted.
    restriction_lift_announced_at = models.DateTimeField(null=True, blank=True)
    restriction_lifted_at = models.DateTimeField(null=True, blank=True)

    # The DPO workspace (compliance/workspace, docs/workspace.md): who works the request,
    # what staff saw when they verified the identity, and the first of two approvals of a
    # large erasure (DSAR_FOUR_EYES_*).
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="assigned_requests",
    )
    verification_note = models.TextField(
        blank=True, help_text=_("The evidence staff saw when verifying by hand. Staff only.")
    )
    first_approved_by = models.CharField(max_length=200, blank=True)
    first_approved_at = models.DateTimeField(null=True, blank=True)
    approval_records_estimate = models.PositiveBigIntegerField(
        null=True, blank=True, help_text=_("Records the erasure touches, counted at approval.")
    )

    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["due_at"]
        verbose_name = _("data subject request")
        constraints = [
            # One open request per subject and type; a second one is filed as its duplicate
            # and not run (checked in the service, enforced here against races).
            models.UniqueConstraint(
                fields=["subject_ref", "type"],
                condition=models.Q(
                    status__in=[
                        "received",
                        "awaiting_verification",
                        "verified",
                        "awaiting_approval",
                        "in_progress",
                    ],
                    duplicate_of__isnull=True,
                ),
                name="dsar_one_open_request_per_type",
            )
        ]
        indexes = [
            models.Index(fields=["status", "due_at"]),
            models.Index(fields=["subject", "type", "status"]),
            models.Index(fields=["identity_type", "identity_value"]),
        ]

    def __str__(self) -> str:
        return f"{self.get_type_display()} request {str(self.id)[:8]}"

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES


class SourceTaskStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    RUNNING = "running", _("Running")
    DONE = "done", _("Done")
    FAILED = "failed", _("Failed")
    HELD = "held", _("Held (legal hold, not erased)")


TERMINAL_TASK_STATUSES = frozenset(
    {SourceTaskStatus.DONE, SourceTaskStatus.FAILED, SourceTaskStatus.HELD}
)


class SourceTask(models.Model):
    """The work of one request in one log source. The row, not the broker, is the truth:
    a lost message or a killed worker leaves the row pending or running, and the watchdog
    sends it again."""

    request = models.ForeignKey(
        DataSubjectRequest, on_delete=models.CASCADE, related_name="source_tasks"
    )
    source = models.ForeignKey(LogSource, on_delete=models.PROTECT, related_name="dsar_tasks")
    status = models.CharField(
        max_length=8, choices=SourceTaskStatus.choices, default=SourceTaskStatus.PENDING
    )
    # Incremented by every claim; a run may only finish the row while it still holds the
    # attempt number it claimed, so a run the watchdog gave up on cannot overwrite a newer one.
    attempts = models.PositiveIntegerField(default=0)
    # Attempts used before the last manual retry: each retry gets a fresh budget while
    # ``attempts`` keeps growing (it is the fencing token above).
    retries_from = models.PositiveIntegerField(default=0)
    not_before = models.DateTimeField(
        null=True, blank=True, help_text=_("Backoff: not run again before this time.")
    )
    records_found = models.PositiveBigIntegerField(
        null=True, blank=True, help_text=_("Keyed records plus mentions, before any erasure.")
    )
    mentions_found = models.PositiveBigIntegerField(null=True, blank=True)
    records_erased = models.PositiveBigIntegerField(null=True, blank=True)
    records_remaining = models.PositiveBigIntegerField(null=True, blank=True)
    strategy = models.CharField(max_length=16, blank=True)
    held_reason = models.CharField(max_length=300, blank=True)
    error = models.CharField(max_length=500, blank=True, help_text=_("Never personal data."))
    summary = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["request", "source"]
        constraints = [
            models.UniqueConstraint(fields=["request", "source"], name="sourcetask_unique_source")
        ]
        indexes = [models.Index(fields=["status", "heartbeat_at"])]

    def __str__(self) -> str:
        return f"Source task {self.pk}"

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_TASK_STATUSES


class VerificationCode(models.Model):
    """A one-time code emailed to the subject. Only a keyed hash is stored."""

    request = models.ForeignKey(
        DataSubjectRequest, on_delete=models.CASCADE, related_name="verification_codes"
    )
    code_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    attempts = models.PositiveSmallIntegerField(default=0)
    used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Verification code {self.pk}"


class SupplementaryStatement(models.Model):
    """GDPR Art. 16: incomplete data completed by the subject's own statement. Shown with
    their data in every later access response."""

    subject = models.ForeignKey(
        DataSubject, on_delete=models.CASCADE, related_name="supplementary_statements"
    )
    request = models.ForeignKey(
        DataSubjectRequest, null=True, on_delete=models.SET_NULL, related_name="statements"
    )
    text = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at"]

    def __str__(self) -> str:
        return f"Statement {self.pk}"


class ErasureCertificate(models.Model):
    """Proof of an erasure: per source the counts before and after, and when. Holds no
    identities, so it outlives the subject."""

    request = models.OneToOneField(
        DataSubjectRequest, on_delete=models.CASCADE, related_name="certificate"
    )
    issued_at = models.DateTimeField(default=timezone.now)
    body = models.JSONField()

    def __str__(self) -> str:
        return f"Erasure certificate {self.request_id}"


class RequestRecord(models.Model):
    """CCPA §7101: for 24 months, the request date, nature and manner of the request, the
    response date, the nature of the response and the basis of any denial — and nothing
    that identifies the consumer (the subject is a keyed hash)."""

    request_id = models.UUIDField(unique=True)
    type = models.CharField(max_length=20, choices=RequestType.choices)
    regulation = models.CharField(max_length=8, choices=Regulation.choices)
    channel = models.CharField(max_length=8, choices=Channel.choices)
    subject_hash = models.CharField(max_length=64, db_index=True)
    received_at = models.DateTimeField()
    responded_at = models.DateTimeField()
    due_at = models.DateTimeField()
    extended = models.BooleanField(default=False)
    outcome = models.CharField(max_length=24, choices=RequestStatus.choices)
    denial_basis = models.TextField(blank=True)
    via_agent = models.BooleanField(default=False)
    keep_until = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-responded_at"]

    def __str__(self) -> str:
        return f"Record of request {str(self.request_id)[:8]}"
