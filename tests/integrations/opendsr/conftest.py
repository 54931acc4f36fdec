"""Fixtures of the OpenDSR tests: a controller (an API client allowed to file verified
requests), request bodies built exactly as the specification's examples, and a reader of
the processor certificate published at the discovery URL."""

from __future__ import annotations

import copy
import json
import uuid
from urllib.parse import urlsplit

import pytest

from tests.factories import LogSourceFactory

CONTROLLER_SCOPES = ("dsar:write", "dsar:verified", "dsar:read")

# Section 7.2 of the OpenDSR specification, with the v2 "regulation" field, as it is sent.
SPEC_EXAMPLE = {
    "regulation": "gdpr",
    "subject_request_id": "a7551968-d5d6-44b2-9831-815ac9017798",
    "subject_request_type": "erasure",
    "submitted_time": "2018-10-02T15:00:00Z",
    "subject_identities": [
        {
            "identity_type": "email",
            "identity_value": "johndoe@example.com",
            "identity_format": "raw",
        }
    ],
    "api_version": "2.0",
    "status_callback_urls": ["https://examplecontroller.com/opendsr/callbacks"],
    "extensions": {
        "example-processor.com": {"foo-processor-custom-id": 123456, "property_id": "123456"},
        "example-other-processor.com": {"foo-other-processor-custom-id": 654321},
    },
}


def spec_request(**changes) -> dict:
    """The specification's example with a fresh subject_request_id, changed as asked."""
    body = copy.deepcopy(SPEC_EXAMPLE)
    body["subject_request_id"] = str(uuid.uuid4())
    body.update(changes)
    return body


def raw_json(body: dict) -> bytes:
    return json.dumps(body, indent=2).encode()


@pytest.fixture
def controller(make_api):
    return make_api(*CONTROLLER_SCOPES)


@pytest.fixture
def builtin_source(db):
    return LogSourceFactory(name="Shop store")


def post_request(api, body: dict, *, path: str = "/opendsr/v2/requests"):
    return api.generic("POST", path, raw_json(body), content_type="application/json")


def published_certificate(api, *, discovery: str = "/opendsr/v2/discovery") -> bytes:
    """What a controller does (OpenDSR 8.8): read /discovery, fetch the certificate it names."""
    url = api.get(discovery).json()["processor_certificate"]
    response = api.get(urlsplit(url).path)
    assert response.status_code == 200
    return response.content
