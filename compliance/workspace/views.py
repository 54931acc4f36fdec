"""The accountability pages, inside the admin (staff only, wrapped in
``admin.site.admin_view`` by urls.py). Each page needs the model permission of what it
reports on and shows only the systems the user covers."""

from __future__ import annotations

import csv
from collections.abc import Iterable

from django.conf import settings
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods

from compliance.audit import audit_verify
from compliance.workspace import charts, metrics, selectors
from compliance.workspace.permissions import SystemScope, request_scope
from dsar.models import Regulation, RequestType

MIN_YEAR = 2020
REGULATION_CHOICES = [
    ("ccpa", gettext_lazy("CCPA / CPRA requests only")),
    ("gdpr", gettext_lazy("GDPR requests only")),
    ("all", gettext_lazy("Every regulation")),
]


class BadParameter(Exception):
    pass


def _require(request: HttpRequest, *perms: str) -> None:
    if not all(request.user.has_perm(perm) for perm in perms):
        raise PermissionDenied


def _page(request, template: str, title: str, *, status: int = 200, **context) -> TemplateResponse:
    return TemplateResponse(
        request,
        template,
        {
            **admin.site.each_context(request),
            "title": title,
            "scope_text": scope_description(request_scope(request)),
            **context,
        },
        status=status,
    )


def _int_param(request, name: str, default: int, lowest: int, highest: int) -> int:
    raw = request.GET.get(name, "")
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadParameter(_("%(name)s must be a whole number.") % {"name": name}) from None
    if not lowest <= value <= highest:
        raise BadParameter(
            _("%(name)s must be from %(low)s to %(high)s.")
            % {"name": name, "low": lowest, "high": highest}
        )
    return value


def _csv_cell(value: object) -> str:
    text = "" if value is None else str(value)
    # A cell that starts with =, +, - or @ is a formula to a spreadsheet: names typed by
    # staff must never run as one when the DPO opens the file.
    if text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + text
    return text


def _csv_response(filename: str, header: list[str], rows: Iterable[Iterable[object]]):
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    writer = csv.writer(response)
    writer.writerow(header)
    for row in rows:
        writer.writerow([_csv_cell(v) for v in row])
    return response


def _percent(value: float) -> str:
    return f"{value * 100:.0f}%"


# --- Dashboard -----------------------------------------------------------------------------------


def dashboard(request: HttpRequest) -> HttpResponse:
    _require(request, "dsar.view_datasubjectrequest")
    try:
        weeks = _int_param(request, "weeks", settings.WORKSPACE_DASHBOARD_WEEKS, 4, 104)
    except BadParameter as exc:
        return _page(request, "workspace/error.html", _("Dashboard"), status=400, error=str(exc))
    scope = request_scope(request)
    # Counts per purpose and week only: no subject is named, so the dashboard's permission
    # is enough to see them (for the purposes of the user's systems).
    board = metrics.dashboard(
        requests=selectors.requests_in_scope(scope),
        consent_events=selectors.consent_events_in_scope(scope),
        weeks=weeks,
    )
    labels = board.week_labels
    type_labels = dict(RequestType.choices)
    received_series = [
        charts.Series(str(type_labels[t]), counts) for t, counts in board.received_by_type.items()
    ]
    received_chart = charts.bar_chart(
        title=_("Requests received per week, by type"),
        labels=labels,
        series=received_series or [charts.Series(_("Requests"), [0] * weeks)],
    )
    answered_chart = charts.bar_chart(
        title=_("Requests answered per week: within the deadline, and late"),
        labels=labels,
        series=[
            charts.Series(_("On time"), board.answered_on_time),
            charts.Series(_("Late"), board.answered_late),
        ],
    )
    withdrawal_chart = charts.line_chart(
        title=_("Consent withdrawals, objections and opt-outs per week, by purpose"),
        labels=labels,
        series=[
            charts.Series(name, counts) for name, counts in board.withdrawals_by_purpose.items()
        ]
        or [charts.Series(_("Withdrawals"), [0] * weeks)],
    )
    queue = reverse("admin:dsar_datasubjectrequest_changelist")
    return _page(
        request,
        "workspace/dashboard.html",
        _("DPO dashboard"),
        board=board,
        weeks=weeks,
        received_chart=received_chart,
        answered_chart=answered_chart,
        withdrawal_chart=withdrawal_chart,
        received_rows=[
            (label, [board.received_by_type[t][i] for t in board.received_by_type])
            for i, label in enumerate(labels)
        ],
        received_types=[type_labels[t] for t in board.received_by_type],
        answered_rows=list(zip(labels, board.answered_on_time, board.answered_late, strict=True)),
        withdrawal_rows=[
            (label, [board.withdrawals_by_purpose[p][i] for p in board.withdrawals_by_purpose])
            for i, label in enumerate(labels)
        ],
        withdrawal_purposes=list(board.withdrawals_by_purpose),
        on_time_text=_percent(board.on_time_rate) if board.on_time_rate is not None else "—",
        queue_url=queue,
        overdue_url=f"{queue}?due=overdue",
        due_soon_url=f"{queue}?due=week",
    )


