"""Demo data for the embedded mode: plugins with AI disclosures, customers from several
countries and their conversations, written by Faker with a fixed seed so that running the
seed twice changes nothing."""

from __future__ import annotations

import random
import unicodedata
from dataclasses import dataclass
from datetime import timedelta

import phonenumbers
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from faker import Faker

from compliance.ingest import conversations_ingest
from compliance.models import (
    ConnectorKind,
    Conversation,
    DataCategory,
    Jurisdiction,
    LogSource,
    System,
)
from compliance.selectors import subject_find_by_identity
from compliance.services import (
    api_client_create,
    api_key_issue,
    disclosure_publish,
    subject_create,
    system_save,
)

ACTOR = "seed_demo"
DEMO_DPO_USERNAME = "dpo"
CUSTOMERS = 50
CONVERSATIONS = 2000

# locale, phone region, jurisdiction
LOCALES = [
    ("en_US", "US", Jurisdiction.US_CA),
    ("en_GB", "GB", Jurisdiction.UK),
    ("de_DE", "DE", Jurisdiction.EU),
    ("fr_FR", "FR", Jurisdiction.EU),
    ("es_ES", "ES", Jurisdiction.EU),
    ("it_IT", "IT", Jurisdiction.EU),
    ("nl_NL", "NL", Jurisdiction.EU),
]

CATEGORIES = [
    ("contact-details", "Contact details", "Name, email address, phone number.", False),
    (
        "conversation-content",
        "Conversation content",
        "What the customer wrote to the assistant.",
        False,
    ),
    ("order-history", "Order history", "Orders, deliveries and returns.", False),
    ("travel-plans", "Travel plans", "Bookings, destinations and dates.", False),
    ("financial-information", "Financial information", "Account and payment questions.", True),
    ("precise-geolocation", "Precise geolocation", "Addresses and locations given in chats.", True),
]

SYSTEMS = [
    {
        "slug": "shop-assistant",
        "name": "Shop assistant",
        "description": "Answers order, delivery and return questions in the web shop.",
        "owner_contact": "shop-team@example.com",
        "categories": ["contact-details", "conversation-content", "order-history"],
        "recipients": "Parcel carriers (delivery questions); the AI model provider (processor).",
        "disclosures": [
            "You are chatting with an AI assistant.",
            "You are chatting with an AI assistant, not a person. It can make mistakes; ask "
            "for a human agent at any time.",
        ],
    },
    {
        "slug": "travel-concierge",
        "name": "Travel concierge",
        "description": "Helps customers change bookings and plan trips.",
        "owner_contact": "travel-team@example.com",
        "categories": [
            "contact-details",
            "conversation-content",
            "travel-plans",
            "precise-geolocation",
        ],
        "recipients": "Airlines and hotels (bookings); the AI model provider (processor).",
        "disclosures": ["This concierge is an AI system. A human can take over on request."],
    },
    {
        "slug": "bank-helpdesk",
        "name": "Bank helpdesk",
        "description": "Answers card and account questions for the banking app.",
        "owner_contact": "bank-support@example.com",
        "categories": ["contact-details", "conversation-content", "financial-information"],
        "recipients": "Card scheme (disputes); the AI model provider (processor).",
        "disclosures": [
            "Automated assistant.",
            "You are talking to an AI assistant. It cannot see your full account details.",
            "You are talking to an AI assistant (not a person). It cannot see your full "
            "account details and may be wrong; a human advisor is one click away.",
        ],
    },
]

