"""Run the web server, a Celery worker and Celery beat together; Ctrl-C stops all three."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Run web (gunicorn), a Celery worker and Celery beat; Ctrl-C stops all three."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))

    def handle(self, *args, port, host, **options):
        bin_dir = os.path.dirname(sys.executable)
        base = f"http://{'localhost' if host in ('127.0.0.1', '0.0.0.0') else host}:{port}"  # noqa: S104
        commands = {
            "web": [
                os.path.join(bin_dir, "gunicorn"),
                "compliance.asgi",
                "--config",
                "python:compliance.gunicorn_conf",
                "--bind",
                f"{host}:{port}",
            ],
            "worker": [
                os.path.join(bin_dir, "celery"),
                "-A",
                "compliance",
                "worker",
                "--loglevel",
                "INFO",
                "--concurrency",
                "2",
            ],
            "beat": [
                os.path.join(bin_dir, "celery"),
                "-A",
                "compliance",
                "beat",
                "--loglevel",
                "INFO",
                "--schedule",
                settings.CELERY_BEAT_SCHEDULE_FILENAME,
            ],
        }
        processes = {name: subprocess.Popen(cmd) for name, cmd in commands.items()}  # noqa: S603
        password = os.environ.get("DEMO_DPO_PASSWORD", "privacy-demo")
        mode = (
            "embedded (SQLite, file broker under var/)"
            if settings.EMBEDDED
            else "PostgreSQL and the configured broker"
        )
        self.stdout.write(
            self.style.SUCCESS(f"""
Privacy compliance service is running — {mode}
  Privacy portal   {base}/
  DPO admin        {base}/admin/   (demo login: dpo / {password})
  API docs         {base}/api/docs/   (schema: {base}/api/schema/; demo key in var/demo_api_key)
  Health           {base}/healthz   {base}/readyz
Press Ctrl-C to stop the web server, the worker and beat.
""")
        )
        stopping = False

        def stop(signum, frame):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            while not stopping:
                for name, process in processes.items():
                    if process.poll() is not None:
                        self.stderr.write(f"{name} exited with {process.returncode}; stopping.")
                        stopping = True
                time.sleep(0.5)
        finally:
            for process in processes.values():
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 15
            for process in processes.values():
                try:
                    process.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    process.kill()
        self.stdout.write("Stopped.")
