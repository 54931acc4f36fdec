"""The server-drawn SVG charts."""

from __future__ import annotations

import re
from xml.etree import ElementTree

from hypothesis import given
from hypothesis import strategies as st

from compliance.workspace.charts import Series, bar_chart, line_chart, nice_max

SVG = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ElementTree.Element:
    return ElementTree.fromstring(str(svg))  # noqa: S314 - our own output


@given(st.floats(min_value=1e-6, max_value=1e12, allow_nan=False))
def test_the_axis_top_is_at_least_the_value_and_less_than_ten_times_it(value):
    top = nice_max(value)
    assert value <= top * (1 + 1e-12)
    assert top < value * 10 * (1 + 1e-12)


def test_an_empty_chart_still_has_an_axis():
    assert nice_max(0) == 1


def test_a_stacked_bar_chart_draws_one_bar_per_non_zero_value_with_its_figure():
    svg = bar_chart(
        title="Received",
        labels=["W1", "W2", "W3"],
        series=[Series("Access", [1, 0, 3]), Series("Erasure", [2, 0, 0])],
    )
    root = parse(svg)
    bars = root.findall(f"{SVG}rect[@class]")
    bars = [b for b in bars if "ws-bar" in b.get("class")]
    assert len(bars) == 3
    tips = sorted(b.find(f"{SVG}title").text for b in bars)
    assert tips == ["W1 · Access: 1", "W1 · Erasure: 2", "W3 · Access: 3"]
    assert root.find(f"{SVG}title").text == "Received"


def test_stacked_bars_are_as_tall_as_their_sum():
    svg = str(bar_chart(title="t", labels=["a"], series=[Series("x", [2]), Series("y", [2])]))
    heights = [float(h) for h in re.findall(r'class="ws-bar[^"]*"[^>]*height="([\d.]+)"', svg)]
    # The plot is 200 px tall up to the axis top (5 for a peak of 4).
    assert heights == [80.0, 80.0]
    assert sum(heights) == 200.0 * 4 / nice_max(4)


def test_names_and_labels_are_escaped():
    svg = str(
        bar_chart(
            title="<b>t</b>", labels=["<x>"], series=[Series("<script>", [1]), Series("&", [1])]
        )
    )
    assert "<script>" not in svg
    assert "&lt;script&gt;" in svg
    parse(svg)  # still well-formed XML


def test_a_missing_value_breaks_the_line_instead_of_reading_as_zero():
    svg = line_chart(
        title="Rate", labels=["a", "b", "c", "d"], series=[Series("r", [1, 2, None, 3])]
    )
    root = parse(svg)
    lines = [e for e in root.iter(f"{SVG}polyline")]
    points = [e for e in root.iter(f"{SVG}circle")]
    assert len(lines) == 1  # a-b; d stands alone
    assert len(lines[0].get("points").split()) == 2
    assert len(points) == 3


def test_many_labels_are_thinned_so_they_do_not_overlap():
    labels = [f"L{i}" for i in range(52)]
    svg = str(bar_chart(title="t", labels=labels, series=[Series("s", [1] * 52)]))
    shown = re.findall(r">L(\d+)</text>", svg)
    assert 0 < len(shown) < 52
