from django.apps import AppConfig
from django.db.models.signals import post_migrate


def ensure_system_permissions(sender=None, using="default", **kwargs) -> None:
    """Create the per-system permissions after every migrate and flush (a flush empties the
    permission table, and only post_migrate handlers put rows back)."""
    from django.contrib.auth.models import Permission
    from django.contrib.contenttypes.models import ContentType

    from compliance.workspace.permissions import SYSTEM_PERMISSIONS

    content_type, _ = ContentType.objects.db_manager(using).get_or_create(
        app_label="compliance", model="system"
    )
    for codename, name in SYSTEM_PERMISSIONS.items():
        Permission.objects.db_manager(using).update_or_create(
            content_type=content_type, codename=codename, defaults={"name": name}
        )


class WorkspaceConfig(AppConfig):
    name = "compliance.workspace"
    label = "workspace"
    verbose_name = "DPO workspace"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        post_migrate.connect(
            ensure_system_permissions, sender=self, dispatch_uid="workspace-system-permissions"
        )
