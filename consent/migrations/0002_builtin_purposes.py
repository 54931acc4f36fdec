"""The two CCPA opt-outs every installation has, as purposes with a first notice."""

from django.db import migrations
from django.utils import timezone

BUILTIN = [
    {
        "slug": "sale-and-sharing",
        "name": "Selling or sharing personal information",
        "description": (
            "Selling your personal information, or sharing it for cross-context behavioural "
            "advertising. You can opt out at any time, and a Global Privacy Control signal "
            "from your browser counts as opting out."
        ),
        "lawful_basis": "consent",
        "sensitive": False,
        "sold_or_shared": True,
        "receipt_category": "Sharing for Marketing",
        "notice": (
            "We may sell or share your personal information with partners for advertising. "
            "Choose 'Do not sell or share my personal information' to stop it; we honour the "
            "Global Privacy Control signal as the same choice."
        ),
    },
    {
        "slug": "sensitive-pi-use",
        "name": "Using sensitive personal information",
        "description": (
            "Using sensitive personal information you give us (such as financial details or "
            "precise location) for more than providing the service you asked for. You can "
            "limit it to what the service needs at any time."
        ),
        "lawful_basis": "consent",
        "sensitive": True,
        "sold_or_shared": False,
        "receipt_category": "Personalized Experience",
        "notice": (
            "We may use sensitive personal information you share with us beyond what is "
            "needed to answer you. Choose 'Limit the use of my sensitive personal "
            "information' to restrict it to what the service needs."
        ),
    },
]


def create(apps, schema_editor):
    Purpose = apps.get_model("consent", "Purpose")
    PurposeNotice = apps.get_model("consent", "PurposeNotice")
    now = timezone.now()
    for spec in BUILTIN:
        spec = dict(spec)
        notice = spec.pop("notice")
        purpose, created = Purpose.objects.get_or_create(
            slug=spec.pop("slug"), defaults={**spec, "created_at": now}
        )
        if created:
            PurposeNotice.objects.create(purpose=purpose, version=1, text=notice, published_at=now)


class Migration(migrations.Migration):
    dependencies = [("consent", "0001_initial")]

    operations = [migrations.RunPython(create, migrations.RunPython.noop)]
