"""Enforce retention policies now, in this process (the daily Celery beat does the same)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from compliance.models import RetentionPolicy, RetentionRun, RetentionRunStatus
from compliance.retention import retention_enforce, retention_run_execute
from compliance.services import ServiceError


class Command(BaseCommand):
    help = (
        "Enforce every enabled retention policy (or one, with --policy) on the log sources it "
        "governs, in batches. --dry-run counts what would be acted on and changes nothing. "
        "--resume RUN_ID continues an interrupted run from where it stopped."
    )

    def add_arguments(self, parser):
        parser.add_argument("--policy", type=int, metavar="ID", help="only this policy")
        parser.add_argument("--dry-run", action="store_true", help="count, change nothing")
        parser.add_argument("--batch-size", type=int, metavar="N", help="rows per transaction")
        parser.add_argument("--resume", type=int, metavar="RUN_ID", help="continue this run")
        parser.add_argument("--actor", default="command:retention_enforce")

    def handle(self, *args, **options):
        batch_size = options["batch_size"]
        if batch_size is not None and batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        try:
            if options["resume"] is not None:
                if options["policy"] is not None or options["dry_run"]:
                    raise CommandError("--resume continues a run as it was planned; drop the rest.")
                if not RetentionRun.objects.filter(pk=options["resume"]).exists():
                    raise CommandError(f"No retention run with id {options['resume']}.")
                run = retention_run_execute(run_id=options["resume"], batch_size=batch_size)
            else:
                policy = None
                if options["policy"] is not None:
                    policy = RetentionPolicy.objects.filter(pk=options["policy"]).first()
                    if policy is None:
                        raise CommandError(f"No retention policy with id {options['policy']}.")
                run = retention_enforce(
                    actor=options["actor"],
                    policy=policy,
                    dry_run=options["dry_run"],
                    batch_size=batch_size,
                )
        except ServiceError as exc:
            raise CommandError(exc.message) from None
        self._report(run)
        if run.status == RetentionRunStatus.COMPLETED_WITH_FAILURES:
            raise CommandError(f"Run {run.pk}: some sources failed (see above).")

    def _report(self, run: RetentionRun) -> None:
        what = "would act on" if run.dry_run else "acted on"
        self.stdout.write(
            f"Retention run {run.pk}{' (dry run)' if run.dry_run else ''}: {run.status}"
        )
        header = f"{'source':<40}{'status':<10}{'in scope':>10}{what:>14}{'held':>10}{'failed':>8}"
        self.stdout.write(header)
        for row in run.sources.select_related("source__system").order_by("source__name"):
            line = (
                f"{str(row.source)[:39]:<40}{row.status:<10}{row.in_scope:>10}"
                f"{row.acted_on:>14}{row.held:>10}{row.failed:>8}"
            )
            self.stdout.write(line)
            if row.held_reasons:
                self.stdout.write(f"    held: {'; '.join(row.held_reasons)}")
            if row.error:
                self.stdout.write(self.style.ERROR(f"    error: {row.error}"))
        if not run.sources.exists():
            self.stdout.write("No enabled log source is governed by the policies run.")
