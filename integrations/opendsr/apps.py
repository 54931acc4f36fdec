from django.apps import AppConfig


class OpenDsrConfig(AppConfig):
    name = "integrations.opendsr"
    label = "opendsr"
    verbose_name = "OpenDSR requests and status callbacks"
