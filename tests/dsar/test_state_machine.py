"""Property: whatever services are called in whatever order, a request only ever moves along
the lifecycle's edges, every move is in the audit trail in order, and a final state is
final."""

from __future__ import annotations

import itertools

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compliance.models import AuditEvent
from compliance.services import ServiceError
from dsar import services
from dsar.models import TRANSITIONS, DataSubjectRequest, RequestStatus, SourceTask
from tests.factories import LogSourceFactory, SubjectFactory

S = RequestStatus
FINAL = {S.COMPLETED, S.REJECTED, S.CANCELLED}

ACTIONS = {
    "verify": lambda r: services.request_verify(request=r, actor="t"),
    "approve": lambda r: services.request_approve(request=r, actor="t"),
    "start": lambda r: services.request_start(request=r, actor="t"),
    "reject": lambda r: services.request_reject(request=r, actor="t", reason="No."),
    "cancel": lambda r: services.request_cancel(request=r, actor="t"),
    "extend": lambda r: services.request_extend(request=r, actor="t", reason="Busy."),
    "retry": lambda r: services.request_retry_failed(request=r, actor="t"),
    "finalize": lambda r: services.request_finalize(request_id=r.pk),
    "wrong_code": lambda r: services.verification_code_check(request=r, code="x", actor="t"),
}


def _chain(request: DataSubjectRequest) -> list[tuple[str, str]]:
    events = AuditEvent.objects.filter(
        target_id=str(request.pk), action__startswith="dsar.request."
    ).order_by("id")
    return [
        (e.detail["from"], e.detail["to"])
        for e in events
        if "from" in e.detail and "to" in e.detail
    ]


@pytest.mark.django_db
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    request_type=st.sampled_from(["access", "erasure", "restriction", "portability"]),
    channel=st.sampled_from(["portal", "phone", "api"]),
    pre_verified=st.booleans(),
    steps=st.lists(st.sampled_from(sorted(ACTIONS)), max_size=8),
)
def test_any_sequence_of_services_follows_the_lifecycle(request_type, channel, pre_verified, steps):
    with transaction.atomic():
        SubjectFactory(identities={"email": "prop@example.com"})
        source = LogSourceFactory()
        dsr = services.request_create(
            type=request_type,
            identity={"email": "prop@example.com"},
            channel=channel,
            actor="t",
            pre_verified=pre_verified,
        )
        seen_final = None
        for step in steps:
            dsr = DataSubjectRequest.objects.get(pk=dsr.pk)
            before = dsr.status
            try:
                with transaction.atomic():
                    ACTIONS[step](dsr)
            except ServiceError:
                pass
            dsr = DataSubjectRequest.objects.get(pk=dsr.pk)
            if before in FINAL:
                assert dsr.status == before, f"{step} moved a final request"
            if dsr.status in FINAL and seen_final is None:
                seen_final = dsr.status
            # Sources finished by hand so that "finalize" can complete the request.
            SourceTask.objects.filter(request=dsr, status="pending").update(status="done")

        chain = _chain(dsr)
        assert chain, "the receipt's first transition is recorded"
        assert chain[0][0] == S.RECEIVED
        for (_, previous_to), (current_from, _) in itertools.pairwise(chain):
            assert current_from == previous_to, chain
        for origin, target in chain:
            assert target in TRANSITIONS[origin], (origin, target)
        assert chain[-1][1] == dsr.status
        assert SourceTask.objects.filter(request=dsr, source=source).count() <= 1
        transaction.set_rollback(True)
