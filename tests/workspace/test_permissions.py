"""Who covers which system: the scope rules and the grant and revoke services."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission
from guardian.shortcuts import assign_perm

from compliance.models import AuditEvent, LegalHold, RetentionPolicy
from compliance.services import ConflictError, ServiceError
from compliance.workspace.permissions import (
    ACT_ON_SYSTEM_DATA,
    VIEW_SYSTEM_DATA,
    paths_q,
    scope_filter,
    staff_scope,
)
from compliance.workspace.services import (
    LEVEL_ACT,
    LEVEL_NONE,
    LEVEL_VIEW,
    privacy_staff_group_ensure,
    staff_grant_system,
    staff_revoke_system,
    system_access_level,
)
from tests.factories import (
    ConversationFactory,
    DataCategoryFactory,
    PrivacyStaffFactory,
    RetentionPolicyFactory,
    StaffUserFactory,
)

pytestmark = pytest.mark.django_db


def test_the_per_system_permissions_exist_after_migrate():
    codenames = set(
        Permission.objects.filter(content_type__model="system").values_list("codename", flat=True)
    )
    assert {"view_system_data", "act_on_system_data"} <= codenames


def test_a_superuser_covers_every_system(dpo):
    assert staff_scope(dpo).everything
    assert staff_scope(dpo, act=True).everything


def test_staff_without_a_grant_cover_no_system(people):
    assert staff_scope(people.nobody).empty
    assert staff_scope(people.nobody, act=True).empty


def test_a_viewer_sees_their_system_but_acts_on_none(people, alpha):
    assert staff_scope(people.alpha_viewer).system_ids == {alpha.system.pk}
    assert staff_scope(people.alpha_viewer, act=True).empty


def test_an_actor_sees_and_acts_on_their_system_only(people, alpha, beta):
    assert staff_scope(people.alpha_actor).system_ids == {alpha.system.pk}
    assert staff_scope(people.alpha_actor, act=True).system_ids == {alpha.system.pk}
    assert beta.system.pk not in staff_scope(people.alpha_actor).system_ids


def test_a_global_grant_covers_every_system(alpha, beta):
    lead = PrivacyStaffFactory(username="lead")
    assign_perm(VIEW_SYSTEM_DATA, lead)
    assert staff_scope(lead).everything
    assert staff_scope(lead, act=True).empty


def test_a_grant_to_a_group_reaches_its_members(alpha):
    team = Group.objects.create(name="Alpha team")
    member = PrivacyStaffFactory(username="member")
    member.groups.add(team)
    assign_perm(ACT_ON_SYSTEM_DATA, team, alpha.system)
    assert staff_scope(member, act=True).system_ids == {alpha.system.pk}


def test_an_inactive_or_non_staff_user_covers_nothing(people, alpha):
    people.alpha_actor.is_active = False
    assert staff_scope(people.alpha_actor).empty
    outsider = StaffUserFactory(username="outsider", is_staff=False, is_superuser=True)
    assert staff_scope(outsider).empty


def test_acting_needs_every_system_a_row_touches(people, alpha, beta):
    # A data-category policy covers every system holding the category: Alpha's actor may
    # see it, but changing it would change Beta's retention too.
    category = DataCategoryFactory(slug="contact")
    alpha.system.data_categories.add(category)
    beta.system.data_categories.add(category)
    shared = RetentionPolicyFactory(system=None, data_category=category, name="Contact data")
    systems_q = paths_q(["system", "source__system", "data_category__systems"])
    rows = RetentionPolicy.objects.all()

    visible = scope_filter(rows, staff_scope(people.alpha_actor), systems_q)
    actable = scope_filter(
        rows, staff_scope(people.alpha_actor, act=True), systems_q, exclusive=True
    )

    assert set(visible) == {alpha.policy, shared}
    assert set(actable) == {alpha.policy}


def test_a_subject_who_talked_to_two_plugins_is_acted_on_only_by_staff_of_both(people, alpha, beta):
    ConversationFactory(system=beta.system, subject=alpha.subject)
    systems_q = paths_q(["system", "source__system", "subject__conversations__system"])
    holds = LegalHold.objects.filter(pk=alpha.subject_hold.pk)

    assert scope_filter(holds, staff_scope(people.beta_actor), systems_q).exists()
    assert not scope_filter(
        holds, staff_scope(people.alpha_actor, act=True), systems_q, exclusive=True
    ).exists()
    assert scope_filter(
        holds, staff_scope(people.dpo, act=True), systems_q, exclusive=True
    ).exists()


def test_a_row_that_touches_no_system_is_only_for_staff_who_cover_every_system(people):
    category = DataCategoryFactory(slug="unused")
    orphan = RetentionPolicyFactory(system=None, data_category=category, name="Nobody holds it")
    systems_q = paths_q(["system", "source__system", "data_category__systems"])
    rows = RetentionPolicy.objects.filter(pk=orphan.pk)
    assert not scope_filter(rows, staff_scope(people.alpha_actor), systems_q).exists()
    assert scope_filter(rows, staff_scope(people.dpo), systems_q).exists()


# --- staff_grant_system / staff_revoke_system ----------------------------------------------------


def test_granting_a_system_is_audited_without_personal_data(alpha):
    staff = PrivacyStaffFactory(username="new-staff", email="new.staff@example.com")
    level = staff_grant_system(user=staff, system=alpha.system, can_act=False, actor="user:1")

    assert level == LEVEL_VIEW
    assert system_access_level(user=staff, system=alpha.system) == LEVEL_VIEW
    event = AuditEvent.objects.get(action="workspace.system_access.granted")
    assert event.actor == "user:1"
    assert event.target_id == str(alpha.system.pk)
    assert event.detail == {"user": staff.pk, "level": "view", "previous": "none"}
    assert "new.staff" not in str(event.detail)


def test_granting_act_then_view_downgrades(alpha):
    staff = PrivacyStaffFactory(username="staff")
    staff_grant_system(user=staff, system=alpha.system, can_act=True, actor="test")
    assert system_access_level(user=staff, system=alpha.system) == LEVEL_ACT
    assert staff_scope(staff, act=True).system_ids == {alpha.system.pk}

    staff_grant_system(user=staff, system=alpha.system, can_act=False, actor="test")

    assert system_access_level(user=staff, system=alpha.system) == LEVEL_VIEW
    staff = type(staff).objects.get(pk=staff.pk)  # a fresh user: no permission cache
    assert staff_scope(staff, act=True).empty
    assert staff_scope(staff).system_ids == {alpha.system.pk}


def test_granting_the_level_held_writes_no_event(alpha):
    staff = PrivacyStaffFactory(username="staff")
    staff_grant_system(user=staff, system=alpha.system, can_act=True, actor="test")
    before = AuditEvent.objects.count()
    staff_grant_system(user=staff, system=alpha.system, can_act=True, actor="test")
    assert AuditEvent.objects.count() == before


def test_it_refuses_to_grant_a_system_to_someone_who_is_not_staff(alpha):
    customer_account = StaffUserFactory(username="not-staff", is_staff=False, is_superuser=False)
    with pytest.raises(ServiceError):
        staff_grant_system(user=customer_account, system=alpha.system, can_act=True, actor="t")
    assert system_access_level(user=customer_account, system=alpha.system) == LEVEL_NONE


def test_it_refuses_a_grant_to_a_superuser_that_would_change_nothing(dpo, alpha):
    with pytest.raises(ConflictError):
        staff_grant_system(user=dpo, system=alpha.system, can_act=True, actor="test")


def test_revoking_removes_both_levels_and_is_audited(people, alpha):
    staff_revoke_system(user=people.alpha_actor, system=alpha.system, actor="user:9")

    fresh = type(people.alpha_actor).objects.get(pk=people.alpha_actor.pk)
    assert staff_scope(fresh).empty
    event = AuditEvent.objects.filter(action="workspace.system_access.revoked").get()
    assert event.detail == {"user": fresh.pk, "previous": "act"}


def test_revoking_a_system_never_granted_is_refused(people, beta):
    with pytest.raises(ConflictError):
        staff_revoke_system(user=people.alpha_actor, system=beta.system, actor="test")


def test_the_privacy_staff_group_gets_the_model_permissions_once():
    group = privacy_staff_group_ensure(actor="test")
    again = privacy_staff_group_ensure(actor="test")

    assert group.pk == again.pk
    labels = {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.all()}
    assert "dsar.change_datasubjectrequest" in labels
    assert "compliance.change_system" not in labels
    assert AuditEvent.objects.filter(action="workspace.staff_group.updated").count() == 1


def test_the_command_creates_the_privacy_staff_group():
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("workspace_staff_group", stdout=out)
    group = Group.objects.get(name="Privacy staff")
    assert group.permissions.filter(codename="view_datasubjectrequest").exists()
    assert "Privacy staff" in out.getvalue()
