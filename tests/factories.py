"""Factories for every test, in one place."""

from __future__ import annotations

from datetime import timedelta

import factory
from django.utils import timezone

from compliance.models import (
    AIDisclosure,
    ApiClient,
    Conversation,
    DataSubject,
    Jurisdiction,
    LogSource,
    Message,
    MessageRole,
    SubjectIdentity,
    System,
)


class SystemFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = System
        django_get_or_create = ["slug"]

    slug = factory.Sequence(lambda n: f"plugin-{n}")
    name = factory.LazyAttribute(lambda o: o.slug.replace("-", " ").title())
    owner_contact = "owner@example.com"


class DisclosureFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AIDisclosure

    system = factory.SubFactory(SystemFactory)
    version = factory.Sequence(lambda n: n + 1)
    text = "You are chatting with an AI assistant."


class SubjectFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = DataSubject
        skip_postgeneration_save = True

    display_name = factory.Faker("name")
    jurisdiction = Jurisdiction.EU
    external_id = factory.Sequence(lambda n: f"C-{n:05d}")

    @factory.post_generation
    def identities(self, create, extracted, **kwargs):
        if not create:
            return
        SubjectIdentity.objects.create(subject=self, type="customer_id", value=self.external_id)
        for identity_type, value in (extracted or {}).items():
            SubjectIdentity.objects.create(subject=self, type=identity_type, value=value)


class ConversationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Conversation

    system = factory.SubFactory(SystemFactory)
    subject = factory.SubFactory(SubjectFactory)
    external_id = factory.Sequence(lambda n: f"conv-{n}")
    started_at = factory.LazyFunction(lambda: timezone.now() - timedelta(days=1))


class MessageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Message

    conversation = factory.SubFactory(ConversationFactory)
    sequence = factory.Sequence(lambda n: n)
    role = MessageRole.CUSTOMER
    text = factory.Faker("sentence")
    sent_at = factory.LazyFunction(timezone.now)


class LogSourceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = LogSource

    system = factory.SubFactory(SystemFactory)
    name = factory.Sequence(lambda n: f"source-{n}")
    connector = "builtin"


class ApiClientFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ApiClient

    name = factory.Sequence(lambda n: f"client-{n}")
    scopes = factory.LazyFunction(list)


# --- Privacy portal -------------------------------------------------------------------------


class AnswerFlagFactory(factory.django.DjangoModelFactory):
    """A customer's report on an AI answer in their own conversation."""

    class Meta:
        model = "compliance.AnswerFlag"

    message = factory.SubFactory(MessageFactory, role=MessageRole.ASSISTANT)
    subject = factory.LazyAttribute(lambda o: o.message.conversation.subject)
    category = "wrong"
    comment = "It said my parcel arrived; it did not."


# --- Webhooks (integrations) ------------------------------------------------------------------


class WebhookSubscriptionFactory(factory.django.DjangoModelFactory):
    """A subscription written directly; the secret is known to the test as ``.secret``."""

    class Meta:
        model = "integrations.WebhookSubscription"

    system = factory.SubFactory(SystemFactory)
    target_url = "http://127.0.0.1:9/hooks"
    event_types = factory.LazyFunction(lambda: ["consent.changed", "erasure.requested"])
    secret = factory.Sequence(lambda n: f"whsec_test_secret_{n:04d}")
    created_by = "test"


# --- Consent ----------------------------------------------------------------------------------


class PurposeFactory(factory.django.DjangoModelFactory):
    """A consent-based purpose with notice v1; pass ``notices=[...]`` for more versions."""

    class Meta:
        model = "consent.Purpose"
        django_get_or_create = ["slug"]
        skip_postgeneration_save = True

    slug = factory.Sequence(lambda n: f"purpose-{n}")
    name = factory.LazyAttribute(lambda o: o.slug.replace("-", " ").capitalize())
    description = "What we do with your data, in plain words."
    lawful_basis = "consent"

    @factory.post_generation
    def notices(self, create, extracted, **kwargs):
        if not create or self.notices.exists():
            return
        from consent.models import PurposeNotice

        for version, text in enumerate(extracted or [f"Notice for {self.slug}."], start=1):
            PurposeNotice.objects.create(purpose=self, version=version, text=text)


# --- Retention and legal holds ----------------------------------------------------------------


class StaffUserFactory(factory.django.DjangoModelFactory):
    """A DPO: staff with every permission, as the admin tests need."""

    class Meta:
        model = "auth.User"
        django_get_or_create = ["username"]
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"dpo-{n}")
    email = factory.LazyAttribute(lambda o: f"{o.username}@example.com")
    is_staff = True
    is_superuser = True
    password = factory.PostGenerationMethodCall("set_password", "correct horse battery")

    @factory.post_generation
    def saved(self, create, extracted, **kwargs):
        if create:
            self.save()


class RetentionPolicyFactory(factory.django.DjangoModelFactory):
    """Written directly, bypassing the service; scope defaults to a new system."""

    class Meta:
        model = "compliance.RetentionPolicy"

    name = factory.Sequence(lambda n: f"Policy {n}")
    system = factory.SubFactory(SystemFactory)
    duration_days = 90
    action = "delete"
    approved_by = factory.SubFactory(StaffUserFactory)
    approved_at = factory.LazyFunction(timezone.now)


class LegalHoldFactory(factory.django.DjangoModelFactory):
    """Written directly, bypassing the service; pass exactly one of subject/system/source."""

    class Meta:
        model = "compliance.LegalHold"

    reason = "legal_claims"
    reason_detail = "Matter 2026-17"
    owner = factory.SubFactory(StaffUserFactory)
    starts_at = factory.LazyFunction(lambda: timezone.now() - timedelta(minutes=1))


def _dsar_subject_ref(o) -> str:
    from dsar.records import subject_ref

    return subject_ref(
        subject_id=o.subject.pk if o.subject else None,
        identity_type=o.identity_type,
        identity_value=o.identity_value,
    )


class DataSubjectRequestFactory(factory.django.DjangoModelFactory):
    """A request row written directly, in any status, for selector and admin tests; flows
    that move a request go through dsar.services."""

    class Meta:
        model = "dsar.DataSubjectRequest"

    type = "access"
    regulation = "gdpr"
    channel = "api"
    status = "received"
    subject = factory.SubFactory(SubjectFactory)
    identity_type = "customer_id"
    identity_value = factory.LazyAttribute(lambda o: o.subject.external_id if o.subject else "")
    subject_ref = factory.LazyAttribute(lambda o: _dsar_subject_ref(o))
    received_at = factory.LazyFunction(timezone.now)
    due_at = factory.LazyAttribute(lambda o: o.received_at + timedelta(days=30))


# --- DPO workspace ------------------------------------------------------------------------------


class PrivacyStaffFactory(StaffUserFactory):
    """A member of the privacy staff: staff but not a superuser, in the "Privacy staff" group
    (model permissions). They reach no system until one is granted with
    ``compliance.workspace.services.staff_grant_system``."""

    username = factory.Sequence(lambda n: f"privacy-staff-{n}")
    is_superuser = False

    @factory.post_generation
    def privacy_group(self, create, extracted, **kwargs):
        if create:
            from compliance.workspace.services import privacy_staff_group_ensure

            self.groups.add(privacy_staff_group_ensure(actor="test"))


class DataCategoryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "compliance.DataCategory"
        django_get_or_create = ["slug"]

    slug = factory.Sequence(lambda n: f"category-{n}")
    name = factory.LazyAttribute(lambda o: o.slug.replace("-", " ").capitalize())
