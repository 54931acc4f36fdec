"""Any sequence of consent events leaves the state the last relevant event says, and the
check answers from it (hypothesis). Also the defaults per jurisdiction and lawful basis."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compliance.models import Jurisdiction
from consent import services
from consent.models import (
    SALE_SHARING,
    STATUS_AFTER,
    ConsentAction,
    ConsentEvent,
    ConsentSource,
    ConsentState,
    LawfulBasis,
)
from consent.selectors import consent_check, default_allowed
from tests.factories import SubjectFactory

pytestmark = pytest.mark.django_db

_ids = itertools.count()

EVENTS = st.lists(
    st.tuples(
        st.sampled_from(ConsentAction.values),
        st.sampled_from([s for s in ConsentSource.values if s != ConsentSource.GPC]),
    ),
    min_size=0,
    max_size=8,
)
REASON_OF_STATUS = {
    "withdrawn": "withdrawn",
    "objected": "objected",
    "opted_out": "opted_out",
    "granted": "explicit_grant",
}

HYPOTHESIS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@HYPOTHESIS
@given(
    events=EVENTS,
    jurisdiction=st.sampled_from(Jurisdiction.values),
    slug=st.sampled_from(["marketing", "analytics", "third-party-sharing"]),
)
def test_the_state_and_the_check_follow_the_last_event(
    purposes, django_capture_on_commit_callbacks, events, jurisdiction, slug
):
    purpose = purposes[slug]
    customer_id = f"H-{next(_ids)}"
    subject = SubjectFactory(external_id=customer_id, jurisdiction=jurisdiction)
    recorded = []
    for action, source in events:
        with django_capture_on_commit_callbacks(execute=True):
            recorded.append(
                services.consent_record(
                    subject=subject, purpose=purpose, action=action, source=source, actor="test"
                )
            )
        # Check between events too: a cached answer must follow every change.
        consent_check(subject=f"customer_id:{customer_id}", purpose=slug)

    answer = consent_check(subject=f"customer_id:{customer_id}", purpose=slug).result
    assert ConsentEvent.objects.filter(subject=subject).count() == len(events)
    if not recorded:
        assert not ConsentState.objects.filter(subject=subject).exists()
        assert answer.reason == "default"
        assert answer.allowed is default_allowed(
            lawful_basis=purpose.lawful_basis, jurisdiction=jurisdiction
        )
        return
    last = recorded[-1]
    status = STATUS_AFTER[ConsentAction(last.action)]
    state = ConsentState.objects.get(subject=subject, purpose=purpose)
    assert (state.status, state.source, state.last_event_id) == (status, last.source, last.pk)
    # `since` is when the current status began: the first event of the final run.
    run_start = last
    for event in reversed(recorded):
        if STATUS_AFTER[ConsentAction(event.action)] != status:
            break
        run_start = event
    assert state.since == run_start.occurred_at
    assert answer.allowed is (status == "granted")
    assert answer.reason == REASON_OF_STATUS[status]
    assert answer.state_since == state.since


@HYPOTHESIS
@given(sale_events=EVENTS, purpose_events=EVENTS, rnd=st.randoms(use_true_random=False))
def test_an_opt_out_of_sale_wins_over_any_grant_of_a_sharing_purpose(
    purposes, django_capture_on_commit_callbacks, sale_events, purpose_events, rnd
):
    customer_id = f"S-{next(_ids)}"
    subject = SubjectFactory(external_id=customer_id, jurisdiction=Jurisdiction.US_CA)
    sharing = purposes["third-party-sharing"]
    # Interleave the two histories at random, each keeping its own order.
    queues = [
        [(purposes[SALE_SHARING], a, s) for a, s in sale_events],
        [(sharing, a, s) for a, s in purpose_events],
    ]
    interleaved = []
    while any(queues):
        interleaved.append(rnd.choice([q for q in queues if q]).pop(0))
    with django_capture_on_commit_callbacks(execute=True):
        for purpose, action, source in interleaved:
            services.consent_record(
                subject=subject, purpose=purpose, action=action, source=source, actor="test"
            )
    answer = consent_check(subject=f"customer_id:{customer_id}", purpose=sharing.slug).result
    sale_refused = bool(sale_events) and sale_events[-1][0] not in ("grant", "opt_in")
    own_refused = bool(purpose_events) and purpose_events[-1][0] not in ("grant", "opt_in")
    assert answer.allowed is not (sale_refused or own_refused)


@pytest.mark.parametrize(
    ("jurisdiction", "basis", "allowed"),
    [
        (Jurisdiction.EU, LawfulBasis.CONSENT, False),
        (Jurisdiction.UK, LawfulBasis.CONSENT, False),
        (Jurisdiction.US_CA, LawfulBasis.CONSENT, True),
        (Jurisdiction.OTHER, LawfulBasis.CONSENT, True),
        (Jurisdiction.EU, LawfulBasis.LEGITIMATE_INTEREST, True),
        (Jurisdiction.EU, LawfulBasis.CONTRACT, True),
        (Jurisdiction.EU, LawfulBasis.LEGAL_OBLIGATION, True),
        (Jurisdiction.US_CA, LawfulBasis.LEGITIMATE_INTEREST, True),
    ],
)
def test_the_default_depends_on_jurisdiction_and_lawful_basis(
    purposes, reader, jurisdiction, basis, allowed
):
    slug = {
        LawfulBasis.CONSENT: "marketing",
        LawfulBasis.LEGITIMATE_INTEREST: "analytics",
        LawfulBasis.CONTRACT: "order-handling",
        LawfulBasis.LEGAL_OBLIGATION: "fraud-checks",
    }[basis]
    customer_id = f"D-{next(_ids)}"
    SubjectFactory(external_id=customer_id, jurisdiction=jurisdiction)
    response = reader.get(
        "/api/v1/consent/check", {"subject": f"customer_id:{customer_id}", "purpose": slug}
    )
    assert response.json() == {"allowed": allowed, "reason": "default", "state_since": None}
    unknown = reader.get(
        "/api/v1/consent/check",
        {"subject": "customer_id:nobody", "purpose": slug, "jurisdiction": jurisdiction},
    )
    assert unknown.json() == {
        "allowed": allowed,
        "reason": "unknown_subject_default",
        "state_since": None,
    }


def test_unknown_subjects_follow_the_configured_jurisdiction(purposes, reader, settings):
    url = "/api/v1/consent/check"
    query = {"subject": "customer_id:nobody", "purpose": "marketing"}
    settings.CONSENT_UNKNOWN_SUBJECT_JURISDICTION = "EU"
    assert reader.get(url, query).json()["allowed"] is False
    settings.CONSENT_UNKNOWN_SUBJECT_JURISDICTION = "OTHER"
    assert reader.get(url, query).json()["allowed"] is True
