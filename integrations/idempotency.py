"""``Idempotency-Key`` for API POSTs that create something.

Decorate the view's ``post`` method with ``@idempotent``. A request without the header runs
as before. With it:

* the first request runs, and its 2xx answer is stored for ``IDEMPOTENCY_TTL_HOURS``
  under (API client, key) with a fingerprint of method, path and body;
* a retry with the same key and the same request gets the stored answer back (with
  ``Idempotent-Replayed: true``) and creates nothing;
* the same key with another request is refused with 422;
* a non-2xx answer is not stored, so the client may correct the request and retry;
* two identical requests at the same moment: the second waits until the first has
  finished and then gets its answer. This holds because the record is inserted in the same
  transaction as the creation: the second insert blocks on the unique (client, key) index
  until the first transaction ends, then fails and reads the committed answer. The creation
  and its record commit together, so a crash can never leave one without the other.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from compliance.api.errors import error_body
from compliance.models import ApiClient
from integrations.models import IdempotencyRecord

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
# Printable ASCII without spaces: UUIDs, ULIDs and the like. Keys are not secrets, but they
# are stored and compared, so they must not carry personal data.
KEY_PATTERN = re.compile(r"[\x21-\x7e]{1,255}")

IDEMPOTENCY_PARAMETER = OpenApiParameter(
    HEADER,
    OpenApiTypes.STR,
    location=OpenApiParameter.HEADER,
    required=False,
    description=(
        "A unique key per logical request (a UUID is best), 1 to 255 printable ASCII "
        "characters. A retry with the same key and body within 24 hours returns the first "
        "answer and creates nothing; the same key with a different body is refused with 422."
    ),
    pattern=r"^[\x21-\x7e]{1,255}$",
)


def _fingerprint(request) -> str:
    canonical = json.dumps(
        {"method": request.method, "path": request.get_full_path(), "body": request.data},
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _invalid_key() -> Response:
    message = f"{HEADER} must be 1 to 255 printable ASCII characters without spaces."
    return Response(
        error_body("invalid_request", message, [{"field": HEADER, "message": message}]),
        status=400,
    )


def _replay(record: IdempotencyRecord, fingerprint: str) -> Response:
    if record.fingerprint != fingerprint:
        message = (
            f"This {HEADER} was already used with a different request; use a new key "
            "for a new request."
        )
        return Response(
            error_body("unprocessable", message, [{"field": HEADER, "message": message}]),
            status=422,
        )
    return Response(
        record.response_body,
        status=record.response_status,
        headers={REPLAYED_HEADER: "true"},
    )


def idempotent(handler):
    """Make an APIView ``post`` honour the ``Idempotency-Key`` header (see module doc)."""

    @functools.wraps(handler)
    def wrapper(view, request, *args, **kwargs):
        key = request.headers.get(HEADER)
        client = request.user
        if key is None or not isinstance(client, ApiClient):
            return handler(view, request, *args, **kwargs)
        if not KEY_PATTERN.fullmatch(key):
            return _invalid_key()
        fingerprint = _fingerprint(request)  # parses the body: bad JSON is a 400 first
        now = timezone.now()
        with transaction.atomic():
            IdempotencyRecord.objects.filter(client=client, key=key, expires_at__lte=now).delete()
            try:
                with transaction.atomic():
                    # Blocks while a concurrent transaction holds the same (client, key).
                    record = IdempotencyRecord.objects.create(
                        client=client,
                        key=key,
                        fingerprint=fingerprint,
                        method=request.method,
                        path=request.path[:500],
                        response_status=0,
                        expires_at=now + timedelta(hours=settings.IDEMPOTENCY_TTL_HOURS),
                    )
            except IntegrityError:
                stored = IdempotencyRecord.objects.filter(client=client, key=key).first()
                if stored is not None:
                    return _replay(stored, fingerprint)
                # Purged between the insert and this read: ask the client to retry.
                message = "A request with this key was just finishing; retry."
                return Response(error_body("conflict", message), status=409)
            response = handler(view, request, *args, **kwargs)
            if 200 <= response.status_code < 300:
                record.response_status = response.status_code
                record.response_body = (
                    json.loads(JSONRenderer().render(response.data))
                    if response.data is not None
                    else None
                )
                record.save(update_fields=["response_status", "response_body"])
            else:
                record.delete()
            return response

    return extend_schema(parameters=[IDEMPOTENCY_PARAMETER])(wrapper)
