"""The OpenAPI schema describes the one error shape on every operation."""

from __future__ import annotations

import pytest
from drf_spectacular.generators import SchemaGenerator

ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}


@pytest.fixture(scope="module")
def schema():
    return SchemaGenerator().get_schema(request=None, public=True)


def operations(schema):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method in {"get", "post", "put", "patch", "delete"}:
                yield path, method, operation


def test_the_error_response_component_is_the_real_shape(schema):
    components = schema["components"]["schemas"]
    error_response = components["ErrorResponse"]
    assert error_response["required"] == ["error"]
    assert error_response["properties"]["error"] == {"$ref": "#/components/schemas/ErrorBody"}
    body = components["ErrorBody"]
    assert set(body["required"]) == {"code", "message", "errors"}
    assert body["properties"]["errors"]["items"] == {"$ref": "#/components/schemas/ErrorItem"}
    item = components["ErrorItem"]
    assert set(item["required"]) == {"field", "message"}


def test_every_operation_documents_the_errors_any_endpoint_can_answer(schema):
    for path, method, operation in operations(schema):
        for code in ("400", "401", "403", "404", "429"):
            response = operation["responses"].get(code)
            assert response is not None, f"{method.upper()} {path} lacks {code}"
            assert response["content"]["application/json"]["schema"] == ERROR_REF, (
                f"{method.upper()} {path} {code} is not an ErrorResponse"
            )
        assert "Retry-After" in operation["responses"]["429"]["headers"]


def test_the_views_own_errors_use_the_component_too(schema):
    subjects_create = schema["paths"]["/api/v1/subjects/"]["post"]
    assert subjects_create["responses"]["409"]["content"]["application/json"]["schema"] == (
        ERROR_REF
    )


@pytest.mark.parametrize(
    ("path", "method"),
    [
        ("/api/v1/subjects/", "post"),
        ("/api/v1/conversations/", "post"),
        ("/api/v1/webhooks/", "post"),
    ],
)
def test_creating_posts_document_the_idempotency_key_and_its_422(schema, path, method):
    operation = schema["paths"][path][method]
    headers = [p["name"] for p in operation["parameters"] if p["in"] == "header"]
    assert "Idempotency-Key" in headers
    assert operation["responses"]["422"]["content"]["application/json"]["schema"] == ERROR_REF


def test_reads_do_not_claim_a_422(schema):
    assert "422" not in schema["paths"]["/api/v1/subjects/"]["get"]["responses"]
