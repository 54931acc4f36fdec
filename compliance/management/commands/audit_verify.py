from django.core.management.base import BaseCommand, CommandError

from compliance.audit import audit_verify


class Command(BaseCommand):
    help = "Check the audit trail's hash chain and report the first broken link."

    def handle(self, *args, **options):
        report = audit_verify()
        if report.intact:
            self.stdout.write(
                self.style.SUCCESS(f"The audit chain is intact: {report.checked} events checked.")
            )
            return
        where = f"event {report.broken_at}" if report.broken_at else "the end of the chain"
        raise CommandError(
            f"The audit chain is broken at {where}: {report.reason} "
            f"({report.checked} events before it are intact)."
        )
