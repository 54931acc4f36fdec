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
