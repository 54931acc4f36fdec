"""Create or update the "Privacy staff" group with the model permissions the DPO workspace
needs. Which systems each member works on is granted per person under "Staff access to
systems" in the admin (docs/workspace.md)."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from compliance.workspace.services import PRIVACY_STAFF_PERMISSIONS, privacy_staff_group_ensure


class Command(BaseCommand):
    help = 'Create or update the "Privacy staff" group (model permissions of the workspace).'

    def handle(self, *args, **options) -> None:
        group = privacy_staff_group_ensure(actor="command:workspace_staff_group")
        self.stdout.write(
            f'Group "{group.name}" holds {len(PRIVACY_STAFF_PERMISSIONS)} permissions. Add '
            "people to it, then grant them systems under DPO workspace > Staff access to "
            "systems."
        )
