"""Two plugins, Alpha and Beta, each with a log source, a customer who talked to it, a
flagged answer, a retention policy, a legal hold and a retention run; and the people of
the permission matrix: a DPO (superuser), Alpha's actor, Alpha's viewer, Beta's actor and
a member of the privacy staff with no system."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from django.utils import timezone

from compliance.models import (
    AnswerFlag,
    Conversation,
    DataSubject,
    LegalHold,
    LogSource,
    MessageRole,
    RetentionPolicy,
    RetentionRun,
    RetentionRunSource,
    System,
)
from compliance.workspace.services import staff_grant_system
from tests.factories import (
    AnswerFlagFactory,
    ConversationFactory,
    LegalHoldFactory,
    LogSourceFactory,
    MessageFactory,
    PrivacyStaffFactory,
    RetentionPolicyFactory,
    StaffUserFactory,
    SubjectFactory,
    SystemFactory,
)


@dataclass
class Plugin:
    system: System
    source: LogSource
    subject: DataSubject
    conversation: Conversation
    flag: AnswerFlag
    policy: RetentionPolicy
    hold: LegalHold
    subject_hold: LegalHold
    run: RetentionRun


def make_plugin(slug: str, owner) -> Plugin:
    system = SystemFactory(slug=slug, name=slug.title())
    source = LogSourceFactory(system=system, name=f"{slug}-logs")
    subject = SubjectFactory(identities={"email": f"{slug}-customer@example.com"})
    conversation = ConversationFactory(system=system, subject=subject)
    answer = MessageFactory(conversation=conversation, role=MessageRole.ASSISTANT)
    flag = AnswerFlagFactory(message=answer)
    policy = RetentionPolicyFactory(system=system, name=f"{slug.title()} policy", approved_by=owner)
    hold = LegalHoldFactory(system=system, owner=owner, reason_detail=f"Matter {slug}")
    subject_hold = LegalHoldFactory(subject=subject, owner=owner, reason_detail=f"Claim {slug}")
    run = RetentionRun.objects.create(kind="on_demand", policy=policy, requested_by="test")
    RetentionRunSource.objects.create(
        run=run, source=source, policy=policy, action="delete", cutoff=timezone.now()
    )
    return Plugin(system, source, subject, conversation, flag, policy, hold, subject_hold, run)


@dataclass
class People:
    dpo: object
    alpha_actor: object
    alpha_viewer: object
    beta_actor: object
    nobody: object


@pytest.fixture
def dpo(db):
    return StaffUserFactory(username="head-dpo")


@pytest.fixture
def alpha(dpo) -> Plugin:
    return make_plugin("alpha", dpo)


@pytest.fixture
def beta(dpo) -> Plugin:
    return make_plugin("beta", dpo)


@pytest.fixture
def people(dpo, alpha, beta) -> People:
    alpha_actor = PrivacyStaffFactory(username="alpha-actor")
    alpha_viewer = PrivacyStaffFactory(username="alpha-viewer")
    beta_actor = PrivacyStaffFactory(username="beta-actor")
    nobody = PrivacyStaffFactory(username="no-system")
    staff_grant_system(user=alpha_actor, system=alpha.system, can_act=True, actor="test")
    staff_grant_system(user=alpha_viewer, system=alpha.system, can_act=False, actor="test")
    staff_grant_system(user=beta_actor, system=beta.system, can_act=True, actor="test")
    return People(dpo, alpha_actor, alpha_viewer, beta_actor, nobody)


@pytest.fixture
def signed_in(client):
    """``signed_in(user)``: the test client, signed in as ``user``."""

    def sign_in(user):
        client.force_login(user)
        return client

    return sign_in


def file_request(plugin: Plugin, type_: str = "access", *, channel: str = "phone", **extra):
    """A request from the plugin's customer, entered by staff (so staff verify it), through
    the same service as the API and the portal."""
    from dsar import services

    return services.request_create(
        type=type_,
        identity={"email": f"{plugin.system.slug}-customer@example.com"},
        channel=channel,
        actor="staff",
        **extra,
    )


@pytest.fixture
def committed(django_capture_on_commit_callbacks):
    """Run what a block leaves for after commit (notices to the subject, task dispatch)."""

    def block():
        return django_capture_on_commit_callbacks(execute=True)

    return block
