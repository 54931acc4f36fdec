"""Legal deadlines of data subject requests. Pure functions of the receipt time, so they are
easy to test and the same everywhere.

- GDPR Art. 12(3): one month from receipt; extendable once by two further months, if the
  subject is told within the first month, with reasons.
- CCPA §7021: 45 calendar days; extendable once by 45 more with notice and reasons; receipt
  confirmed within 10 business days.
- CCPA §7026/§7027: opt-out of sale/sharing and limit-use requests are complied with within
  15 business days.

Business days are Monday to Friday; public holidays are not counted out (which only makes
the deadline earlier, never later).
"""

from __future__ import annotations

import calendar
from datetime import datetime, timedelta

from dsar.models import Regulation, RequestType

CCPA_RESPONSE_DAYS = 45
CCPA_EXTENSION_DAYS = 45
CCPA_CONFIRMATION_BUSINESS_DAYS = 10
CCPA_OPT_OUT_BUSINESS_DAYS = 15
GDPR_RESPONSE_MONTHS = 1
GDPR_EXTENSION_MONTHS = 2

CCPA_OPT_OUT_TYPES = frozenset({RequestType.OPT_OUT_SALE, RequestType.LIMIT_SENSITIVE})


def add_months(moment: datetime, months: int) -> datetime:
    """The same day ``months`` later; the last day of the month when that day does not exist
    (31 January + 1 month = 28/29 February), which is how "one month" is read in the EU
    (Regulation 1182/71 Art. 3(2)(c))."""
    month_index = moment.month - 1 + months
    year = moment.year + month_index // 12
    month = month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def add_business_days(moment: datetime, days: int) -> datetime:
    result = moment
    added = 0
    while added < days:
        result += timedelta(days=1)
        if result.weekday() < 5:
            added += 1
    return result


def due_at_for(*, regulation: str, request_type: str, received_at: datetime) -> datetime:
    if regulation == Regulation.CCPA:
        if request_type in CCPA_OPT_OUT_TYPES:
            return add_business_days(received_at, CCPA_OPT_OUT_BUSINESS_DAYS)
        return received_at + timedelta(days=CCPA_RESPONSE_DAYS)
    return add_months(received_at, GDPR_RESPONSE_MONTHS)


def extended_due_at(*, regulation: str, due_at: datetime) -> datetime:
    if regulation == Regulation.CCPA:
        return due_at + timedelta(days=CCPA_EXTENSION_DAYS)
    return add_months(due_at, GDPR_EXTENSION_MONTHS)


def confirmation_due_at_for(*, regulation: str, received_at: datetime) -> datetime | None:
    """CCPA §7021(a): confirm receipt within 10 business days. The GDPR has no separate
    confirmation deadline."""
    if regulation == Regulation.CCPA:
        return add_business_days(received_at, CCPA_CONFIRMATION_BUSINESS_DAYS)
    return None


def can_extend(*, regulation: str, request_type: str) -> bool:
    """CCPA opt-out and limit requests have a fixed 15 business days with no extension."""
    return not (regulation == Regulation.CCPA and request_type in CCPA_OPT_OUT_TYPES)
