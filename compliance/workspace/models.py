"""The workspace keeps no data of its own: system grants are django-guardian object
permissions on ``compliance.System``. The proxy below only gives the grant pages a place
in the admin (and a permission, ``workspace.change_staffsystemaccess``, to use them)."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.utils.translation import gettext_lazy as _


class StaffSystemAccess(User):
    class Meta:
        proxy = True
        verbose_name = _("staff access to systems")
        verbose_name_plural = _("staff access to systems")