# --- CCPA §7102 ----------------------------------------------------------------------------------


def _ccpa_params(request) -> tuple[int, str]:
    this_year = timezone.now().year
    year = _int_param(request, "year", this_year, MIN_YEAR, this_year + 1)
    regulation = request.GET.get("regulation") or "ccpa"
    if regulation not in dict(REGULATION_CHOICES):
        raise BadParameter(_("regulation must be ccpa, gdpr or all."))
    return year, regulation


def _ccpa_rows(request, year: int, regulation: str) -> list[metrics.CcpaRow]:
    return metrics.ccpa_metrics(
        requests=selectors.requests_in_scope(request_scope(request)),
        year=year,
        regulation=None if regulation == "all" else Regulation(regulation),
    )


def ccpa_metrics(request: HttpRequest) -> HttpResponse:
    _require(request, "dsar.view_datasubjectrequest")
    try:
        year, regulation = _ccpa_params(request)
    except BadParameter as exc:
        return _page(request, "workspace/error.html", _("CCPA metrics"), status=400, error=str(exc))
    rows = _ccpa_rows(request, year, regulation)
    this_year = timezone.now().year
    return _page(
        request,
        "workspace/ccpa_metrics.html",
        _("CCPA §7102 request metrics, %(year)s") % {"year": year},
        rows=rows,
        year=year,
        regulation=regulation,
        years=list(range(this_year, MIN_YEAR - 1, -1)),
        regulation_choices=REGULATION_CHOICES,
        chart=charts.bar_chart(
            title=_("Requests received, complied with and denied, by type"),
            labels=[row.category.key.replace("_", "-") for row in rows],
            series=[
                charts.Series(_("Received"), [row.received for row in rows]),
                charts.Series(_("Complied with (in whole or in part)"), [r.complied for r in rows]),
                charts.Series(_("Denied"), [row.denied for row in rows]),
            ],
            stacked=False,
        ),
        csv_query=f"year={year}&regulation={regulation}",
    )


def ccpa_metrics_csv(request: HttpRequest) -> HttpResponse:
    _require(request, "dsar.view_datasubjectrequest")
    try:
        year, regulation = _ccpa_params(request)
    except BadParameter as exc:
        return HttpResponse(str(exc), status=400, content_type="text/plain; charset=utf-8")
    rows = _ccpa_rows(request, year, regulation)
    return _csv_response(
        f"ccpa-metrics-{year}-{regulation}.csv",
        [
            "year",
            "request_type",
            "received",
            "complied_in_whole_or_in_part",
            "denied",
            "median_days_to_respond",
            "still_open",
            "withdrawn_by_consumer",
        ],
        (
            [
                year,
                row.category.key,
                row.received,
                row.complied,
                row.denied,
                "" if row.median_days is None else row.median_days,
                row.open,
                row.withdrawn,
            ]
            for row in rows
        ),
    )


# --- Record of processing activities (GDPR Art. 30) ----------------------------------------------


def ropa(request: HttpRequest) -> HttpResponse:
    _require(request, "compliance.view_system")
    entries = selectors.record_of_processing(request_scope(request))
    return _page(
        request,
        "workspace/ropa.html",
        _("Record of processing activities (GDPR Art. 30)"),
        entries=entries,
        generated_at=timezone.now(),
    )


