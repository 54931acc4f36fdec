"""The permission matrix: every scoped admin page and action, tried by Beta's staff on Alpha's
records, by Alpha's view-only staff, and by staff with no system; and what Alpha's actor
may do on their own records."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse

from compliance.models import AnswerFlag, LegalHold, LogSource, RetentionPolicy, RetentionRun
from tests.workspace.conftest import Plugin

pytestmark = pytest.mark.django_db


@dataclass(frozen=True)
class Admin:
    name: str
    row: Callable[[Plugin], object]
    search: Callable[[Plugin], str] | None = None
    addable: bool = True
    action: str | None = None
    acted: Callable[[Plugin], bool] | None = None

    def url(self, page: str, obj=None) -> str:
        args = [obj.pk] if obj is not None else []
        return reverse(f"admin:compliance_{self.name}_{page}", args=args)

    def __str__(self) -> str:
        return self.name


ADMINS = [
    Admin("logsource", lambda p: p.source, search=lambda p: p.source.name),
    Admin(
        "retentionpolicy",
        lambda p: p.policy,
        search=lambda p: p.policy.name,
        action="dry_run_policies",
        acted=lambda p: RetentionRun.objects.filter(policy=p.policy, dry_run=True).exists(),
    ),
    Admin(
        "legalhold",
        lambda p: p.hold,
        action="lift_holds",
        acted=lambda p: LegalHold.objects.get(pk=p.hold.pk).lifted_at is not None,
    ),
    Admin(
        "legalhold",
        lambda p: p.subject_hold,
        action="lift_holds",
        acted=lambda p: LegalHold.objects.get(pk=p.subject_hold.pk).lifted_at is not None,
    ),
    Admin("retentionrun", lambda p: p.run, addable=False),
    Admin(
        "answerflag",
        lambda p: p.flag,
        addable=False,
        action="mark_dismissed",
        acted=lambda p: AnswerFlag.objects.get(pk=p.flag.pk).state != "new",
    ),
]
WITH_ACTIONS = [a for a in ADMINS if a.action]
WITH_SEARCH = [a for a in ADMINS if a.search]
OBJECT_PAGES = ["change", "history", "delete"]


def refused(response) -> bool:
    """A 403, or the admin's "does not exist" redirect to the index (which does not even
    tell whether the row exists)."""
    if response.status_code == 403:
        return True
    return response.status_code == 302 and response["Location"] == reverse("admin:index")


def listed(response) -> set:
    return {obj.pk for obj in response.context["cl"].result_list}


def run_action(client, admin: Admin, action: str, *rows):
    return client.post(
        admin.url("changelist"),
        {
            "action": action,
            ACTION_CHECKBOX_NAME: [row.pk for row in rows],
            "index": 0,
            "select_across": 0,
        },
    )


# --- Beta's staff on Alpha's records -------------------------------------------------------------


@pytest.mark.parametrize("admin", ADMINS, ids=str)
def test_another_systems_staff_do_not_see_its_rows_in_the_list(
    signed_in, people, alpha, beta, admin
):
    response = signed_in(people.beta_actor).get(admin.url("changelist"))

    assert response.status_code == 200
    assert admin.row(beta).pk in listed(response)
    assert admin.row(alpha).pk not in listed(response)


@pytest.mark.parametrize("page", OBJECT_PAGES)
@pytest.mark.parametrize("admin", ADMINS, ids=str)
def test_another_systems_staff_cannot_open_its_rows(signed_in, people, alpha, admin, page):
    response = signed_in(people.beta_actor).get(admin.url(page, admin.row(alpha)))
    assert refused(response)


@pytest.mark.parametrize("admin", WITH_SEARCH, ids=str)
def test_another_systems_staff_cannot_find_its_rows_by_search(signed_in, people, alpha, admin):
    response = signed_in(people.beta_actor).get(admin.url("changelist"), {"q": admin.search(alpha)})
    assert response.status_code == 200
    assert listed(response) == set()


@pytest.mark.parametrize("admin", WITH_ACTIONS, ids=str)
def test_another_systems_staff_cannot_run_an_action_on_its_rows(signed_in, people, alpha, admin):
    signed_in(people.beta_actor)
    run_action(signed_in(people.beta_actor), admin, admin.action, admin.row(alpha))
    assert not admin.acted(alpha)


def test_another_systems_staff_cannot_change_its_source_by_posting(signed_in, people, alpha):
    client = signed_in(people.beta_actor)
    response = client.post(
        reverse("admin:compliance_logsource_change", args=[alpha.source.pk]),
        {
            "system": alpha.system.pk,
            "name": "renamed",
            "connector": "builtin",
            "config": "{}",
            "enabled": "on",
        },
    )
    assert refused(response)
    assert LogSource.objects.get(pk=alpha.source.pk).name == "alpha-logs"


def test_another_systems_staff_cannot_autocomplete_its_sources(signed_in, people, alpha, beta):
    response = signed_in(people.beta_actor).get(
        reverse("admin:autocomplete"),
        {
            "app_label": "compliance",
            "model_name": "retentionpolicy",
            "field_name": "source",
            "term": "logs",
        },
    )
    assert response.status_code == 200
    ids = {int(item["id"]) for item in json.loads(response.content)["results"]}
    assert ids == {beta.source.pk}


# --- Alpha's view-only staff ---------------------------------------------------------------------


@pytest.mark.parametrize("admin", ADMINS, ids=str)
def test_a_viewer_lists_their_rows_without_actions(signed_in, people, alpha, beta, admin):
    response = signed_in(people.alpha_viewer).get(admin.url("changelist"))

    assert response.status_code == 200
    assert admin.row(alpha).pk in listed(response)
    assert admin.row(beta).pk not in listed(response)
    assert response.context["action_form"] is None


@pytest.mark.parametrize("admin", ADMINS, ids=str)
def test_a_viewer_opens_their_rows_read_only(signed_in, people, alpha, admin):
    client = signed_in(people.alpha_viewer)
    response = client.get(admin.url("change", admin.row(alpha)))

    assert response.status_code == 200
    assert client.post(admin.url("change", admin.row(alpha)), {}).status_code == 403
    assert client.get(admin.url("history", admin.row(alpha))).status_code == 200
    assert refused(client.get(admin.url("delete", admin.row(alpha))))


@pytest.mark.parametrize("admin", ADMINS, ids=str)
def test_a_viewer_cannot_add(signed_in, people, admin):
    assert refused(signed_in(people.alpha_viewer).get(admin.url("add")))


@pytest.mark.parametrize("admin", WITH_ACTIONS, ids=str)
def test_a_viewer_cannot_run_actions(signed_in, people, alpha, admin):
    run_action(signed_in(people.alpha_viewer), admin, admin.action, admin.row(alpha))
    assert not admin.acted(alpha)


def test_a_viewer_cannot_change_a_policy_by_posting(signed_in, people, alpha):
    response = signed_in(people.alpha_viewer).post(
        reverse("admin:compliance_retentionpolicy_change", args=[alpha.policy.pk]),
        {"name": "Longer", "system": alpha.system.pk, "duration_days": 3000, "action": "delete"},
    )
    assert response.status_code == 403
    assert RetentionPolicy.objects.get(pk=alpha.policy.pk).duration_days == 90


# --- Staff with no system ------------------------------------------------------------------------


@pytest.mark.parametrize("admin", ADMINS, ids=str)
def test_staff_with_no_system_get_no_list_and_no_page(signed_in, people, alpha, admin):
    client = signed_in(people.nobody)
    assert client.get(admin.url("changelist")).status_code == 403
    assert refused(client.get(admin.url("change", admin.row(alpha))))


def test_the_index_hides_what_staff_with_no_system_cannot_open(signed_in, people):
    response = signed_in(people.nobody).get(reverse("admin:index"))
    assert reverse("admin:compliance_logsource_changelist") not in response.content.decode()


# --- Alpha's actor on their own records ----------------------------------------------------------


def test_an_actor_runs_an_action_on_their_rows(signed_in, people, alpha, beta):
    flags = next(a for a in ADMINS if a.name == "answerflag")
    run_action(signed_in(people.alpha_actor), flags, "mark_dismissed", alpha.flag)
    assert flags.acted(alpha)
    assert not flags.acted(beta)


def test_an_action_on_a_selection_with_a_row_only_seen_does_nothing(signed_in, people, alpha, beta):
    from compliance.workspace.services import staff_grant_system

    staff_grant_system(user=people.alpha_actor, system=beta.system, can_act=False, actor="t")
    flags = next(a for a in ADMINS if a.name == "answerflag")
    client = signed_in(people.alpha_actor)

    response = run_action(client, flags, "mark_dismissed", alpha.flag, beta.flag)

    assert not flags.acted(alpha)
    assert not flags.acted(beta)
    messages = [str(m) for m in response.wsgi_request._messages]
    assert any("nothing was done" in m for m in messages)


def test_a_forged_selection_of_an_unseen_row_leaves_that_row_alone(signed_in, people, alpha, beta):
    flags = next(a for a in ADMINS if a.name == "answerflag")
    run_action(signed_in(people.alpha_actor), flags, "mark_dismissed", alpha.flag, beta.flag)
    assert flags.acted(alpha)
    assert not flags.acted(beta)


def test_the_add_form_offers_only_the_actors_systems(signed_in, people, alpha):
    response = signed_in(people.alpha_actor).get(reverse("admin:compliance_logsource_add"))
    choices = response.context["adminform"].form.fields["system"].queryset
    assert list(choices) == [alpha.system]


def test_a_source_for_another_system_is_refused(signed_in, people, beta):
    response = signed_in(people.alpha_actor).post(
        reverse("admin:compliance_logsource_add"),
        {"system": beta.system.pk, "name": "sneaky", "connector": "builtin", "config": "{}"},
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors
    assert not LogSource.objects.filter(name="sneaky").exists()


def test_a_legal_hold_on_another_systems_customer_is_refused(signed_in, people, beta):
    before = LegalHold.objects.count()
    response = signed_in(people.alpha_actor).post(
        reverse("admin:compliance_legalhold_add"),
        {
            "subject": beta.subject.pk,
            "reason": "legal_claims",
            "reason_detail": "Matter 9",
            "owner": people.alpha_actor.pk,
            "starts_at_0": "2026-01-01",
            "starts_at_1": "00:00:00",
        },
    )
    assert response.status_code == 200
    assert "may not act on" in str(response.context["adminform"].form.non_field_errors())
    assert LegalHold.objects.count() == before


def test_an_actor_places_a_hold_on_their_own_customer(signed_in, people, alpha):
    response = signed_in(people.alpha_actor).post(
        reverse("admin:compliance_legalhold_add"),
        {
            "subject": alpha.subject.pk,
            "reason": "legal_claims",
            "reason_detail": "Matter 10",
            "owner": people.alpha_actor.pk,
            "starts_at_0": "2026-01-01",
            "starts_at_1": "00:00:00",
        },
    )
    assert response.status_code == 302
    assert LegalHold.objects.filter(subject=alpha.subject, reason_detail="Matter 10").exists()


def test_an_actor_cannot_change_a_policy_shared_with_another_system(signed_in, people, alpha, beta):
    from tests.factories import DataCategoryFactory, RetentionPolicyFactory

    category = DataCategoryFactory(slug="contact")
    alpha.system.data_categories.add(category)
    beta.system.data_categories.add(category)
    shared = RetentionPolicyFactory(system=None, data_category=category, name="Contact data")
    client = signed_in(people.alpha_actor)

    response = client.get(reverse("admin:compliance_retentionpolicy_change", args=[shared.pk]))

    assert response.status_code == 200
    assert response.context["has_change_permission"] is False


@pytest.mark.parametrize("admin", ADMINS, ids=str)
def test_a_superuser_sees_every_systems_rows(signed_in, people, alpha, beta, admin):
    response = signed_in(people.dpo).get(admin.url("changelist"))
    assert {admin.row(alpha).pk, admin.row(beta).pk} <= listed(response)
