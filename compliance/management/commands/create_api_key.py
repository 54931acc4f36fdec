from django.core.management.base import BaseCommand, CommandError

from compliance.models import ApiClient, System
from compliance.services import KNOWN_SCOPES, ServiceError, api_client_create, api_key_issue


class Command(BaseCommand):
    help = (
        "Create an API client (or reuse one by name) and issue it a key. The key is "
        "printed once and never stored in clear."
    )

    def add_arguments(self, parser):
        parser.add_argument("name", help="The client's name, e.g. shop-assistant-plugin.")
        parser.add_argument(
            "--scope",
            action="append",
            default=[],
            dest="scopes",
            help=f"Repeat for each scope: {', '.join(KNOWN_SCOPES)}.",
        )
        parser.add_argument("--system", help="Limit the client to this system's slug.")

    def handle(self, *args, name, scopes, system, **options):
        bound = None
        if system:
            bound = System.objects.filter(slug=system).first()
            if bound is None:
                raise CommandError(f"No system with the slug {system!r}.")
        try:
            client = ApiClient.objects.filter(name=name).first()
            if client is None:
                if not scopes:
                    raise CommandError("A new client needs at least one --scope.")
                client = api_client_create(name=name, scopes=scopes, system=bound, actor="cli")
            elif scopes and sorted(scopes) != sorted(client.scopes):
                raise CommandError(
                    "This client exists with other scopes; change them in "
                    "the admin or pick another name."
                )
            _, raw = api_key_issue(client=client, actor="cli")
        except ServiceError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(raw)
