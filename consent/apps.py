from django.apps import AppConfig


class ConsentConfig(AppConfig):
    name = "consent"
    verbose_name = "Consent and opt-outs"

    def ready(self) -> None:
        from django.core.signals import request_finished
        from django.db.models.signals import post_delete, post_save

        from compliance.ingest import register_ingest_guard
        from compliance.subject_hooks import register_subject_identified_hook
        from consent.cache import catalogue_changed_on_commit, connect_subject_signals
        from consent.gpc import gpc_request_check, gpc_subjects_identified
        from consent.guards import conversation_logging_guard
        from consent.models import Purpose
        from consent.services import flush_pending_refusals

        register_ingest_guard(conversation_logging_guard)
        # GPC on every request that identifies a customer, not only the consent endpoints.
        register_subject_identified_hook(
            check=gpc_request_check, identified=gpc_subjects_identified
        )
        # Refusal counts that SQLite could not write inside the refused ingest transaction.
        request_finished.connect(flush_pending_refusals, dispatch_uid="consent-refusals")
        # The GET check's hot path caches which subject an identity names, with its
        # jurisdiction and restriction: ORM writes to those rows invalidate it.
        connect_subject_signals()
        # Every process keeps the purpose catalogue in memory: whatever writes a purpose (the
        # services, the admin, a shell, a factory) must tell them, so this is a signal.
        for signal in (post_save, post_delete):
            signal.connect(
                lambda **kwargs: catalogue_changed_on_commit(),
                sender=Purpose,
                weak=False,
                dispatch_uid=f"consent-catalogue-{signal is post_save}",
            )
