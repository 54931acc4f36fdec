"""Granting and revoking the systems a member of the privacy staff works on, and the group
that gives them the model permissions the workspace needs. Each change is audited."""

from __future__ import annotations

from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from guardian.models import UserObjectPermission
from guardian.shortcuts import assign_perm, remove_perm

from compliance.audit import audit_record
from compliance.models import System
from compliance.services import ConflictError, ServiceError
from compliance.workspace.permissions import ACT_ON_SYSTEM_DATA, VIEW_SYSTEM_DATA

LEVEL_NONE, LEVEL_VIEW, LEVEL_ACT = "none", "view", "act"
_VIEW_CODENAME = VIEW_SYSTEM_DATA.split(".")[1]
_ACT_CODENAME = ACT_ON_SYSTEM_DATA.split(".")[1]

PRIVACY_STAFF_GROUP = "Privacy staff"
# The model permissions the privacy staff need; which *systems* they reach is granted per
# system on top (compliance.workspace.permissions). Deliberately absent: the admin pages
# that are not held to systems (subjects, conversations, consent events, the audit trail,
# API clients and keys), and changing systems. A head DPO who covers every system gets
# those on their own account.
PRIVACY_STAFF_PERMISSIONS = (
    "compliance.view_logsource",
    "compliance.change_logsource",
    "compliance.add_logsource",
    "compliance.view_retentionpolicy",
    "compliance.change_retentionpolicy",
    "compliance.add_retentionpolicy",
    "compliance.view_legalhold",
    "compliance.change_legalhold",
    "compliance.add_legalhold",
    "compliance.view_retentionrun",
    "compliance.view_answerflag",
    "compliance.change_answerflag",
    "compliance.view_system",
    "dsar.view_datasubjectrequest",
    "dsar.change_datasubjectrequest",
    "dsar.view_sourcetask",
)


def system_access_level(*, user, system: System) -> str:
    """The level granted to ``user`` on ``system`` itself. Grants through groups and global
    grants are not counted here (``staff_scope`` counts them): this is what the grant pages
    show and change."""
    if user.pk is None:
        return LEVEL_NONE
    codenames = set(
        UserObjectPermission.objects.filter(
            user=user,
            object_pk=str(system.pk),
            content_type=ContentType.objects.get_for_model(System),
        ).values_list("permission__codename", flat=True)
    )
    if _ACT_CODENAME in codenames:
        return LEVEL_ACT
    if _VIEW_CODENAME in codenames:
        return LEVEL_VIEW
    return LEVEL_NONE


def staff_grant_system(*, user, system: System, can_act: bool, actor: str) -> str:
    """Let ``user`` see the records of ``system`` and, with ``can_act``, act on them. Granting
    a lower level than held downgrades. Returns the new level."""
    if not user.is_active or not user.is_staff:
        raise ServiceError("Only active staff can be granted a system.", field="user")
    if user.is_superuser:
        raise ConflictError(
            "A superuser already works on every system; a grant would change nothing.",
            field="user",
        )
    new = LEVEL_ACT if can_act else LEVEL_VIEW
    with transaction.atomic():
        previous = system_access_level(user=user, system=system)
        if previous == new:
            return new
        assign_perm(VIEW_SYSTEM_DATA, user, system)
        if can_act:
            assign_perm(ACT_ON_SYSTEM_DATA, user, system)
        else:
            remove_perm(ACT_ON_SYSTEM_DATA, user, system)
        audit_record(
            actor=actor,
            action="workspace.system_access.granted",
            target=system,
            detail={"user": user.pk, "level": new, "previous": previous},
        )
    return new


def staff_revoke_system(*, user, system: System, actor: str) -> None:
    """Take ``system`` away from ``user`` entirely."""
    with transaction.atomic():
        previous = system_access_level(user=user, system=system)
        if previous == LEVEL_NONE:
            raise ConflictError("This person has no access to this system.", field="system")
        remove_perm(VIEW_SYSTEM_DATA, user, system)
        remove_perm(ACT_ON_SYSTEM_DATA, user, system)
        audit_record(
            actor=actor,
            action="workspace.system_access.revoked",
            target=system,
            detail={"user": user.pk, "previous": previous},
        )


def privacy_staff_group_ensure(*, actor: str) -> Group:
    """Create or update the "Privacy staff" group with ``PRIVACY_STAFF_PERMISSIONS``."""
    wanted = []
    for label in PRIVACY_STAFF_PERMISSIONS:
        app_label, codename = label.split(".")
        permission = Permission.objects.filter(
            content_type__app_label=app_label, codename=codename
        ).first()
        if permission is None:
            raise ServiceError(f"Permission {label} does not exist; run migrate first.")
        wanted.append(permission)
    with transaction.atomic():
        group, created = Group.objects.get_or_create(name=PRIVACY_STAFF_GROUP)
        before = set(group.permissions.values_list("pk", flat=True))
        group.permissions.set(wanted)
        if created or before != {p.pk for p in wanted}:
            audit_record(
                actor=actor,
                action="workspace.staff_group.updated",
                target=group,
                detail={"permissions": sorted(PRIVACY_STAFF_PERMISSIONS), "created": created},
            )
    return group
