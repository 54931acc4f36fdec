import importlib
import os

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

# Each app contributes its own demo data, in this order.
SEEDERS = ["compliance.demo:seed_core", "consent.demo:seed_consent"]


class Command(BaseCommand):
    help = (
        "Create demo data: a DPO superuser, three plugins with AI disclosures, 50 "
        "customers and 2,000 conversations. Running it again changes nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--allow-production",
            action="store_true",
            help="Seed even with DATABASE_URL set (never on real data).",
        )

    def handle(self, *args, allow_production, **options):
        from compliance import demo

        if not (settings.EMBEDDED or settings.LOCAL_DEMO or settings.DEBUG or allow_production):
            raise CommandError(
                "seed_demo creates a superuser with a known password; it runs "
                "only in embedded mode, with DEBUG=true, or with "
                "--allow-production."
            )
        password = os.environ.get("DEMO_DPO_PASSWORD", "privacy-demo")
        username, created = demo.seed_dpo(password=password)
        for dotted in SEEDERS:
            module, func = dotted.split(":")
            summary = getattr(importlib.import_module(module), func)()
            self.stdout.write(f"{module}: {summary}")
        key_file = demo.seed_api_key()
        if key_file:
            self.stdout.write(f"demo API key written to {key_file}")
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo data ready. DPO login: {username} / {password if created else '(unchanged)'}"
            )
        )
