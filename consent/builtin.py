"""The two CCPA opt-out purposes every installation has (§7026, §7027). A data migration
creates them; ``builtin_purposes_ensure`` puts them back if they were removed, so the
opt-out and GPC paths never depend on a row someone could delete."""

from __future__ import annotations

import importlib

from consent.models import SALE_SHARING, SENSITIVE_PI, Purpose


def builtin_purposes_ensure() -> None:
    from django.apps import apps

    importlib.import_module("consent.migrations.0002_builtin_purposes").create(apps, None)


def builtin_purpose(slug: str) -> Purpose:
    assert slug in (SALE_SHARING, SENSITIVE_PI)
    purpose = Purpose.objects.filter(slug=slug).first()
    if purpose is None:
        builtin_purposes_ensure()
        purpose = Purpose.objects.get(slug=slug)
    return purpose
