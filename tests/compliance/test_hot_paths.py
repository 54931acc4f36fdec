"""The hot paths' shortcuts: the cached API key authentication and the ingest's shared
pre-check must never change an answer."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from hypothesis import given, settings
from hypothesis import strategies as st

from compliance.auth import _entry_key
from compliance.mentions import extract_mentions
from compliance.minimisation import (
    may_hold_identifiers,
    minimisation_default_categories,
    minimise_text_counted,
)
from compliance.services import api_client_revoke, api_client_update, api_key_revoke

SUBJECTS = "/api/v1/subjects/"


def _cached(api) -> bool:
    return cache.get(_entry_key(api.raw_key)) is not None


# Outside a test transaction: the cache only keeps what was read from committed rows.
@pytest.mark.django_db(transaction=True)
def test_a_key_revoked_after_its_authentication_was_cached_is_refused_at_once(make_api):
    api = make_api("subjects:read")
    assert api.get(SUBJECTS).status_code == 200
    assert _cached(api)
    assert api.get(SUBJECTS).status_code == 200
    api_key_revoke(key=api.api_client.keys.get(), actor="test")
    assert api.get(SUBJECTS).status_code == 401


@pytest.mark.django_db(transaction=True)
def test_a_client_revoked_after_its_key_was_cached_is_refused_at_once(make_api):
    api = make_api("subjects:read")
    assert api.get(SUBJECTS).status_code == 200
    assert _cached(api)
    api_client_revoke(client=api.api_client, actor="test")
    assert api.get(SUBJECTS).status_code == 401


@pytest.mark.django_db(transaction=True)
def test_a_scope_taken_from_a_cached_client_is_refused_at_once(make_api):
    api = make_api("subjects:read")
    assert api.get(SUBJECTS).status_code == 200
    assert _cached(api)
    api_client_update(client=api.api_client, scopes=["consent:read"], system=None, actor="test")
    assert api.get(SUBJECTS).status_code == 403


@pytest.mark.django_db
def test_nothing_read_inside_a_transaction_is_cached(make_api):
    api = make_api("subjects:read")
    assert api.get(SUBJECTS).status_code == 200
    assert not _cached(api)


CATEGORIES = minimisation_default_categories()
# Digits of several scripts, "@", separators and the password keywords' letters, so that
# generated texts often come close to what a detector looks for.
TEXT = st.text(
    alphabet=st.sampled_from(list("0123456789@ .-+()/\n:=adeinoprstwcPWK\u0663\uff15\u0967")),
    max_size=60,
) | st.builds(
    lambda word, tail: f"my {word} is {tail}",
    st.sampled_from(["password", "PassWord", "pwd", "Kennwort", "mot de passe", "contraseña"]),
    st.text(alphabet="abcxyz!?", min_size=1, max_size=12),
)


@settings(max_examples=400, deadline=None)
@given(TEXT)
def test_the_shared_pre_check_never_skips_a_text_minimisation_or_mentions_would_change(text):
    if may_hold_identifiers(text):
        return
    assert minimise_text_counted(text=text, categories=CATEGORIES) == (text, {})
    assert extract_mentions(text) == set()


@pytest.mark.parametrize(
    "text",
    [
        "Call me on ٠٢٠٧٩٤٦٠٩٥٨ please",  # Arabic-Indic digits: a phone to the mention scan
        "write to ana@example.com",
        "my password is hunter",
        "card 4111 1111 1111 1111",
    ],
)
def test_the_shared_pre_check_lets_candidates_through(text):
    assert may_hold_identifiers(text)


def test_the_shared_pre_check_skips_plain_chat():
    assert not may_hold_identifiers("Thanks, that answers my question about the invoice.")


QUERY_VALUE = st.text(alphabet=st.sampled_from(list("ab:_-.@ \t\x00é1")), max_size=12)


@settings(max_examples=400, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["subject", "purpose", "gpc", "jurisdiction", "other"]),
        QUERY_VALUE,
        max_size=3,
    )
)
def test_the_consent_checks_plain_query_path_accepts_only_what_the_serializer_accepts(params):
    from consent.api import CheckQuerySerializer, _plain_check_query

    plain = _plain_check_query(params)
    if plain is None:
        return
    serializer = CheckQuerySerializer(data=params)
    assert serializer.is_valid(), serializer.errors
    assert dict(serializer.validated_data) == plain
