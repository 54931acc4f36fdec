"""Index the emails and phone numbers written in messages stored before the mention index
existed (or, with --rebuild, after PHONE_DEFAULT_REGION changed). Resumable with --after."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from compliance.audit import audit_record
from compliance.connectors.builtin import mentions_backfill

ACTOR = "command:backfill_mentions"


class Command(BaseCommand):
    help = "Extract email and phone mentions from stored messages into the mention index."

    def add_arguments(self, parser):
        parser.add_argument(
            "--after", type=int, default=0, help="Start after this message id (resume)."
        )
        parser.add_argument("--batch-size", type=int, default=5000)
        parser.add_argument(
            "--rebuild",
            action="store_true",
            help="Recompute the mentions of messages that already have some.",
        )

    def handle(self, *args, after: int, batch_size: int, rebuild: bool, **options):
        if batch_size < 1:
            raise CommandError("--batch-size must be positive.")
        messages = mentions = 0
        last = after
        for last, scanned, added in mentions_backfill(
            after=after, batch_size=batch_size, rebuild=rebuild
        ):
            messages += scanned
            mentions += added
            # Ids and counts only: the text and what was found in it stay out of the output.
            self.stdout.write(f"up to message {last}: {messages} messages, {mentions} mentions")
        with transaction.atomic():
            audit_record(
                actor=ACTOR,
                action="mentions.backfilled",
                target_type="compliance.message",
                target_id=str(last),
                detail={
                    "after": after,
                    "last": last,
                    "messages": messages,
                    "mentions": mentions,
                    "rebuild": rebuild,
                },
            )
        self.stdout.write(self.style.SUCCESS(f"Done: {messages} messages, {mentions} mentions."))