TOPICS = {
    "shop-assistant": [
        (
            "Where is my order {order}?",
            "Your order {order} left our warehouse yesterday and should arrive within two days.",
        ),
        (
            "I want to return the shoes from order {order}.",
            "I've started a return for order {order}. You will get a label by email.",
        ),
        (
            "The parcel arrived damaged.",
            "I'm sorry to hear that. Could you send a photo of the damage?",
        ),
    ],
    "travel-concierge": [
        (
            "Can I move my flight to {city} to next Friday?",
            "There is a seat on Friday's flight to {city}. Shall I change the booking?",
        ),
        (
            "I need a hotel near {street}.",
            "Here are three hotels within walking distance of {street}.",
        ),
        (
            "Is breakfast included in booking {order}?",
            "Yes, booking {order} includes breakfast for two.",
        ),
    ],
    "bank-helpdesk": [
        (
            "My card was declined at a shop in {city}.",
            "For your security the card was paused after an unusual payment. I can unpause it now.",
        ),
        (
            "How do I raise my transfer limit?",
            "You can raise it under Settings → Limits; a change takes effect after 24 hours.",
        ),
        (
            "I don't recognise a payment of {amount} EUR.",
            "I've flagged the payment of {amount} EUR for review. A colleague will contact you.",
        ),
    ],
}


@dataclass
class DemoCustomer:
    customer_id: str
    name: str
    email: str
    phone: str
    jurisdiction: str
    locale: str


def _phone(rng: random.Random, region: str) -> str:
    example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
    national = str(example.national_number)
    for _ in range(100):
        digits = national[:3] + "".join(rng.choice("0123456789") for _ in national[3:])
        candidate = phonenumbers.parse(digits, region)
        if phonenumbers.is_valid_number(candidate):
            return phonenumbers.format_number(
                candidate, phonenumbers.PhoneNumberFormat.INTERNATIONAL
            )
    return phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def demo_customers() -> list[DemoCustomer]:
    rng = random.Random(20261127)
    customers = []
    for n in range(CUSTOMERS):
        locale, region, jurisdiction = LOCALES[n % len(LOCALES)]
        fake = Faker(locale)
        fake.seed_instance(1000 + n)
        first, last = fake.first_name(), fake.last_name()
        ascii_name = unicodedata.normalize("NFKD", f"{first}.{last}").encode("ascii", "ignore")
        slug = "".join(ch for ch in ascii_name.decode().lower() if ch.isalnum() or ch == ".")
        customers.append(
            DemoCustomer(
                customer_id=f"DEMO-{n + 1:04d}",
                name=f"{first} {last}",
                email=f"{slug}{n}@{fake.free_email_domain()}",
                phone=_phone(rng, region),
                jurisdiction=jurisdiction,
                locale=locale,
            )
        )
    return customers


def _seed_catalogue() -> dict[str, System]:
    categories = {}
    for slug, name, description, sensitive in CATEGORIES:
        categories[slug], _ = DataCategory.objects.get_or_create(
            slug=slug, defaults={"name": name, "description": description, "sensitive": sensitive}
        )
    systems = {}
    for spec in SYSTEMS:
        system = System.objects.filter(slug=spec["slug"]).first()
        if system is None:
            system = system_save(
                system=System(
                    slug=spec["slug"],
                    name=spec["name"],
                    description=spec["description"],
                    owner_contact=spec["owner_contact"],
                    recipients=spec["recipients"],
                ),
                actor=ACTOR,
                created=True,
            )
            system.data_categories.set([categories[c] for c in spec["categories"]])
            for text in spec["disclosures"]:
                disclosure_publish(system=system, text=text, actor=ACTOR)
            LogSource.objects.get_or_create(
                system=system,
                name="Built-in store",
                defaults={"connector": ConnectorKind.BUILTIN},
            )
        systems[system.slug] = system
    return systems


def _seed_customers(customers: list[DemoCustomer]) -> None:
    for c in customers:
        if subject_find_by_identity(identity_type="customer_id", value=c.customer_id):
            continue
        subject_create(
            identities={"customer_id": c.customer_id, "email": c.email, "phone": c.phone},
            display_name=c.name,
            jurisdiction=c.jurisdiction,
            actor=ACTOR,
        )


