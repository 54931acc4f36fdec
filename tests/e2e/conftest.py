"""Browser fixtures: Playwright for Python driving Debian's Chromium (never a browser that
Playwright downloads) against pytest-django's live server.

Screenshots of every page a test visits go to ``var/screenshots/`` (ignored by git), named
after the test and the step, so anyone can look at what customers see.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from tests.dsar.fixtures import workers  # noqa: F401 - a real Celery worker for the requests

# Playwright's sync API runs an event loop in this thread; Django would otherwise refuse
# the database calls the tests make between browser steps.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(django_settings.BASE_DIR) / "var" / "screenshots"


def _require_chromium() -> None:
    if shutil.which(CHROMIUM) is None or not os.access(CHROMIUM, os.X_OK):
        message = (
            f"{CHROMIUM} is missing: install Debian's Chromium with "
            "`apt-get update && apt-get install -y chromium` (.ci/run does this)."
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="session")
def browser():
    _require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield instance
        instance.close()


@pytest.fixture(autouse=True)
def builtin_purposes(transactional_db):
    """Browser tests use the live server, so every one is transactional."""
    from tests.portal.conftest import ensure_builtin_purposes

    ensure_builtin_purposes()


@pytest.fixture(autouse=True)
def e2e_settings(settings):
    """Each test's own cache prefix on the shared Redis, and no sign-in padding."""
    caches = {alias: dict(config) for alias, config in django_settings.CACHES.items()}
    caches["default"]["KEY_PREFIX"] = f"e2e-test-{uuid.uuid4().hex}"
    settings.CACHES = caches
    settings.PORTAL_SIGN_IN_MIN_SECONDS = 0


class Screens:
    def __init__(self, test_name: str):
        self.prefix = re.sub(r"[^A-Za-z0-9_-]+", "-", test_name).strip("-")
        self.count = 0
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def shoot(self, page, step: str) -> Path:
        self.count += 1
        path = SCREENSHOTS / f"{self.prefix}-{self.count:02d}-{step}.png"
        page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def screens(request) -> Screens:
    return Screens(request.node.name)


def _new_page(browser, live_server, **context_options):
    context = browser.new_context(base_url=live_server.url, **context_options)
    context.set_default_timeout(10_000)
    page = context.new_page()
    # Any Content-Security-Policy violation or script error fails the test.
    page.problems = []
    page.on(
        "console",
        lambda msg: (
            page.problems.append(msg.text)
            if msg.type == "error" or "Content Security Policy" in msg.text
            else None
        ),
    )
    page.on("pageerror", lambda exc: page.problems.append(str(exc)))
    page.on(
        "response",
        lambda response: (
            page.problems.append(f"{response.status} {response.url}")
            if response.status >= 400 and response.request.resource_type != "document"
            else None
        ),
    )
    return context, page


@pytest.fixture
def page(browser, live_server):
    context, page = _new_page(browser, live_server)
    yield page
    context.close()


@pytest.fixture
def page_without_js(browser, live_server):
    context, page = _new_page(browser, live_server, java_script_enabled=False)
    yield page
    context.close()
