"""The grant pages' proxy model, and the two per-system permissions on compliance.System
that django-guardian assigns per system (compliance/workspace/permissions.py)."""

import django.contrib.auth.models
from django.db import migrations

SYSTEM_PERMISSIONS = {
    "view_system_data": "Can see the records of this system (requests, sources, policies, flags)",
    "act_on_system_data": "Can act on the records of this system (approve, change, run)",
}


def create_system_permissions(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    content_type, _ = ContentType.objects.get_or_create(app_label="compliance", model="system")
    for codename, name in SYSTEM_PERMISSIONS.items():
        Permission.objects.update_or_create(
            content_type=content_type, codename=codename, defaults={"name": name}
        )


def remove_system_permissions(apps, schema_editor):
    Permission = apps.get_model("auth", "Permission")
    Permission.objects.filter(
        content_type__app_label="compliance",
        content_type__model="system",
        codename__in=list(SYSTEM_PERMISSIONS),
    ).delete()


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("compliance", "0003_answer_flags"),
    ]

    operations = [
        migrations.CreateModel(
            name="StaffSystemAccess",
            fields=[],
            options={
                "verbose_name": "staff access to systems",
                "verbose_name_plural": "staff access to systems",
                "proxy": True,
                "indexes": [],
                "constraints": [],
            },
            bases=("auth.user",),
            managers=[
                ("objects", django.contrib.auth.models.UserManager()),
            ],
        ),
        migrations.RunPython(create_system_permissions, remove_system_permissions),
    ]
