"""Every change to retention policies and legal holds, and retention enforcement. The admin,
the management command, Celery tasks and the consent app all call these; each owns its
transaction and writes an audit event in it."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import DatabaseError, transaction
from django.db.models import F, Q, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from compliance.audit import audit_record
from compliance.dispatch import task_publish_on_commit
from compliance.models import (
    RETENTION_MAX_DAYS,
    RETENTION_MIN_DAYS,
    DataCategory,
    DataSubject,
    LegalHold,
    LegalHoldReason,
    LogSource,
    RetentionAction,
    RetentionPolicy,
    RetentionRun,
    RetentionRunKind,
    RetentionRunSource,
    RetentionRunSourceStatus,
    RetentionRunStatus,
    System,
)
from compliance.retention.selectors import (
    effective_policies,
    held_subjects_for_source,
    hold_reasons,
    holds_active,
    policies_covering,
    source_holds,
)
from compliance.services import ConflictError, ServiceError

logger = logging.getLogger(__name__)


# --- Policies ---------------------------------------------------------------------------------


def _check_duration(duration_days: object) -> int:
    if isinstance(duration_days, bool) or not isinstance(duration_days, int):
        raise ServiceError("Give the duration as a whole number of days.", field="duration_days")
    if duration_days < RETENTION_MIN_DAYS:
        raise ServiceError(
            f"The duration must be at least {RETENTION_MIN_DAYS} day; to stop keeping "
            "logs at all, turn logging off in the plugin instead.",
            field="duration_days",
        )
    if duration_days > RETENTION_MAX_DAYS:
        raise ServiceError(
            f"The duration may be at most {RETENTION_MAX_DAYS} days (ten years). To keep "
            "records longer for a legal reason, place a legal hold on them.",
            field="duration_days",
        )
    return duration_days


def _check_scope(
    *, source_id: int | None, system_id: int | None, data_category_id: int | None
) -> None:
    given = [v for v in (source_id, system_id, data_category_id) if v is not None]
    if len(given) != 1:
        raise ServiceError(
            "A policy covers exactly one of: a log source, a system or a data category.",
            field="scope",
        )
    for value, model, field, noun in (
        (source_id, LogSource, "source", "log source"),
        (system_id, System, "system", "system"),
        (data_category_id, DataCategory, "data_category", "data category"),
    ):
        if value is None:
            continue
        if not isinstance(value, int) or not model.objects.filter(pk=value).exists():
            raise ServiceError(f"No {noun} with id {value} exists.", field=field)


def _check_policy_fields(
    *,
    name: str,
    action: str,
    approved_by: AbstractBaseUser | None,
    policy_id: int | None = None,
) -> str:
    name = (name or "").strip()
    if not name:
        raise ServiceError("A policy needs a name.", field="name")
    if action not in RetentionAction.values:
        raise ServiceError(
            f"The action is one of: {', '.join(RetentionAction.values)}.", field="action"
        )
    if approved_by is None or approved_by.pk is None or not approved_by.is_active:
        raise ServiceError(
            "A policy must be approved by an active staff user.", field="approved_by"
        )
    if RetentionPolicy.objects.filter(name=name).exclude(pk=policy_id).exists():
        raise ConflictError("A retention policy with this name exists.", field="name")
    return name


def _policy_detail(policy: RetentionPolicy) -> dict:
    return {
        "name": policy.name,
        "scope": policy.scope_kind,
        "scope_id": policy.source_id or policy.system_id or policy.data_category_id,
        "duration_days": policy.duration_days,
        "action": policy.action,
        "on_logging_withdrawal": policy.on_logging_withdrawal,
        "enabled": policy.enabled,
        "approved_by": policy.approved_by_id,
    }


def retention_policy_create(
    *,
    name: str,
    duration_days: int,
    approved_by: AbstractBaseUser,
    actor: str,
    source_id: int | None = None,
    system_id: int | None = None,
    data_category_id: int | None = None,
    action: str = RetentionAction.DELETE,
    on_logging_withdrawal: bool = False,
    description: str = "",
    enabled: bool = True,
) -> RetentionPolicy:
    """Create a policy, approved by ``approved_by`` now (GDPR Art. 5(2): the controller must
    be able to show who decided how long logs are kept)."""
    duration_days = _check_duration(duration_days)
    _check_scope(source_id=source_id, system_id=system_id, data_category_id=data_category_id)
    name = _check_policy_fields(name=name, action=action, approved_by=approved_by)
    with transaction.atomic():
        policy = RetentionPolicy.objects.create(
            name=name,
            description=description.strip(),
            source_id=source_id,
            system_id=system_id,
            data_category_id=data_category_id,
            duration_days=duration_days,
            action=action,
            on_logging_withdrawal=on_logging_withdrawal,
            enabled=enabled,
            approved_by=approved_by,
            approved_at=timezone.now(),
        )
        audit_record(
            actor=actor,
            action="retention_policy.created",
            target=policy,
            detail=_policy_detail(policy),
        )
    return policy


def retention_policy_update(
    *,
    policy: RetentionPolicy,
    approved_by: AbstractBaseUser,
    actor: str,
    name: str,
    duration_days: int,
    source_id: int | None = None,
    system_id: int | None = None,
    data_category_id: int | None = None,
    action: str = RetentionAction.DELETE,
    on_logging_withdrawal: bool = False,
    description: str = "",
    enabled: bool = True,
) -> RetentionPolicy:
    """Change a policy. A change is a new decision, so it is approved again by whoever makes
    it; the audit event keeps the values before and after."""
    duration_days = _check_duration(duration_days)
    _check_scope(source_id=source_id, system_id=system_id, data_category_id=data_category_id)
    name = _check_policy_fields(
        name=name, action=action, approved_by=approved_by, policy_id=policy.pk
    )
    with transaction.atomic():
        current = RetentionPolicy.objects.select_for_update().get(pk=policy.pk)
        before = _policy_detail(current)
        current.name = name
        current.description = description.strip()
        current.source_id = source_id
        current.system_id = system_id
        current.data_category_id = data_category_id
        current.duration_days = duration_days
        current.action = action
        current.on_logging_withdrawal = on_logging_withdrawal
        current.enabled = enabled
        current.approved_by = approved_by
        current.approved_at = timezone.now()
        current.save()
        audit_record(
            actor=actor,
            action="retention_policy.updated",
            target=current,
            detail={"before": before, "after": _policy_detail(current)},
        )
    return current


# --- Legal holds ------------------------------------------------------------------------------


def legal_hold_create(
    *,
    reason: str,
    owner: AbstractBaseUser,
    actor: str,
    subject_id: UUID | str | None = None,
    system_id: int | None = None,
    source_id: int | None = None,
    reason_detail: str = "",
    starts_at: datetime | None = None,
    ends_at: datetime | None = None,
) -> LegalHold:
    """Place a hold: what it covers is kept from retention and erasure until it ends or is
    lifted (GDPR Art. 17(3))."""
    given = [v for v in (subject_id, system_id, source_id) if v is not None]
    if len(given) != 1:
        raise ServiceError(
            "A hold covers exactly one of: a data subject, a system or a log source.",
            field="scope",
        )
    if subject_id is not None:
        try:
            subject_id = UUID(str(subject_id))
        except ValueError:
            raise ServiceError("No data subject with this id exists.", field="subject") from None
        if not DataSubject.objects.filter(pk=subject_id).exists():
            raise ServiceError("No data subject with this id exists.", field="subject")
    if system_id is not None and not System.objects.filter(pk=system_id).exists():
        raise ServiceError(f"No system with id {system_id} exists.", field="system")
    if source_id is not None and not LogSource.objects.filter(pk=source_id).exists():
        raise ServiceError(f"No log source with id {source_id} exists.", field="source")
    if reason not in LegalHoldReason.values:
        raise ServiceError(
            "The reason is one of the GDPR Art. 17(3) exceptions: "
            f"{', '.join(LegalHoldReason.values)}.",
            field="reason",
        )
    if owner is None or owner.pk is None:
        raise ServiceError("A hold needs an owner.", field="owner")
    starts_at = starts_at or timezone.now()
    for value, field in ((starts_at, "starts_at"), (ends_at, "ends_at")):
        if value is not None and timezone.is_naive(value):
            raise ServiceError("Give the time with a UTC offset.", field=field)
    if ends_at is not None and ends_at <= starts_at:
        raise ServiceError("The hold must end after it starts.", field="ends_at")
    with transaction.atomic():
        hold = LegalHold.objects.create(
            subject_id=subject_id,
            system_id=system_id,
            source_id=source_id,
            reason=reason,
            reason_detail=reason_detail.strip(),
            owner=owner,
            starts_at=starts_at,
            ends_at=ends_at,
        )
        audit_record(
            actor=actor, action="legal_hold.placed", target=hold, detail=_hold_detail(hold)
        )
    return hold


def _hold_detail(hold: LegalHold) -> dict:
    # The free-text detail stays out: staff may have written a name into it.
    return {
        "scope": "subject" if hold.subject_id else "system" if hold.system_id else "source",
        "scope_id": str(hold.subject_id or hold.system_id or hold.source_id),
        "reason": hold.reason,
        "owner": hold.owner_id,
        "starts_at": hold.starts_at.isoformat(),
        "ends_at": hold.ends_at.isoformat() if hold.ends_at else None,
    }


def legal_hold_update(
    *,
    hold: LegalHold,
    actor: str,
    reason: str,
    reason_detail: str,
    ends_at: datetime | None,
    owner: AbstractBaseUser,
) -> LegalHold:
    """Change a hold's reason, owner or end. Its scope and start are fixed: a hold that
    should cover something else is a new hold."""
    if reason not in LegalHoldReason.values:
        raise ServiceError("Unknown reason.", field="reason")
    if ends_at is not None and timezone.is_naive(ends_at):
        raise ServiceError("Give the time with a UTC offset.", field="ends_at")
    with transaction.atomic():
        current = LegalHold.objects.select_for_update().get(pk=hold.pk)
        if current.lifted_at is not None:
            raise ConflictError("This hold was lifted; place a new one.", field="hold")
        if ends_at is not None and ends_at <= current.starts_at:
            raise ServiceError("The hold must end after it starts.", field="ends_at")
        current.reason = reason
        current.reason_detail = reason_detail.strip()
        current.ends_at = ends_at
        current.owner = owner
        current.save(update_fields=["reason", "reason_detail", "ends_at", "owner"])
        audit_record(
            actor=actor, action="legal_hold.updated", target=current, detail=_hold_detail(current)
        )
    return current


def legal_hold_lift(*, hold: LegalHold, lifted_by: AbstractBaseUser, actor: str) -> LegalHold:
    """Lift a hold now. Retention catches up on what it kept at its next run; erasures the
    hold stopped must be run again by the DSAR team."""
    now = timezone.now()
    with transaction.atomic():
        lifted = LegalHold.objects.filter(pk=hold.pk, lifted_at__isnull=True).update(
            lifted_at=now, lifted_by=lifted_by
        )
        if not lifted:
            raise ConflictError("This hold was already lifted.", field="hold")
        hold.refresh_from_db()
        audit_record(
            actor=actor,
            action="legal_hold.lifted",
            target=hold,
            detail={**_hold_detail(hold), "lifted_by": lifted_by.pk},
        )
    return hold


# --- Enforcement ------------------------------------------------------------------------------


def retention_run_create(
    *,
    actor: str,
    kind: str = RetentionRunKind.ON_DEMAND,
    policy: RetentionPolicy | None = None,
    dry_run: bool = False,
) -> RetentionRun:
    """Plan a run: one row per enabled log source, with the policy that governs it, its
    action and its cut-off, fixed now so a resumed run acts on the same records. With
    ``policy``, only the sources it governs (where a shorter policy overrides it, running
    it would change nothing the shorter one does not)."""
    if kind not in (RetentionRunKind.ON_DEMAND, RetentionRunKind.SCHEDULED):
        raise ServiceError("Withdrawal runs start from retention_on_consent_withdrawn.")
    if policy is not None and not policy.enabled:
        raise ServiceError("This policy is disabled; enable it before running it.", field="policy")
    with transaction.atomic():
        run = RetentionRun.objects.create(
            kind=kind, policy=policy, dry_run=dry_run, requested_by=actor
        )
        sources = list(LogSource.objects.filter(enabled=True).select_related("system"))
        effective = effective_policies(sources)
        rows = []
        for source in sources:
            governing = effective[source.pk]
            if governing is None or (policy is not None and governing.pk != policy.pk):
                continue
            rows.append(
                RetentionRunSource(
                    run=run,
                    source=source,
                    policy=governing,
                    action=governing.action,
                    cutoff=run.created_at - timedelta(days=governing.duration_days),
                )
            )
        RetentionRunSource.objects.bulk_create(rows)
        audit_record(
            actor=actor,
            action="retention.run_planned",
            target=run,
            detail={
                "kind": kind,
                "dry_run": dry_run,
                "policy": policy.pk if policy else None,
                "sources": [r.source_id for r in rows],
            },
        )
    return run


def retention_on_consent_withdrawn(
    *, subject: DataSubject, purpose_slug: str, actor: str = "consent"
) -> RetentionRun | None:
    """The withdrawal rule (GDPR Art. 7(3), 17(1)(b)): when a customer withdraws consent to
    conversation logging, act on all of their logs in every source an enabled policy with
    ``on_logging_withdrawal`` covers, with that policy's action. Other purposes are ignored.

    Safe to call inside the consent transaction: it only plans a run, which a Celery task
    carries out after the commit. Returns the run, or None if no policy asks for this."""
    if purpose_slug != settings.RETENTION_LOGGING_PURPOSE:
        return None
    sources = list(LogSource.objects.filter(enabled=True).select_related("system"))
    covering = policies_covering(sources)
    rows = []
    for source in sources:
        flagged = [p for p in covering[source.pk] if p.on_logging_withdrawal]
        if flagged:
            rows.append((source, flagged[0]))
    if not rows:
        return None
    with transaction.atomic():
        run = RetentionRun.objects.create(
            kind=RetentionRunKind.WITHDRAWAL, subject=subject, requested_by=actor
        )
        RetentionRunSource.objects.bulk_create(
            RetentionRunSource(run=run, source=source, policy=policy, action=policy.action)
            for source, policy in rows
        )
        audit_record(
            actor=actor,
            action="retention.withdrawal_planned",
            target=run,
            detail={
                "subject": str(subject.pk),
                "purpose": purpose_slug,
                "sources": [source.pk for source, _ in rows],
            },
        )
        retention_run_dispatch(run_id=run.pk)
    return run


def retention_run_dispatch(*, run_id: int) -> None:
    """Hand a planned run to a Celery worker once the current transaction commits (at once
    outside one), so the worker never looks for a run that is not there yet."""
    from compliance.tasks import retention_run_execute_task

    task_publish_on_commit(retention_run_execute_task, [run_id])


@dataclass(frozen=True)
class _Limits:
    batch_size: int
    max_batches: int | None
    lease: timedelta


class _LostLease(Exception):
    """Another worker took this source over (ours looked dead): stop without counting."""


def _claim(row: RetentionRunSource, lease: timedelta) -> int | None:
    """Take a pending source, or one whose worker stopped sending heartbeats. Returns the
    attempt number that identifies our lease, or None if another worker holds it."""
    now = timezone.now()
    claimable = Q(status=RetentionRunSourceStatus.PENDING) | Q(
        status=RetentionRunSourceStatus.RUNNING, heartbeat_at__lt=now - lease
    )
    claimed = RetentionRunSource.objects.filter(claimable, pk=row.pk).update(
        status=RetentionRunSourceStatus.RUNNING,
        attempts=F("attempts") + 1,
        started_at=Coalesce(F("started_at"), now),
        heartbeat_at=now,
    )
    if not claimed:
        return None
    row.refresh_from_db()
    return row.attempts


def _ours(row: RetentionRunSource, attempt: int):
    return RetentionRunSource.objects.filter(
        pk=row.pk, status=RetentionRunSourceStatus.RUNNING, attempts=attempt
    )


def _safe_error(exc: BaseException) -> str:
    # Driver messages can quote row values; only our own exceptions are known to be clean.
    from compliance.connectors import SourceUnavailable

    if isinstance(exc, SourceUnavailable):
        return exc.reason
    if isinstance(exc, ServiceError):
        return exc.message
    # Django wraps driver errors (IntegrityError from ForeignKeyViolation): name the driver's,
    # the more specific.
    cause = exc.__cause__ if isinstance(exc, DatabaseError) and exc.__cause__ else exc
    return f"{cause.__class__.__name__}; see the worker log for the run source id."


def _count_held(connector, exclude, cutoff: datetime | None) -> int:
    """Records a subject hold kept: the held subjects' records (keyed or mentioning them)
    that are in scope. Read with ``find``, which is fast for a few subjects."""
    seen: set[str] = set()
    for keys in exclude:
        for record in connector.find(keys):
            if cutoff is None or (record.sent_at is not None and record.sent_at < cutoff):
                seen.add(record.record_id)
    return len(seen)


def _finish(row: RetentionRunSource, attempt: int, *, status: str, **values) -> None:
    now = timezone.now()
    updated = _ours(row, attempt).update(status=status, finished_at=now, heartbeat_at=now, **values)
    if not updated:
        raise _LostLease


def _enforce_source(row: RetentionRunSource, run: RetentionRun, limits: _Limits) -> bool:
    """Work one source of a run. Returns False if it stopped at ``max_batches`` and must be
    resumed, True when the source reached a final state."""
    from compliance.connectors import SubjectKeys, get_connector

    attempt = _claim(row, limits.lease)
    if attempt is None:
        return True  # another worker is on it
    source = row.source
    try:
        connector = get_connector(source)
        holds = source_holds(source)
        if holds:
            # The whole source is held: nothing changes, and what would have is counted.
            would = 0
            if row.cutoff is not None:
                for batch in connector.purge(
                    older_than=row.cutoff,
                    strategy=row.action,
                    batch_size=limits.batch_size,
                    dry_run=True,
                ):
                    would += batch.affected
            elif run.subject_id is not None:
                would = connector.count(SubjectKeys.for_subject(run.subject)).total
            _finish(
                row,
                attempt,
                status=RetentionRunSourceStatus.HELD,
                held=would,
                in_scope=would,
                held_reasons=hold_reasons(holds),
            )
            return True

        if run.kind == RetentionRunKind.WITHDRAWAL:
            return _withdraw_in_source(row, run, attempt, connector)

        subjects = held_subjects_for_source(source)
        exclude = [SubjectKeys.for_subject(s) for s in subjects]
        batches = connector.purge(
            older_than=row.cutoff,
            strategy=row.action,
            batch_size=limits.batch_size,
            exclude=exclude,
            dry_run=run.dry_run,
            resume_after=row.cursor or None,
        )
        done = 0
        while True:
            # The connector commits each batch itself; for the built-in store, whose tables
            # share our connection, this block turns its commit into a savepoint so that
            # the batch and our count of it commit together: a crash between the two can
            # neither lose nor double a batch. Sources elsewhere commit on their own, and a
            # resumed run simply finds their finished rows gone.
            with transaction.atomic():
                batch = next(batches, None)
                if batch is None:
                    break
                updated = _ours(row, attempt).update(
                    cursor=batch.cursor,
                    acted_on=F("acted_on") + batch.affected,
                    failed=F("failed") + batch.skipped,
                    heartbeat_at=timezone.now(),
                )
                if not updated:
                    raise _LostLease
            done += 1
            if limits.max_batches is not None and done >= limits.max_batches:
                batches.close()
                _ours(row, attempt).update(status=RetentionRunSourceStatus.PENDING)
                return False

        held = _count_held(connector, exclude, row.cutoff) if exclude else 0
        row.refresh_from_db(fields=["acted_on", "failed"])
        _finish(
            row,
            attempt,
            status=RetentionRunSourceStatus.DONE,
            held=held,
            in_scope=row.acted_on + row.failed + held,
            held_reasons=hold_reasons(holds_active().filter(subject__isnull=False)) if held else [],
        )
        return True
    except _LostLease:
        logger.warning("retention: lost the lease on run source %s", row.pk)
        return True
    except Exception as exc:
        # A failed source does not stop the others; the run reports it with its reason.
        # No traceback in the log: driver messages can quote the row values they hit.
        logger.warning("retention: run source %s failed (%s)", row.pk, exc.__class__.__name__)
        _ours(row, attempt).update(
            status=RetentionRunSourceStatus.FAILED,
            error=_safe_error(exc),
            finished_at=timezone.now(),
        )
        return True


def _withdraw_in_source(row, run, attempt, connector) -> bool:
    from compliance.connectors import ErasureStrategy, SubjectKeys

    if run.subject_id is None:
        # The subject was erased in the meantime: nothing of theirs is left to act on.
        _finish(row, attempt, status=RetentionRunSourceStatus.DONE)
        return True
    keys = SubjectKeys.for_subject(run.subject)
    held = list(holds_active().filter(subject_id=run.subject_id))
    if held:
        count = connector.count(keys).total
        _finish(
            row,
            attempt,
            status=RetentionRunSourceStatus.HELD,
            held=count,
            in_scope=count,
            held_reasons=hold_reasons(held),
        )
        return True
    # Erasure has no "detach": unlinking the logs is what its redact strategy does for the
    # keyed records (the text goes too), so detach policies redact here.
    strategy = (
        ErasureStrategy.DELETE if row.action == RetentionAction.DELETE else ErasureStrategy.REDACT
    )
    with transaction.atomic():
        result = connector.erase(keys, strategy=strategy)
        acted = result.keyed + result.mentions
        _finish(
            row,
            attempt,
            status=RetentionRunSourceStatus.DONE,
            acted_on=acted,
            failed=result.skipped,
            in_scope=acted + result.skipped,
        )
    return True


def retention_run_execute(
    *,
    run_id: int,
    batch_size: int | None = None,
    max_batches: int | None = None,
) -> RetentionRun:
    """Carry out a planned run, source by source, in batches. Idempotent and resumable: a
    source finished before is not touched again, a source interrupted goes on from its
    cursor, and one that another worker is working on is left to it. ``max_batches`` stops
    each source after that many batches (the run stays unfinished, to be resumed)."""
    limits = _Limits(
        batch_size=batch_size or settings.RETENTION_BATCH_SIZE,
        max_batches=max_batches,
        lease=timedelta(seconds=settings.RETENTION_LEASE_SECONDS),
    )
    if limits.batch_size < 1:
        raise ServiceError("The batch size must be at least 1.", field="batch_size")
    now = timezone.now()
    started = RetentionRun.objects.filter(
        pk=run_id, status__in=[RetentionRunStatus.PENDING, RetentionRunStatus.RUNNING]
    ).update(status=RetentionRunStatus.RUNNING, started_at=Coalesce(F("started_at"), now))
    run = RetentionRun.objects.select_related("subject", "policy").get(pk=run_id)
    if not started:
        return run  # finished before: nothing to redo
    finished = True
    for row in run.sources.select_related("source", "source__system").filter(
        status__in=[RetentionRunSourceStatus.PENDING, RetentionRunSourceStatus.RUNNING]
    ):
        finished = _enforce_source(row, run, limits) and finished
    return _run_finish(run) if finished else run


def _run_finish(run: RetentionRun) -> RetentionRun:
    with transaction.atomic():
        open_sources = run.sources.filter(
            status__in=[RetentionRunSourceStatus.PENDING, RetentionRunSourceStatus.RUNNING]
        ).exists()
        if open_sources:
            return run  # another worker still holds a source; it finishes the run
        totals = run.sources.aggregate(
            in_scope=Coalesce(Sum("in_scope"), 0),
            acted_on=Coalesce(Sum("acted_on"), 0),
            held=Coalesce(Sum("held"), 0),
            failed=Coalesce(Sum("failed"), 0),
        )
        failed_sources = list(
            run.sources.filter(status=RetentionRunSourceStatus.FAILED).values_list(
                "source_id", flat=True
            )
        )
        status = (
            RetentionRunStatus.COMPLETED_WITH_FAILURES
            if failed_sources
            else RetentionRunStatus.COMPLETED
        )
        updated = RetentionRun.objects.filter(pk=run.pk, status=RetentionRunStatus.RUNNING).update(
            status=status, finished_at=timezone.now(), **totals
        )
        run.refresh_from_db()
        if updated:
            audit_record(
                actor="retention",
                action="retention.run_finished",
                target=run,
                detail={
                    "kind": run.kind,
                    "dry_run": run.dry_run,
                    "status": status,
                    **totals,
                    "sources": {
                        str(s.source_id): {
                            "status": s.status,
                            "in_scope": s.in_scope,
                            "acted_on": s.acted_on,
                            "held": s.held,
                            "failed": s.failed,
                        }
                        for s in run.sources.all()
                    },
                    "failed_sources": failed_sources,
                },
            )
    return run


def retention_enforce(
    *,
    actor: str,
    policy: RetentionPolicy | None = None,
    dry_run: bool = False,
    batch_size: int | None = None,
    kind: str = RetentionRunKind.ON_DEMAND,
) -> RetentionRun:
    """Plan and carry out a run now, in this process. Unsafe inside a transaction: every
    batch must commit on its own so no lock is held for long."""
    if transaction.get_connection().in_atomic_block:
        raise RuntimeError("retention_enforce commits batch by batch; call it outside atomic().")
    run = retention_run_create(actor=actor, kind=kind, policy=policy, dry_run=dry_run)
    return retention_run_execute(run_id=run.pk, batch_size=batch_size)


def retention_runs_unfinished(*, kind: str | None = None) -> list[int]:
    runs = RetentionRun.objects.filter(
        status__in=[RetentionRunStatus.PENDING, RetentionRunStatus.RUNNING]
    )
    if kind is not None:
        runs = runs.filter(kind=kind)
    return list(runs.order_by("created_at").values_list("pk", flat=True))


def retention_runs_due(*, actor: str) -> list[int]:
    """What the daily schedule starts: every unfinished run (an interrupted one resumes from
    its cursors), plus a new scheduled run unless a scheduled one is still unfinished, so two
    days' runs never work the same sources side by side."""
    with transaction.atomic():
        due = retention_runs_unfinished()
        if not RetentionRun.objects.filter(pk__in=due, kind=RetentionRunKind.SCHEDULED).exists():
            run = retention_run_create(actor=actor, kind=RetentionRunKind.SCHEDULED)
            due.append(run.pk)
    return due
