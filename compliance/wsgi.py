import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "compliance.settings")
application = get_wsgi_application()

# GET /api/v1/consent/check, the hot path, is answered before Django's handler when it can;
# every other request goes to Django (consent/hotpath.py).
from consent.hotpath import ConsentCheckShortcut  # noqa: E402 - needs the apps loaded

application = ConsentCheckShortcut(application)
