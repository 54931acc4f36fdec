"""The Celery application. Periodic tasks are declared in one place: settings'
CELERY_BEAT_SCHEDULE, each with a comment saying when and why."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "compliance.settings")

app = Celery("compliance")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
