from django.apps import AppConfig


class ConsentConfig(AppConfig):
    name = "consent"
    verbose_name = "Consent and opt-outs"

    def ready(self) -> None:
        from django.core.signals import request_finished
        from django.db.models.signals import post_delete, post_save

        from compliance.ingest import register_ingest_guard
        from consent.cache import catalogue_changed_on_commit
        from consent.guards import conversation_logging_guard
        from consent.models import Purpose
        from consent.services import flush_pending_refusals

        register_ingest_guard(conversation_logging_guard)
        # Refusal counts that SQLite could not write inside the refused ingest transaction.
        request_finished.connect(flush_pending_refusals, dispatch_uid="consent-refusals")
        # Every process keeps the purpose catalogue in memory: whatever writes a purpose (the
        # services, the admin, a shell, a factory) must tell them, so this is a signal.
        for signal in (post_save, post_delete):
            signal.connect(
                lambda **kwargs: catalogue_changed_on_commit(),
                sender=Purpose,
                weak=False,
                dispatch_uid=f"consent-catalogue-{signal is post_save}",
            )
