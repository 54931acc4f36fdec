"""Legal deadlines: GDPR Art. 12(3) and CCPA §7021, §7026."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dsar.deadlines import (
    add_business_days,
    add_months,
    can_extend,
    confirmation_due_at_for,
    due_at_for,
    extended_due_at,
)


def at(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_one_month_from_the_31st_of_january_is_the_last_day_of_february():
    assert add_months(at(2026, 1, 31, 12), 1) == at(2026, 2, 28, 12)
    assert add_months(at(2028, 1, 31, 12), 1) == at(2028, 2, 29, 12)


def test_one_month_crosses_the_year():
    assert add_months(at(2026, 12, 15), 1) == at(2027, 1, 15)


def test_a_gdpr_request_is_due_one_month_after_receipt_and_three_when_extended():
    received = at(2026, 3, 10, 9, 30)
    due = due_at_for(regulation="gdpr", request_type="access", received_at=received)
    assert due == at(2026, 4, 10, 9, 30)
    assert extended_due_at(regulation="gdpr", due_at=due) == at(2026, 6, 10, 9, 30)


def test_a_ccpa_request_is_due_in_45_days_and_45_more_when_extended():
    received = at(2026, 3, 10)
    due = due_at_for(regulation="ccpa", request_type="erasure", received_at=received)
    assert due == received + timedelta(days=45)
    assert extended_due_at(regulation="ccpa", due_at=due) == received + timedelta(days=90)


def test_ccpa_receipt_is_confirmed_within_ten_business_days():
    # Friday 6 March 2026 + 10 business days = Friday 20 March.
    assert confirmation_due_at_for(regulation="ccpa", received_at=at(2026, 3, 6)) == at(2026, 3, 20)
    assert confirmation_due_at_for(regulation="gdpr", received_at=at(2026, 3, 6)) is None


def test_a_ccpa_opt_out_is_due_within_15_business_days_and_cannot_be_extended():
    # Monday 2 March 2026 + 15 business days = Monday 23 March.
    due = due_at_for(regulation="ccpa", request_type="opt_out_sale", received_at=at(2026, 3, 2))
    assert due == at(2026, 3, 23)
    assert not can_extend(regulation="ccpa", request_type="opt_out_sale")
    assert can_extend(regulation="gdpr", request_type="opt_out_sale")


def test_business_days_skip_weekends():
    # Saturday + 1 business day = Monday.
    assert add_business_days(at(2026, 3, 7), 1) == at(2026, 3, 9)


moments = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2090, 12, 31), timezones=st.just(UTC)
)


@given(moments, st.integers(min_value=0, max_value=36))
def test_adding_months_never_fails_and_keeps_the_time_of_day(moment, months):
    result = add_months(moment, months)
    assert result.time() == moment.time()
    assert result >= moment
    assert (result.year * 12 + result.month) - (moment.year * 12 + moment.month) == months
    assert result.day <= moment.day


@given(moments, st.sampled_from(["gdpr", "ccpa"]), st.sampled_from(["access", "opt_out_sale"]))
def test_every_deadline_is_after_receipt_and_an_extension_only_moves_it_later(
    moment, regulation, request_type
):
    due = due_at_for(regulation=regulation, request_type=request_type, received_at=moment)
    assert due > moment
    assert extended_due_at(regulation=regulation, due_at=due) > due


@given(moments, st.integers(min_value=1, max_value=40))
def test_business_days_land_on_a_weekday(moment, days):
    result = add_business_days(moment, days)
    assert result.weekday() < 5
    assert result - moment >= timedelta(days=days)


@pytest.mark.parametrize("regulation", ["gdpr", "ccpa"])
def test_a_deadline_is_never_shorter_than_the_law_allows(regulation):
    received = at(2026, 1, 31)
    due = due_at_for(regulation=regulation, request_type="access", received_at=received)
    assert due - received >= timedelta(days=28)
