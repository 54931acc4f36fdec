"""Every /api/v1 operation is documented with examples, and the examples are the real shapes.

A response example is validated against its response schema (unknown keys refused, as a
typo in a field name is exactly the mistake an example drifts into), so the examples cannot
silently disagree with the serializers that produce the answers.
"""

from __future__ import annotations

import json

import pytest
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer

jsonschema = pytest.importorskip("jsonschema")
referencing = pytest.importorskip("referencing")

from referencing.jsonschema import DRAFT202012  # noqa: E402

DOCUMENT_URI = "urn:openapi"
METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture(scope="module")
def schema():
    generated = SchemaGenerator().get_schema(request=None, public=True)
    # Through the renderer, so lazy strings and the like become the JSON a client reads.
    return json.loads(OpenApiJsonRenderer().render(generated, renderer_context={}))


def v1_operations(schema):
    for path, item in schema["paths"].items():
        if not path.startswith("/api/v1/"):
            continue
        for method, operation in item.items():
            if method in METHODS:
                yield f"{method.upper()} {path}", operation


def json_responses(operation):
    """The 2xx answers with a JSON body (a ZIP download or a bodiless 202/204 has none)."""
    for code, response in operation["responses"].items():
        if code.startswith("2"):
            content = response.get("content", {}).get("application/json")
            if content is not None:
                yield code, content


def to_json_schema(node):
    """OpenAPI 3.0 schema -> JSON Schema 2020-12: `nullable` becomes a null alternative,
    refs point into the registered document, and objects refuse unknown keys."""
    if isinstance(node, list):
        return [to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {}
    for key, value in node.items():
        if key == "$ref" and isinstance(value, str) and value.startswith("#/"):
            converted[key] = DOCUMENT_URI + value
        elif key in {"example", "examples"}:
            continue  # examples are data, not schema
        else:
            converted[key] = to_json_schema(value)
    if "properties" in converted and "additionalProperties" not in converted:
        converted["additionalProperties"] = False
    if converted.pop("nullable", False):
        converted = {"anyOf": [converted, {"type": "null"}]}
    return converted


@pytest.fixture(scope="module")
def validator_for(schema):
    document = {"components": to_json_schema(schema["components"])}
    registry = referencing.Registry().with_resource(
        DOCUMENT_URI, DRAFT202012.create_resource(document)
    )

    def build(openapi_schema):
        return jsonschema.Draft202012Validator(
            to_json_schema(openapi_schema),
            registry=registry,
            format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
        )

    return build


def test_there_are_v1_operations_to_check(schema):
    assert sum(1 for _ in v1_operations(schema)) >= 25


def test_every_operation_with_a_json_body_has_a_request_example(schema):
    missing = [
        name
        for name, operation in v1_operations(schema)
        if "application/json" in operation.get("requestBody", {}).get("content", {})
        and not operation["requestBody"]["content"]["application/json"].get("examples")
    ]
    assert missing == []


def test_every_operation_has_an_example_of_its_json_answer(schema):
    missing = []
    for name, operation in v1_operations(schema):
        responses = list(json_responses(operation))
        if not responses:
            continue  # a file download or an answer without a body
        if not any(content.get("examples") for _, content in responses):
            missing.append(name)
    assert missing == []


def test_every_operation_that_answers_json_is_checked(schema):
    # The three operations without a JSON 2xx answer are exactly the ones known to have none,
    # so a new JSON endpoint cannot escape the check above by being miscounted.
    without = sorted(name for name, op in v1_operations(schema) if not list(json_responses(op)))
    assert without == [
        "DELETE /api/v1/webhooks/{webhook_id}/",
        "GET /api/v1/requests/{request_id}/download/",
        "POST /api/v1/requests/{request_id}/verification-code/",
    ]


def test_every_response_example_matches_its_response_schema(schema, validator_for):
    failures = []
    checked = 0
    for name, operation in v1_operations(schema):
        for code, content in json_responses(operation):
            validator = validator_for(content["schema"])
            for example_name, example in (content.get("examples") or {}).items():
                checked += 1
                for error in validator.iter_errors(example["value"]):
                    where = "/".join(str(p) for p in error.absolute_path)
                    failures.append(f"{name} {code} {example_name} at {where}: {error.message}")
    assert failures == []
    assert checked >= 24


def test_every_request_example_matches_its_request_schema(schema, validator_for):
    failures = []
    for name, operation in v1_operations(schema):
        content = operation.get("requestBody", {}).get("content", {}).get("application/json")
        if content is None:
            continue
        validator = validator_for(content["schema"])
        for example_name, example in (content.get("examples") or {}).items():
            for error in validator.iter_errors(example["value"]):
                where = "/".join(str(p) for p in error.absolute_path)
                failures.append(f"{name} {example_name} at {where}: {error.message}")
    assert failures == []


def test_the_validation_refuses_a_misnamed_or_mistyped_field(schema, validator_for):
    validator = validator_for({"$ref": "#/components/schemas/SubjectOut"})
    subject = {
        "id": "3f2b8c1e-6d4a-4b7e-9c1f-2a5e8d0b7c31",
        "external_id": None,
        "display_name": "",
        "jurisdiction": "EU",
        "identities": [],
        "created_at": "2026-11-02T10:21:43Z",
    }
    assert list(validator.iter_errors(subject)) == []
    assert list(validator.iter_errors({**subject, "externalId": "C-1"}))
    assert list(validator.iter_errors({**subject, "jurisdiction": "Mars"}))
    assert list(validator.iter_errors({**subject, "identities": "email:ana@example.com"}))
    without_id = {k: v for k, v in subject.items() if k != "id"}
    assert list(validator.iter_errors(without_id))
