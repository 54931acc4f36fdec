"""Bar and line charts as inline SVG, drawn on the server: no JavaScript, no third-party
library, nothing fetched from a CDN (staff pages never tell an outside server who looks at
the privacy figures). Colours come from classes styled in workspace/workspace.css; every
bar and point carries a <title> with its exact figure, and a table beside each chart gives
the numbers for screen readers and for copying."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import count

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

WIDTH = 720
PLOT_LEFT = 52
PLOT_RIGHT = 16
PLOT_TOP = 14
PLOT_HEIGHT = 200
X_LABEL_SPACE = 34
LEGEND_ROW = 20
LEGEND_ITEM = 176
SERIES_CLASSES = 8

_ids = count(1)


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float | int | None]


def nice_max(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times a power of ten that is at least ``value``."""
    if value <= 0:
        return 1
    power = 10 ** math.floor(math.log10(value))
    for multiple in (1, 2, 2.5, 5, 10):
        if multiple * power >= value:
            return multiple * power
    return 10 * power  # unreachable


def _ticks(top: float, *, integers: bool) -> list[float]:
    if integers and top <= 4:
        return [float(n) for n in range(int(top) + 1)]
    return [top * i / 4 for i in range(5)]


def _fmt(value: float, formatter: Callable[[float], str] | None) -> str:
    if formatter is not None:
        return formatter(value)
    return f"{value:g}" if value != int(value) else str(int(value))


def _frame(
    *,
    title: str,
    labels: Sequence[str],
    series: Sequence[Series],
    top: float,
    integers: bool,
    y_format: Callable[[float], str] | None,
    body: list[str],
) -> SafeString:
    chart_id = f"ws-chart-{next(_ids)}"
    legend_per_row = max(1, (WIDTH - PLOT_LEFT) // LEGEND_ITEM)
    legend_rows = math.ceil(len(series) / legend_per_row) if len(series) > 1 else 0
    height = PLOT_TOP + PLOT_HEIGHT + X_LABEL_SPACE + legend_rows * LEGEND_ROW + 4
    plot_width = WIDTH - PLOT_LEFT - PLOT_RIGHT
    bottom = PLOT_TOP + PLOT_HEIGHT
    parts = [
        f'<svg class="ws-chart" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-labelledby="{chart_id}-title" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{chart_id}-title">{escape(title)}</title>',
    ]
    for tick in _ticks(top, integers=integers):
        y = bottom - tick / top * PLOT_HEIGHT
        parts.append(
            f'<line class="ws-grid" x1="{PLOT_LEFT}" x2="{WIDTH - PLOT_RIGHT}" '
            f'y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="ws-axis" x="{PLOT_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{escape(_fmt(tick, y_format))}</text>"
        )
    parts.extend(body)
    # Every label when they fit, else every n-th: a label is about 44 px wide.
    step = max(1, math.ceil(len(labels) * 44 / plot_width)) if labels else 1
    band = plot_width / max(len(labels), 1)
    for index, label in enumerate(labels):
        if index % step:
            continue
        x = PLOT_LEFT + band * (index + 0.5)
        parts.append(
            f'<text class="ws-axis" x="{x:.1f}" y="{bottom + 16}" text-anchor="middle">'
            f"{escape(label)}</text>"
        )
    parts.append(
        f'<line class="ws-baseline" x1="{PLOT_LEFT}" x2="{WIDTH - PLOT_RIGHT}" '
        f'y1="{bottom}" y2="{bottom}"/>'
    )
    if legend_rows:
        for index, item in enumerate(series):
            row, column = divmod(index, legend_per_row)
            x = PLOT_LEFT + column * LEGEND_ITEM
            y = bottom + X_LABEL_SPACE + row * LEGEND_ROW
            css = f"s{index % SERIES_CLASSES}"
            parts.append(
                f'<rect class="ws-swatch {css}" x="{x}" y="{y - 10}" width="12" height="12"/>'
                f'<text class="ws-legend" x="{x + 18}" y="{y}">{escape(item.name)}</text>'
            )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every text above went through escape()


def bar_chart(
    *,
    title: str,
    labels: Sequence[str],
    series: Sequence[Series],
    stacked: bool = True,
    y_format: Callable[[float], str] | None = None,
) -> SafeString:
    """Bars per label, one segment (stacked) or one bar (grouped) per series."""
    values = [[v or 0 for v in s.values] for s in series]
    if stacked:
        peak = max((sum(column) for column in zip(*values, strict=True)), default=0)
    else:
        peak = max((v for row in values for v in row), default=0)
    integers = all(float(v).is_integer() for row in values for v in row)
    top = nice_max(peak)
    plot_width = WIDTH - PLOT_LEFT - PLOT_RIGHT
    band = plot_width / max(len(labels), 1)
    bar_width = band * 0.7
    bottom = PLOT_TOP + PLOT_HEIGHT
    body: list[str] = []
    for index, label in enumerate(labels):
        x0 = PLOT_LEFT + band * index + (band - bar_width) / 2
        base = 0.0
        for number, item in enumerate(series):
            value = values[number][index]
            if not value:
                continue
            height = value / top * PLOT_HEIGHT
            if stacked:
                x, width = x0, bar_width
                y = bottom - (base + value) / top * PLOT_HEIGHT
                base += value
            else:
                width = bar_width / len(series)
                x, y = x0 + number * width, bottom - height
            tip = f"{label} · {item.name}: {_fmt(value, y_format)}"
            body.append(
                f'<rect class="ws-bar s{number % SERIES_CLASSES}" x="{x:.1f}" y="{y:.1f}" '
                f'width="{width:.1f}" height="{height:.1f}"><title>{escape(tip)}</title></rect>'
            )
    return _frame(
        title=title,
        labels=labels,
        series=series,
        top=top,
        integers=integers,
        y_format=y_format,
        body=body,
    )


def line_chart(
    *,
    title: str,
    labels: Sequence[str],
    series: Sequence[Series],
    y_max: float | None = None,
    y_format: Callable[[float], str] | None = None,
) -> SafeString:
    """A line per series; a missing value (None) breaks the line instead of reading as 0."""
    peak = max((v for s in series for v in s.values if v is not None), default=0)
    top = y_max if y_max is not None else nice_max(peak)
    integers = y_max is None and all(
        float(v).is_integer() for s in series for v in s.values if v is not None
    )
    plot_width = WIDTH - PLOT_LEFT - PLOT_RIGHT
    band = plot_width / max(len(labels), 1)
    bottom = PLOT_TOP + PLOT_HEIGHT
    body: list[str] = []
    for number, item in enumerate(series):
        css = f"s{number % SERIES_CLASSES}"
        segment: list[str] = []
        points: list[str] = []
        for index, value in enumerate(item.values):
            if value is None:
                if len(segment) > 1:
                    body.append(f'<polyline class="ws-line {css}" points="{" ".join(segment)}"/>')
                segment = []
                continue
            x = PLOT_LEFT + band * (index + 0.5)
            y = bottom - value / top * PLOT_HEIGHT
            segment.append(f"{x:.1f},{y:.1f}")
            tip = f"{labels[index]} · {item.name}: {_fmt(value, y_format)}"
            points.append(
                f'<circle class="ws-point {css}" cx="{x:.1f}" cy="{y:.1f}" r="3.5">'
                f"<title>{escape(tip)}</title></circle>"
            )
        if len(segment) > 1:
            body.append(f'<polyline class="ws-line {css}" points="{" ".join(segment)}"/>')
        body.extend(points)
    return _frame(
        title=title,
        labels=labels,
        series=series,
        top=top,
        integers=integers,
        y_format=y_format,
        body=body,
    )
