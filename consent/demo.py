"""Demo consent data: the five purposes a chatbot operator typically has (plus the two CCPA
opt-outs from the migration) and a consent history for some demo customers. Running it
again changes nothing."""

from __future__ import annotations

from compliance.demo import ACTOR, demo_customers
from compliance.models import DataCategory, Jurisdiction, System
from compliance.selectors import subject_find_by_identity
from consent import services
from consent.models import (
    SALE_SHARING,
    SENSITIVE_PI,
    ConsentEvent,
    ConsentSource,
    LawfulBasis,
    Purpose,
    ReceiptPurposeCategory,
)

PURPOSES = [
    {
        "slug": "conversation-logging",
        "name": "Keeping a log of your conversations",
        "description": "We keep what you write to our assistants so that we can follow up on "
        "your questions and prove what was said.",
        "lawful_basis": LawfulBasis.LEGITIMATE_INTEREST,
        "receipt_category": ReceiptPurposeCategory.CORE_FUNCTION,
        "categories": ["contact-details", "conversation-content"],
        "notices": [
            "We keep a log of your conversations with our assistants for 12 months to answer "
            "follow-up questions and handle complaints. You can object at any time."
        ],
    },
    {
        "slug": "ai-improvement",
        "name": "Using your conversations to improve the AI",
        "description": "With your consent, we use your conversations to train and evaluate "
        "the assistants so they answer better.",
        "lawful_basis": LawfulBasis.CONSENT,
        "receipt_category": ReceiptPurposeCategory.IMPROVE_PERFORMANCE,
        "categories": ["conversation-content"],
        "notices": [
            "May we use your conversations to improve our AI assistants? We remove your name, "
            "email and phone number first. You can withdraw at any time."
        ],
    },
    {
        "slug": "marketing",
        "name": "Offers by email",
        "description": "With your consent, we send you offers based on your orders.",
        "lawful_basis": LawfulBasis.CONSENT,
        "receipt_category": ReceiptPurposeCategory.MARKETING,
        "categories": ["contact-details", "order-history"],
        "notices": [
            "We would like to email you offers.",
            "We would like to email you offers chosen from your past orders, at most once a "
            "week. You can withdraw at any time with one click.",
        ],
    },
    {
        "slug": "third-party-sharing",
        "name": "Sharing with partner companies",
        "description": "With your consent, we share your contact details and order history "
        "with partner shops so they can make you offers.",
        "lawful_basis": LawfulBasis.CONSENT,
        "sold_or_shared": True,
        "third_party_name": "Partner shops and their advertising networks",
        "receipt_category": ReceiptPurposeCategory.SHARING_FOR_MARKETING,
        "categories": ["contact-details", "order-history"],
        "notices": [
            "May we share your contact details and order history with our partner shops for "
            "their offers? Under the CCPA this is a sale or sharing you can opt out of."
        ],
    },
    {
        "slug": "analytics",
        "name": "Measuring how the assistants are used",
        "description": "We count which questions are asked and how long answers take, to "
        "plan staff and fix problems.",
        "lawful_basis": LawfulBasis.LEGITIMATE_INTEREST,
        "receipt_category": ReceiptPurposeCategory.IMPROVE_PERFORMANCE,
        "categories": ["conversation-content"],
        "notices": [
            "We measure how our assistants are used, in aggregate. You can object at any time."
        ],
    },
]


def _seed_purposes() -> dict[str, Purpose]:
    systems = list(System.objects.all())
    made = {}
    for spec in PURPOSES:
        purpose = Purpose.objects.filter(slug=spec["slug"]).first()
        if purpose is None:
            purpose = services.purpose_create(
                slug=spec["slug"],
                name=spec["name"],
                description=spec["description"],
                lawful_basis=spec["lawful_basis"],
                notice_text=spec["notices"][0],
                sold_or_shared=spec.get("sold_or_shared", False),
                third_party_name=spec.get("third_party_name", ""),
                receipt_category=spec["receipt_category"],
                data_categories=DataCategory.objects.filter(slug__in=spec["categories"]),
                systems=systems,
                actor=ACTOR,
            )
        for text in spec["notices"][1:]:
            services.purpose_notice_publish(purpose=purpose, text=text, actor=ACTOR)
        made[purpose.slug] = purpose
    for slug in (SALE_SHARING, SENSITIVE_PI):
        made[slug] = Purpose.objects.get(slug=slug)
    sensitive = DataCategory.objects.filter(sensitive=True)
    if sensitive.exists() and not made[SENSITIVE_PI].data_categories.exists():
        made[SENSITIVE_PI].data_categories.set(sensitive)
    return made


def _seed_events(purposes: dict[str, Purpose]) -> int:
    if ConsentEvent.objects.filter(actor=ACTOR).exists():
        return 0
    recorded = 0
    for n, customer in enumerate(demo_customers()):
        subject = subject_find_by_identity(identity_type="customer_id", value=customer.customer_id)
        if subject is None:
            continue
        plan: list[tuple[str, str, str]] = []  # (purpose, action, source)
        if n % 3 == 0:
            plan += [("ai-improvement", "grant", ConsentSource.PORTAL)]
        if n % 4 == 0:
            plan += [("marketing", "grant", ConsentSource.PLUGIN)]
        if n % 8 == 0:
            # Art. 7(3): withdrawn later, as easily as it was given.
            plan += [("marketing", "withdraw", ConsentSource.PORTAL)]
        if n % 5 == 0:
            plan += [("third-party-sharing", "grant", ConsentSource.PORTAL)]
        if n % 11 == 0:
            plan += [("analytics", "object", ConsentSource.PORTAL)]
        if n in (13, 27):
            plan += [("conversation-logging", "object", ConsentSource.PORTAL)]
        if customer.jurisdiction == Jurisdiction.US_CA and n % 2 == 0:
            plan += [(SALE_SHARING, "opt_out", ConsentSource.PORTAL)]
        if customer.jurisdiction == Jurisdiction.US_CA and n % 3 == 0:
            plan += [(SENSITIVE_PI, "opt_out", ConsentSource.PORTAL)]
        for slug, action, source in plan:
            services.consent_record(
                subject=subject,
                purpose=purposes[slug],
                action=action,
                source=source,
                actor=ACTOR,
                evidence={"collection_point": "demo"},
            )
            recorded += 1
        if customer.jurisdiction == Jurisdiction.US_CA and n % 7 == 0:
            recorded += services.gpc_signal_record(subject=subject, actor=ACTOR) is not None
    return recorded


def seed_consent(*, stdout=None) -> dict:
    purposes = _seed_purposes()
    events = _seed_events(purposes)
    return {"purposes": len(purposes), "consent_events_created": events}
