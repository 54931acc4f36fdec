from django.apps import AppConfig


class ComplianceConfig(AppConfig):
    name = "compliance"
    verbose_name = "Compliance core"

    def ready(self) -> None:
        from compliance import lookups  # noqa: F401 - registers field__any
