"""Legal holds (GDPR Art. 17(3)): a hold keeps exactly what it covers from retention and
erasure while it is active; placing and lifting are audited; bad input is refused."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from compliance.models import AuditEvent, LegalHold, RetentionRunSourceStatus
from compliance.retention import (
    held_sources,
    held_sources_for_subject,
    holds_active,
    legal_hold_create,
    legal_hold_lift,
    legal_hold_update,
    legal_holds_covering,
    retention_enforce,
    retention_on_consent_withdrawn,
    retention_run_execute,
)
from compliance.services import ConflictError, ServiceError
from tests.compliance.test_retention import (
    ages_left,
    conversation,
    enforcing,
    external_database,
    policy,
    run_row,
    sql_ages,
    sql_rows,
    sql_source,
)
from tests.factories import (
    LegalHoldFactory,
    LogSourceFactory,
    StaffUserFactory,
    SubjectFactory,
    SystemFactory,
)

CLAIMS = "GDPR Art. 17(3)(e): establishment, exercise or defence of legal claims"


@pytest.fixture
def dpo(db):
    return StaffUserFactory()


@pytest.fixture
def external_db():
    with external_database() as found:
        yield found


def hold(owner, **scope) -> LegalHold:
    return legal_hold_create(reason="legal_claims", owner=owner, actor="test", **scope)


# --- What a hold protects ----------------------------------------------------------------------


@enforcing
def test_a_subject_hold_keeps_exactly_that_subjects_records(dpo):
    system = SystemFactory()
    source = LogSourceFactory(system=system)
    held = SubjectFactory(identities={"email": "held@example.com"})
    free = SubjectFactory()
    conversation(system, subject=held, ages=[300, 200, 5])
    conversation(system, subject=free, ages=[300, 6])
    # Someone else's old chat in which the held customer's email was typed: kept as well.
    mention = conversation(
        system, subject=free, ages=[250], texts={0: "write to held@example.com please"}
    )
    from compliance.mentions import extract_mentions
    from compliance.models import MessageMention

    message = mention.messages.get()
    MessageMention.objects.bulk_create(
        MessageMention(message=message, type=t, value=v) for t, v in extract_mentions(message.text)
    )
    hold(dpo, subject_id=held.pk)
    rule = policy(dpo, days=90, source_id=source.pk)

    run = retention_enforce(actor="test", policy=rule)

    assert ages_left(conversation__subject=held) == [5, 200, 300]
    assert ages_left(conversation__subject=free) == [6, 250]  # 250: mentions the held one
    row = run_row(run, source)
    assert (row.status, row.acted_on, row.held) == ("done", 1, 3)
    assert row.in_scope == 4
    assert row.held_reasons == [CLAIMS]


@enforcing
def test_a_subject_hold_keeps_their_rows_in_an_external_table(dpo, external_db):
    dsn, conn = external_db
    source = sql_source(SystemFactory(), dsn)
    SubjectFactory(identities={"email": "held@example.com"})
    held = SubjectFactory(identities={"email": "held2@example.com"})
    sql_rows(conn, "held2@example.com", [300, 200], "c1")
    sql_rows(conn, "free@example.com", [300, 1], "c2")
    hold(dpo, subject_id=held.pk)
    rule = policy(dpo, days=90, source_id=source.pk)

    run = retention_enforce(actor="test", policy=rule)

    assert sql_ages(conn) == [1, 200, 300]
    row = run_row(run, source)
    assert (row.acted_on, row.held) == (1, 2)


@enforcing
def test_a_system_hold_keeps_every_source_of_the_system_and_no_other(dpo):
    held_system, other_system = SystemFactory(), SystemFactory()
    held_a = LogSourceFactory(system=held_system)
    held_b = LogSourceFactory(system=held_system)
    free = LogSourceFactory(system=other_system)
    conversation(held_system, ages=[200, 150, 1])
    conversation(other_system, ages=[200, 1])
    hold(dpo, system_id=held_system.pk)
    policy(dpo, days=90, system_id=held_system.pk)
    policy(dpo, days=90, system_id=other_system.pk)

    run = retention_enforce(actor="test")

    assert ages_left(conversation__system=held_system) == [1, 150, 200]
    assert ages_left(conversation__system=other_system) == [1]
    for source in (held_a, held_b):
        row = run_row(run, source)
        assert row.status == RetentionRunSourceStatus.HELD
        assert (row.in_scope, row.acted_on, row.held) == (2, 0, 2)
        assert row.held_reasons == [CLAIMS]
    assert run_row(run, free).status == RetentionRunSourceStatus.DONE


@enforcing
def test_a_source_hold_keeps_that_source_only(dpo, external_db):
    dsn, conn = external_db
    system = SystemFactory()
    builtin = LogSourceFactory(system=system)
    external = sql_source(system, dsn)
    conversation(system, ages=[200, 1])
    sql_rows(conn, "ann@example.com", [200, 1])
    hold(dpo, source_id=external.pk)
    policy(dpo, days=90, system_id=system.pk)

    run = retention_enforce(actor="test")

    assert sql_ages(conn) == [1, 200]
    assert ages_left() == [1]
    assert run_row(run, external).status == RetentionRunSourceStatus.HELD
    assert run_row(run, builtin).status == RetentionRunSourceStatus.DONE


@enforcing
def test_ended_lifted_and_future_holds_protect_nothing(dpo):
    system = SystemFactory()
    LogSourceFactory(system=system)
    now = timezone.now()
    a, b, c = SubjectFactory(), SubjectFactory(), SubjectFactory()
    for subject in (a, b, c):
        conversation(system, subject=subject, ages=[200])
    LegalHoldFactory(subject=a, owner=dpo, starts_at=now - timedelta(days=30), ends_at=now)
    lifted = hold(dpo, subject_id=b.pk)
    legal_hold_lift(hold=lifted, lifted_by=dpo, actor="test")
    LegalHoldFactory(subject=c, owner=dpo, starts_at=now + timedelta(days=1))
    policy(dpo, days=90, system_id=system.pk)

    retention_enforce(actor="test")

    assert ages_left() == []
    assert not holds_active().exists()


@enforcing
def test_lifting_a_hold_lets_the_next_run_catch_up(dpo):
    system = SystemFactory()
    LogSourceFactory(system=system)
    held = SubjectFactory()
    conversation(system, subject=held, ages=[200])
    placed = hold(dpo, subject_id=held.pk)
    policy(dpo, days=90, system_id=system.pk)
    retention_enforce(actor="test")
    assert ages_left() == [200]

    legal_hold_lift(hold=placed, lifted_by=dpo, actor="test")
    retention_enforce(actor="test")
    assert ages_left() == []


@enforcing
def test_a_subject_hold_stops_the_withdrawal_rule(dpo):
    system = SystemFactory()
    source = LogSourceFactory(system=system)
    held = SubjectFactory()
    conversation(system, subject=held, ages=[3, 1])
    hold(dpo, subject_id=held.pk)
    policy(dpo, days=365, system_id=system.pk, on_logging_withdrawal=True)

    run = retention_on_consent_withdrawn(subject=held, purpose_slug="conversation-logging")
    retention_run_execute(run_id=run.pk)

    assert ages_left() == [1, 3]
    row = run_row(run, source)
    assert (row.status, row.held, row.held_reasons) == ("held", 2, [CLAIMS])


@pytest.mark.django_db
def test_an_unrelated_hold_holds_nothing_else(dpo):
    system = SystemFactory()
    source = LogSourceFactory(system=system)
    other_source = LogSourceFactory()
    subject, other = SubjectFactory(), SubjectFactory()
    hold(dpo, source_id=other_source.pk)
    hold(dpo, subject_id=other.pk)
    assert list(legal_holds_covering(subject=subject, source=source)) == []
    assert held_sources_for_subject(subject=subject) == {other_source.pk: CLAIMS}
    assert set(held_sources()) == {other_source.pk}


# --- The selectors the DSAR erasure engine calls ------------------------------------------------


@pytest.mark.django_db
def test_erasure_learns_which_sources_are_held_for_a_subject_and_why(dpo):
    system = SystemFactory()
    first, second = LogSourceFactory(system=system), LogSourceFactory(system=system)
    elsewhere = LogSourceFactory()
    subject = SubjectFactory()
    by_subject = legal_hold_create(
        reason="legal_obligation", owner=dpo, actor="test", subject_id=subject.pk
    )
    by_source = hold(dpo, source_id=second.pk)

    assert set(legal_holds_covering(subject=subject, source=first)) == {by_subject}
    assert set(legal_holds_covering(subject=subject, source=second)) == {by_subject, by_source}
    obligation = "GDPR Art. 17(3)(b): a legal obligation or a task in the public interest"
    assert held_sources_for_subject(subject=subject) == {
        first.pk: obligation,
        second.pk: f"{obligation}; {CLAIMS}",
        elsewhere.pk: obligation,
    }
    # The staff's free text never reaches what the subject is told.
    assert "Matter" not in str(held_sources_for_subject(subject=subject))


# --- Placing, changing and lifting --------------------------------------------------------------


@pytest.mark.django_db
def test_placing_and_lifting_a_hold_are_audited(dpo):
    subject = SubjectFactory()
    placed = legal_hold_create(
        reason="legal_claims",
        reason_detail="Claim by Jane Doe, case 17",
        owner=dpo,
        actor="user:1",
        subject_id=subject.pk,
    )
    event = AuditEvent.objects.get(action="legal_hold.placed", target_id=str(placed.pk))
    assert event.detail["reason"] == "legal_claims"
    assert "Jane" not in str(event.detail)  # the free text may name people

    lifter = StaffUserFactory()
    legal_hold_lift(hold=placed, lifted_by=lifter, actor=f"user:{lifter.pk}")
    placed.refresh_from_db()
    assert placed.lifted_by == lifter and placed.lifted_at is not None
    event = AuditEvent.objects.get(action="legal_hold.lifted", target_id=str(placed.pk))
    assert (event.actor, event.detail["lifted_by"]) == (f"user:{lifter.pk}", lifter.pk)

    with pytest.raises(ConflictError):
        legal_hold_lift(hold=placed, lifted_by=lifter, actor="test")
    assert AuditEvent.objects.filter(action="legal_hold.lifted").count() == 1


@pytest.mark.django_db
def test_a_lifted_hold_cannot_be_changed_back(dpo):
    placed = hold(dpo, subject_id=SubjectFactory().pk)
    legal_hold_lift(hold=placed, lifted_by=dpo, actor="test")
    with pytest.raises(ConflictError):
        legal_hold_update(
            hold=placed, actor="test", reason="archiving", reason_detail="", ends_at=None, owner=dpo
        )


# --- Bad input ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_hold_ending_before_it_starts_is_refused(dpo):
    subject = SubjectFactory()
    start = timezone.now()
    with pytest.raises(ServiceError) as info:
        legal_hold_create(
            reason="legal_claims",
            owner=dpo,
            actor="test",
            subject_id=subject.pk,
            starts_at=start,
            ends_at=start - timedelta(days=1),
        )
    assert (info.value.field, info.value.message) == (
        "ends_at",
        "The hold must end after it starts.",
    )
    assert not LegalHold.objects.exists()

    placed = hold(dpo, subject_id=subject.pk)
    with pytest.raises(ServiceError):
        legal_hold_update(
            hold=placed,
            actor="test",
            reason="legal_claims",
            reason_detail="",
            ends_at=placed.starts_at - timedelta(hours=1),
            owner=dpo,
        )


@pytest.mark.django_db
def test_the_model_and_the_database_refuse_a_hold_ending_before_it_starts(dpo):
    now = timezone.now()
    draft = LegalHold(
        subject=SubjectFactory(), reason="legal_claims", owner=dpo, starts_at=now, ends_at=now
    )
    with pytest.raises(ValidationError) as info:
        draft.full_clean()
    assert "ends_at" in info.value.message_dict
    with pytest.raises(IntegrityError), transaction.atomic():
        draft.save()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "scope, field",
    [
        ({}, "scope"),
        ({"subject_id": "5b0f3b5e-0000-4000-8000-000000000000"}, "subject"),
        ({"subject_id": "not-a-uuid"}, "subject"),
        ({"source_id": 987654}, "source"),
        ({"system_id": 987654}, "system"),
    ],
)
def test_a_hold_on_nothing_or_on_something_that_does_not_exist_is_refused(dpo, scope, field):
    with pytest.raises(ServiceError) as info:
        hold(dpo, **scope)
    assert info.value.field == field


@pytest.mark.django_db
def test_a_hold_needs_one_scope_a_known_reason_and_aware_times(dpo):
    system = SystemFactory()
    source = LogSourceFactory(system=system)
    with pytest.raises(ServiceError) as info:
        hold(dpo, system_id=system.pk, source_id=source.pk)
    assert info.value.field == "scope"
    with pytest.raises(ServiceError) as info:
        legal_hold_create(reason="because", owner=dpo, actor="test", source_id=source.pk)
    assert info.value.field == "reason"
    with pytest.raises(ServiceError) as info:
        legal_hold_create(
            reason="legal_claims",
            owner=dpo,
            actor="test",
            source_id=source.pk,
            starts_at=timezone.now().replace(tzinfo=None),
        )
    assert info.value.field == "starts_at"


# --- Admin ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_dpo_places_a_hold_in_the_admin_and_lifts_it_with_the_action(client, dpo):
    client.force_login(dpo)
    subject = SubjectFactory()
    url = reverse("admin:compliance_legalhold_add")
    now = timezone.now()
    form = {
        "subject": subject.pk,
        "reason": "legal_claims",
        "reason_detail": "Matter 42",
        "owner": dpo.pk,
        "starts_at_0": now.strftime("%Y-%m-%d"),
        "starts_at_1": now.strftime("%H:%M:%S"),
    }
    bad = client.post(
        url,
        {
            **form,
            "ends_at_0": (now - timedelta(days=2)).strftime("%Y-%m-%d"),
            "ends_at_1": "00:00:00",
        },
    )
    assert bad.status_code == 200 and "must end after it starts" in bad.content.decode()
    assert not LegalHold.objects.exists()

    assert client.post(url, form).status_code == 302
    placed = LegalHold.objects.get()
    assert placed.subject == subject and placed.is_active()
    assert AuditEvent.objects.filter(action="legal_hold.placed").count() == 1

    client.post(
        reverse("admin:compliance_legalhold_changelist"),
        {"action": "lift_holds", "_selected_action": [placed.pk]},
    )
    placed.refresh_from_db()
    assert placed.lifted_by == dpo
    assert not placed.is_active()


@pytest.mark.django_db
def test_staff_without_the_permission_cannot_lift_holds(client, dpo):
    from django.contrib.auth.models import Permission

    viewer = StaffUserFactory(is_superuser=False)
    viewer.user_permissions.add(Permission.objects.get(codename="view_legalhold"))
    client.force_login(viewer)
    placed = hold(dpo, subject_id=SubjectFactory().pk)
    client.post(
        reverse("admin:compliance_legalhold_changelist"),
        {"action": "lift_holds", "_selected_action": [placed.pk]},
    )
    placed.refresh_from_db()
    assert placed.lifted_at is None


@pytest.mark.django_db
def test_holds_cannot_be_deleted_in_the_admin(client, dpo):
    client.force_login(dpo)
    placed = hold(dpo, subject_id=SubjectFactory().pk)
    response = client.get(reverse("admin:compliance_legalhold_delete", args=[placed.pk]))
    assert response.status_code == 403
    assert LegalHold.objects.filter(pk=placed.pk).exists()
