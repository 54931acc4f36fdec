"""The grant pages: "Staff access to systems" in the admin."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from compliance.models import AuditEvent
from compliance.workspace.services import (
    LEVEL_ACT,
    LEVEL_NONE,
    LEVEL_VIEW,
    staff_grant_system,
    system_access_level,
)
from tests.factories import PrivacyStaffFactory

pytestmark = pytest.mark.django_db


def change_url(user) -> str:
    return reverse("admin:workspace_staffsystemaccess_change", args=[user.pk])


def test_a_dpo_grants_systems_through_the_form(signed_in, dpo, alpha, beta):
    staff = PrivacyStaffFactory(username="new-hire")
    client = signed_in(dpo)

    response = client.post(
        change_url(staff), {"may_view": [beta.system.pk], "may_act": [alpha.system.pk]}
    )

    assert response.status_code == 302
    assert system_access_level(user=staff, system=alpha.system) == LEVEL_ACT
    assert system_access_level(user=staff, system=beta.system) == LEVEL_VIEW
    granted = AuditEvent.objects.filter(action="workspace.system_access.granted")
    assert {(e.target_id, e.detail["level"]) for e in granted} == {
        (str(alpha.system.pk), "act"),
        (str(beta.system.pk), "view"),
    }


def test_unticking_a_system_revokes_it(signed_in, dpo, people, alpha):
    response = signed_in(dpo).post(change_url(people.alpha_actor), {"may_view": [], "may_act": []})

    assert response.status_code == 302
    assert system_access_level(user=people.alpha_actor, system=alpha.system) == LEVEL_NONE
    assert AuditEvent.objects.filter(action="workspace.system_access.revoked").count() == 1


def test_the_form_shows_the_current_grants(signed_in, dpo, people, alpha):
    response = signed_in(dpo).get(change_url(people.alpha_viewer))
    form = response.context["adminform"].form
    assert list(form.initial["may_view"]) == [alpha.system.pk]
    assert list(form.initial["may_act"]) == []


def test_the_list_says_who_sees_and_acts_on_what(signed_in, dpo, people):
    response = signed_in(dpo).get(reverse("admin:workspace_staffsystemaccess_changelist"))
    page = response.content.decode()
    assert "alpha-actor" in page and "alpha-viewer" in page
    assert "every system (superuser)" in page


def test_privacy_staff_cannot_open_the_grant_pages(signed_in, people):
    client = signed_in(people.alpha_actor)
    assert client.get(reverse("admin:workspace_staffsystemaccess_changelist")).status_code == 403
    response = client.post(change_url(people.alpha_actor), {"may_view": [], "may_act": []})
    assert response.status_code == 403


def test_a_grant_manager_cannot_widen_their_own_access(signed_in, alpha, beta):
    manager = PrivacyStaffFactory(username="team-lead")
    manager.user_permissions.add(
        Permission.objects.get(codename="change_staffsystemaccess"),
        Permission.objects.get(codename="view_staffsystemaccess"),
    )
    staff_grant_system(user=manager, system=alpha.system, can_act=True, actor="test")
    client = signed_in(manager)

    response = client.post(
        change_url(manager), {"may_view": [], "may_act": [alpha.system.pk, beta.system.pk]}
    )

    assert response.status_code == 403
    assert system_access_level(user=manager, system=beta.system) == LEVEL_NONE
    other = PrivacyStaffFactory(username="colleague")
    response = client.post(change_url(other), {"may_view": [alpha.system.pk], "may_act": []})
    assert response.status_code == 302
    assert system_access_level(user=other, system=alpha.system) == LEVEL_VIEW