def _conversation(n: int, rng: random.Random, customers, systems, now):
    system = SYSTEMS[n % len(SYSTEMS)]
    slug = system["slug"]
    customer = customers[rng.randrange(len(customers))]
    fake = Faker(customer.locale)
    fake.seed_instance(n)
    started = now - timedelta(days=rng.randrange(1, 720), minutes=rng.randrange(1440))
    version = rng.randint(1, len(system["disclosures"]))
    values = {
        "order": f"{rng.randrange(10000, 99999)}",
        "city": fake.city(),
        "street": fake.street_name(),
        "amount": f"{rng.randrange(5, 900)}.{rng.randrange(100):02d}",
    }
    texts = [("assistant", system["disclosures"][version - 1] + " How can I help?")]
    for question, answer in rng.sample(TOPICS[slug], k=rng.randint(1, 3)):
        texts.append(("customer", question.format(**values)))
        texts.append(("assistant", answer.format(**values)))
    roll = rng.random()
    if roll < 0.15:
        texts.append(("customer", f"Please write to me at {customer.email} instead."))
        texts.append(("assistant", "Noted, we'll reply by email."))
    elif roll < 0.25:
        texts.append(("customer", f"You can call me on {customer.phone} after 5pm."))
        texts.append(("assistant", "Thank you, a colleague will call you."))
    elif roll < 0.30:
        # Another customer's address typed into this chat: the free-text search must find it.
        other = customers[rng.randrange(len(customers))]
        texts.append(("customer", f"My partner {other.email} placed the order, not me."))
        texts.append(("assistant", "Thanks, I've noted that."))
    messages = [
        {"sequence": i, "role": role, "text": text, "sent_at": started + timedelta(seconds=20 * i)}
        for i, (role, text) in enumerate(texts)
    ]
    anonymous = rng.random() < 0.05
    return {
        "system": slug,
        "conversation_id": f"demo-{n:05d}",
        "subject": None if anonymous else {"customer_id": customer.customer_id},
        "started_at": started,
        "disclosure_version": version,
        "disclosure_shown_at": started,
        "messages": messages,
    }


def _ingest_unless_stored(batch: list[dict]) -> int:
    """Ingest a batch unless an earlier run stored it. A batch commits whole, so all of it
    is stored or none; skipping it keeps a second run from writing even an audit event."""
    stored = Conversation.objects.filter(
        system__slug__in={c["system"] for c in batch},
        external_id__in=[c["conversation_id"] for c in batch],
    ).count()
    if stored == len(batch):
        return 0
    return conversations_ingest(conversations=batch, actor=ACTOR).messages_created


def seed_core(*, stdout=None) -> dict:
    customers = demo_customers()
    with transaction.atomic():
        systems = _seed_catalogue()
        _seed_customers(customers)
    rng = random.Random(42)
    now = timezone.now().replace(hour=12, minute=0, second=0, microsecond=0)
    batch, created = [], 0
    for n in range(CONVERSATIONS):
        batch.append(_conversation(n, rng, customers, systems, now))
        if len(batch) == 500:
            created += _ingest_unless_stored(batch)
            batch = []
    if batch:
        created += _ingest_unless_stored(batch)
    return {"systems": len(systems), "customers": len(customers), "messages_created": created}


def seed_dpo(*, password: str) -> tuple[str, bool]:
    User = get_user_model()
    user, created = User.objects.get_or_create(
        username=DEMO_DPO_USERNAME,
        defaults={
            "is_staff": True,
            "is_superuser": True,
            "email": "dpo@example.com",
            "first_name": "Demo",
            "last_name": "DPO",
        },
    )
    if created:
        user.set_password(password)
        user.save()
    return user.username, created


def seed_api_key() -> str | None:
    """A demo key with every scope, written to var/ so the README can show a curl call."""
    from compliance.models import ApiClient
    from compliance.services import KNOWN_SCOPES

    key_file = settings.VAR_DIR / "demo_api_key"
    if ApiClient.objects.filter(name="demo-client").exists() and key_file.exists():
        return None
    client = ApiClient.objects.filter(name="demo-client").first() or api_client_create(
        name="demo-client", scopes=list(KNOWN_SCOPES), actor=ACTOR
    )
    _, raw = api_key_issue(client=client, actor=ACTOR)
    key_file.write_text(raw + "\n")
    key_file.chmod(0o600)
    return str(key_file)
