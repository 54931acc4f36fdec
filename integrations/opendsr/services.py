"""Filing and cancelling OpenDSR requests. A request becomes an ordinary data subject
request (``dsar.services.request_create``, channel ``api``), filed by the controller's API
client; this module adds the controller's id for it and its callbacks.

Which identity a request is filed under, when several are given: the first one (in the
controller's order) that belongs to a known person — raw, or hashed and matched against the
stored digests — else the first raw one, so the sources are still searched for it (it may
sit in chats); else, for a person named only by digests nobody here has, the first digest,
as an opaque customer id ``"<format>:<hex>"`` that no record carries. That request then runs
like any other and finds nothing, so the controller hears exactly what it would hear about a
known person: the answer never tells whether someone is known here.
"""

from __future__ import annotations

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from compliance.audit import audit_record
from compliance.models import ApiClient, IdentityType
from compliance.selectors import subject_find_by_identity, subject_identity_find_by_hash
from compliance.services import ConflictError
from dsar import services as dsar_services
from dsar.models import Channel, RequestStatus
from integrations.opendsr.callbacks import opendsr_announce, opendsr_status_of
from integrations.opendsr.models import OpenDsrRequest, OpenDsrStatus
from integrations.opendsr.parsing import Submission, SubmittedIdentity

ALREADY_EXISTS = "Subject request already exists."


def _identity_to_file(identities: tuple[SubmittedIdentity, ...]) -> dict[str, str]:
    first_raw: SubmittedIdentity | None = None
    for identity in identities:
        if identity.hashed:
            stored = subject_identity_find_by_hash(
                identity_type=identity.identity_type,
                hash_format=identity.identity_format,
                digest=identity.value,
            )
            if stored is not None:
                return {stored.type: stored.value}
            continue
        if subject_find_by_identity(identity_type=identity.identity_type, value=identity.value):
            return {identity.identity_type: identity.value}
        first_raw = first_raw or identity
    if first_raw is not None:
        return {first_raw.identity_type: first_raw.value}
    digest = identities[0]
    return {IdentityType.CUSTOMER_ID: f"{digest.identity_format}:{digest.value}"}


def opendsr_request_create(
    *, client: ApiClient, submission: Submission, actor: str
) -> OpenDsrRequest:
    """File the request and announce it (``pending``) to its callbacks, in one transaction.
    A ``subject_request_id`` this controller used before is refused (ConflictError)."""
    if OpenDsrRequest.objects.filter(
        client=client, subject_request_id=submission.subject_request_id
    ).exists():
        raise ConflictError(ALREADY_EXISTS, field="subject_request_id")
    identity = _identity_to_file(submission.identities)
    try:
        with transaction.atomic():
            dsr = dsar_services.request_create(
                type=submission.subject_request_type,
                identity=identity,
                channel=Channel.API,
                actor=actor,
                # OpenGDPR v1 had no regulation. Never derived from the person's jurisdiction
                # here: the deadline in the answer would then tell who is known.
                regulation=submission.regulation or settings.DSAR_DEFAULT_REGULATION,
                filed_by=client,
                pre_verified=client.has_scope("dsar:verified"),
            )
            link = OpenDsrRequest.objects.create(
                request=dsr,
                client=client,
                subject_request_id=submission.subject_request_id,
                api_version=submission.api_version,
                submitted_time=submission.submitted_time,
                status_callback_urls=list(submission.status_callback_urls),
            )
            audit_record(
                actor=actor,
                action="opendsr.request.received",
                target=dsr,
                detail={
                    "subject_request_id": str(submission.subject_request_id),
                    "api_version": submission.api_version,
                    "identities": len(submission.identities),
                    "hashed_identities": sum(i.hashed for i in submission.identities),
                    "ignored_identities": submission.ignored_identities,
                    "callback_urls": len(submission.status_callback_urls),
                },
            )
            opendsr_announce(link=link, initial=True)
    except IntegrityError:
        # The same id sent twice at once: the unique index let one through.
        raise ConflictError(ALREADY_EXISTS, field="subject_request_id") from None
    return link


def opendsr_request_cancel(*, link: OpenDsrRequest, actor: str) -> OpenDsrRequest:
    """The controller withdraws its request (OpenDSR section 9): only while ``pending``;
    anything later is a ConflictError."""
    with transaction.atomic():
        link = OpenDsrRequest.objects.select_for_update().select_related("request").get(pk=link.pk)
        status = opendsr_status_of(link)
        if status != OpenDsrStatus.PENDING:
            raise ConflictError(
                f"Only a pending request can be cancelled; this one is {status}.",
                field="subject_request_id",
            )
        dsr = link.request
        if dsr.status != RequestStatus.CANCELLED:
            dsar_services.request_cancel(
                request=dsr, actor=actor, reason="Cancelled by the controller (OpenDSR)."
            )
        # A duplicate's open original belongs to whoever filed it: only this one is withdrawn.
        link.refresh_from_db(fields=["announced_status"])
        link.cancelled_at = timezone.now()
        link.save(update_fields=["cancelled_at"])
        audit_record(
            actor=actor,
            action="opendsr.request.cancelled",
            target=dsr,
            detail={"subject_request_id": str(link.subject_request_id)},
        )
        opendsr_announce(link=link)
    return link
