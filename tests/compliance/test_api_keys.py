"""API keys: scopes, revocation, hashing, the CLI, and views that forget to declare scopes."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone
from rest_framework.response import Response
from rest_framework.test import APIClient, APIRequestFactory
from rest_framework.views import APIView

from compliance.auth import HasScopes
from compliance.models import ApiClient, ApiKey, AuditEvent
from compliance.services import (
    ServiceError,
    api_client_create,
    api_client_revoke,
    api_key_issue,
    api_key_revoke,
)
from tests.factories import SystemFactory

pytestmark = pytest.mark.django_db

SUBJECTS = "/api/v1/subjects/"


def bearer(raw: str) -> APIClient:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return api


def assert_refused(response, status: int) -> dict:
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert set(error) == {"code", "message", "errors"}
    return error


def test_a_key_with_the_scope_is_accepted(make_api):
    assert make_api("subjects:read").get(SUBJECTS).status_code == 200


def test_a_key_without_the_right_scope_is_refused(make_api):
    error = assert_refused(make_api("logs:write", "consent:read").get(SUBJECTS), 403)
    assert error["code"] == "permission_denied"
    assert "subjects:read" in error["message"]


def test_a_key_with_no_scopes_at_all_is_refused(make_api):
    assert_refused(make_api().get(SUBJECTS), 403)


def test_a_revoked_key_is_refused(make_api):
    api = make_api("subjects:read")
    api_key_revoke(key=api.api_client.keys.get(), actor="test")
    error = assert_refused(api.get(SUBJECTS), 401)
    assert error["code"] == "not_authenticated"


def test_revoking_one_key_leaves_the_clients_other_keys_working(make_api):
    api = make_api("subjects:read")
    first = api.api_client.keys.get()
    _, second_raw = api_key_issue(client=api.api_client, actor="test")
    api_key_revoke(key=first, actor="test")
    assert_refused(api.get(SUBJECTS), 401)
    assert bearer(second_raw).get(SUBJECTS).status_code == 200


def test_a_revoked_clients_keys_are_refused(make_api):
    api = make_api("subjects:read")
    api_client_revoke(client=api.api_client, actor="test")
    assert_refused(api.get(SUBJECTS), 401)


def test_a_revoked_client_whose_key_row_was_left_live_is_still_refused(make_api):
    api = make_api("subjects:read")
    ApiClient.objects.filter(pk=api.api_client.pk).update(revoked_at=timezone.now())
    assert api.api_client.keys.get().revoked_at is None
    assert_refused(api.get(SUBJECTS), 401)


def test_a_revoked_client_gets_no_new_key(make_api):
    api = make_api("subjects:read")
    api_client_revoke(client=api.api_client, actor="test")
    with pytest.raises(ServiceError):
        api_key_issue(client=api.api_client, actor="test")


@pytest.mark.parametrize(
    "header",
    [
        "Bearer pcs_not-a-key-anyone-issued",
        "Bearer ",
        "Token pcs_something",
        "Basic dXNlcjpwYXNz",
        "Bearer \u00e9t\u00e9",
        "pcs_just-the-key",
    ],
)
def test_an_unknown_or_malformed_key_is_refused(make_api, header):
    make_api("subjects:read")  # a live key exists, but not this one
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=header)
    error = assert_refused(api.get(SUBJECTS), 401)
    assert "pcs_" not in error["message"]


def test_a_key_is_stored_only_as_a_digest(make_api):
    api = make_api("subjects:read")
    key = api.api_client.keys.get()
    assert api.raw_key not in (key.digest, key.prefix)
    assert api.raw_key.startswith(key.prefix)
    with connection.cursor() as cursor:
        tables = connection.introspection.table_names(cursor)
        for table in tables:
            quoted = connection.ops.quote_name(table)
            cursor.execute(
                f"SELECT count(*) FROM {quoted} AS t WHERE t::text LIKE %s",
                [f"%{api.raw_key[len(key.prefix) :]}%"],
            )
            assert cursor.fetchone()[0] == 0, f"the raw key is stored in {table}"


def test_each_issued_key_is_different_and_audited(make_api):
    api = make_api("subjects:read")
    _, second = api_key_issue(client=api.api_client, actor="dpo")
    assert second != api.raw_key
    event = AuditEvent.objects.filter(action="api_key.issued").latest("id")
    assert event.actor == "dpo"
    assert second not in str(event.detail)


def test_using_a_key_records_when_it_was_last_used(make_api):
    api = make_api("subjects:read")
    assert api.api_client.keys.get().last_used_at is None
    api.get(SUBJECTS)
    assert api.api_client.keys.get().last_used_at is not None


def test_unknown_scopes_are_refused_when_creating_a_client():
    with pytest.raises(ServiceError) as info:
        api_client_create(name="crm", scopes=["subjects:read", "root"], actor="test")
    assert info.value.field == "scopes"
    assert not ApiClient.objects.filter(name="crm").exists()


# --- manage.py create_api_key --------------------------------------------------------------


def test_create_api_key_prints_a_key_that_works():
    out = io.StringIO()
    call_command("create_api_key", "crm", "--scope", "subjects:read", stdout=out)
    raw = out.getvalue().strip()
    assert raw.startswith("pcs_")
    assert bearer(raw).get(SUBJECTS).status_code == 200
    assert bearer(raw).post(SUBJECTS, {}, format="json").status_code == 403


def test_create_api_key_binds_the_client_to_a_system():
    SystemFactory(slug="shop-assistant")
    out = io.StringIO()
    call_command(
        "create_api_key", "shop", "--scope", "logs:write", "--system", "shop-assistant", stdout=out
    )
    client = ApiClient.objects.get(name="shop")
    assert client.system.slug == "shop-assistant"
    assert ApiKey.objects.filter(client=client).count() == 1


def test_create_api_key_issues_another_key_for_an_existing_client():
    call_command("create_api_key", "crm", "--scope", "subjects:read", stdout=io.StringIO())
    out = io.StringIO()
    call_command("create_api_key", "crm", stdout=out)
    assert ApiKey.objects.filter(client__name="crm").count() == 2
    assert bearer(out.getvalue().strip()).get(SUBJECTS).status_code == 200


@pytest.mark.parametrize(
    "args",
    [
        ["new-client"],  # no scope
        ["new-client", "--scope", "everything"],
        ["new-client", "--scope", "logs:write", "--system", "no-such-system"],
    ],
)
def test_create_api_key_refuses_bad_arguments_without_creating_anything(args):
    with pytest.raises(CommandError):
        call_command("create_api_key", *args, stdout=io.StringIO())
    assert not ApiClient.objects.exists()
    assert not ApiKey.objects.exists()


def test_create_api_key_refuses_other_scopes_for_an_existing_client():
    call_command("create_api_key", "crm", "--scope", "subjects:read", stdout=io.StringIO())
    with pytest.raises(CommandError):
        call_command("create_api_key", "crm", "--scope", "dsar:write", stdout=io.StringIO())
    assert ApiClient.objects.get(name="crm").scopes == ["subjects:read"]


def test_create_api_key_refuses_a_revoked_client():
    call_command("create_api_key", "crm", "--scope", "subjects:read", stdout=io.StringIO())
    api_client_revoke(client=ApiClient.objects.get(name="crm"), actor="test")
    with pytest.raises(CommandError):
        call_command("create_api_key", "crm", stdout=io.StringIO())


# --- views that forget to declare their scopes fail closed ----------------------------------


class UndeclaredView(APIView):
    def get(self, request):
        return Response({"ok": True})


class EmptyByMethodView(APIView):
    scopes_by_method = {"POST": ["subjects:write"]}

    def get(self, request):
        return Response({"ok": True})

    def post(self, request):
        return Response({"ok": True})


class OpenToAnyKeyView(APIView):
    required_scopes: list[str] = []

    def get(self, request):
        return Response({"ok": True})


def _call(view, method: str, raw: str):
    factory = APIRequestFactory()
    request = getattr(factory, method)("/api/v1/x/", HTTP_AUTHORIZATION=f"Bearer {raw}")
    return view.as_view()(request)


def test_a_view_without_a_scope_declaration_refuses_even_a_key_with_every_scope(make_api):
    from compliance.services import KNOWN_SCOPES

    api = make_api(*KNOWN_SCOPES)
    assert _call(UndeclaredView, "get", api.raw_key).status_code == 403


def test_a_method_missing_from_scopes_by_method_is_refused(make_api):
    api = make_api("subjects:read", "subjects:write")
    assert _call(EmptyByMethodView, "get", api.raw_key).status_code == 403
    assert _call(EmptyByMethodView, "post", api.raw_key).status_code == 200


def test_an_explicitly_empty_scope_list_still_needs_a_live_key(make_api):
    api = make_api()
    assert _call(OpenToAnyKeyView, "get", api.raw_key).status_code == 200
    assert _call(OpenToAnyKeyView, "get", "pcs_unknown").status_code == 401


def test_every_api_view_declares_its_scopes():
    from django.urls import get_resolver

    def walk(patterns, prefix=""):
        for pattern in patterns:
            if hasattr(pattern, "url_patterns"):
                yield from walk(pattern.url_patterns, prefix + str(pattern.pattern))
            else:
                yield prefix + str(pattern.pattern), pattern.callback

    checked = 0
    for route, callback in walk(get_resolver().url_patterns):
        view_class = getattr(callback, "view_class", None) or getattr(callback, "cls", None)
        if not route.startswith("api/v") or view_class is None:
            continue
        if HasScopes not in getattr(view_class, "permission_classes", ()):
            continue  # a deliberately public endpoint (it names its own permissions)
        declared = getattr(view_class, "required_scopes", None) is not None or (
            getattr(view_class, "scopes_by_method", None) is not None
        )
        assert declared, f"{route} declares no scopes"
        checked += 1
    assert checked >= 4