ROPA_CSV_HEADER = [
    "system",
    "system_slug",
    "controller",
    "controller_contact",
    "role",
    "owner_contact",
    "purpose",
    "lawful_basis",
    "purpose_data_categories",
    "data_categories",
    "sensitive_categories",
    "data_subject_categories",
    "recipients",
    "third_country_transfers",
    "retention",
    "security_measures",
]


def _ropa_retention_text(entry: selectors.RopaEntry) -> str:
    parts = []
    for r in entry.retention:
        if r.policy:
            parts.append(f"{r.source}: {r.days} days, then {r.action.lower()} ({r.policy})")
        else:
            parts.append(f"{r.source}: no retention policy")
    return "; ".join(parts)


def ropa_csv(request: HttpRequest) -> HttpResponse:
    _require(request, "compliance.view_system")
    entries = selectors.record_of_processing(request_scope(request))
    rows = []
    for entry in entries:
        common = {
            "data_categories": "; ".join(entry.data_categories),
            "sensitive": "; ".join(entry.sensitive_categories),
            "subjects": "; ".join(entry.subject_categories),
            "recipients": "; ".join(entry.recipients),
            "retention": _ropa_retention_text(entry),
            "security": "; ".join(entry.security_measures),
        }
        # One row per system and purpose, the shape supervisory authorities' templates use;
        # a system without a purpose still gets its row.
        for purpose in entry.purposes or [None]:
            rows.append(
                [
                    entry.system.name,
                    entry.system.slug,
                    entry.controller,
                    entry.controller_contact,
                    entry.role,
                    entry.owner_contact,
                    purpose.name if purpose else "",
                    purpose.lawful_basis if purpose else "",
                    "; ".join(purpose.data_categories) if purpose else "",
                    common["data_categories"],
                    common["sensitive"],
                    common["subjects"],
                    common["recipients"],
                    entry.transfers,
                    common["retention"],
                    common["security"],
                ]
            )
    stamp = timezone.now().strftime("%Y-%m-%d")
    return _csv_response(f"record-of-processing-{stamp}.csv", ROPA_CSV_HEADER, rows)


# --- Flagged AI answers --------------------------------------------------------------------------


def answer_flag_stats(request: HttpRequest) -> HttpResponse:
    _require(request, "compliance.view_answerflag")
    try:
        months = _int_param(request, "months", 12, 1, 36)
    except BadParameter as exc:
        return _page(
            request, "workspace/error.html", _("Flagged answers"), status=400, error=str(exc)
        )
    stats = selectors.answer_flag_stats(
        flags=selectors.answer_flags_in_scope(request_scope(request)), months=months
    )
    categories = selectors.FLAG_CATEGORIES
    systems = []
    for entry in stats:
        labels = [m.month.strftime("%b %Y") for m in entry.months]
        systems.append(
            {
                "stats": entry,
                "chart": charts.bar_chart(
                    title=_("%(system)s: answers flagged per month, by category")
                    % {"system": entry.system_name},
                    labels=labels,
                    series=[
                        charts.Series(str(label), entry.category_series(value))
                        for value, label in categories
                    ],
                ),
                "rows": [
                    (label, [m.by_category.get(value, 0) for value, _l in categories], m.total)
                    for label, m in zip(labels, entry.months, strict=True)
                ],
                "states": [
                    (label, entry.by_state.get(value, 0)) for value, label in selectors.FLAG_STATES
                ],
            }
        )
    return _page(
        request,
        "workspace/answer_flags.html",
        _("Flagged AI answers per plugin"),
        systems=systems,
        categories=[label for _v, label in categories],
        months=months,
        flags_url=reverse("admin:compliance_answerflag_changelist"),
    )


# --- Audit chain ---------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
def audit_verify_chain(request: HttpRequest) -> HttpResponse:
    """Walk the whole hash chain on demand (POST: it reads every event)."""
    _require(request, "compliance.view_auditevent")
    report = audit_verify() if request.method == "POST" else None
    return _page(
        request,
        "workspace/audit_verify.html",
        _("Verify the audit chain"),
        report=report,
        checked_at=timezone.now() if report else None,
        events_url=reverse("admin:compliance_auditevent_changelist"),
    )


def scope_description(scope: SystemScope) -> str:
    if scope.everything:
        return _("every system")
    return ", ".join(scope.systems().order_by("name").values_list("name", flat=True)) or _(
        "no system"
    )
