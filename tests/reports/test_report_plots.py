"""SVG charts: well-formed XML, escaped labels, sizes that fit the page."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from reports import plots

NS = "{http://www.w3.org/2000/svg}"


def _parse(svg) -> ET.Element:
    return ET.fromstring(str(svg))


def test_line_chart_escapes_and_parses():
    svg = plots.line_chart(
        [plots.Series("<b>&night'", [(0, 0.9), (1, 0.8), (2, 0.5)]), plots.Series("glare", [(0, 0.9), (2, 0.7)])],
        title="t <&>",
        x_label="severity",
        x_names={0.0: "clean"},
    )
    root = _parse(svg)
    texts = [t.text for t in root.iter(NS + "text")]
    assert "<b>&night'" in texts and "clean" in texts
    assert "<b>" not in str(svg)
    assert len(list(root.iter(NS + "polyline"))) == 2


def test_values_outside_range_are_clipped():
    root = _parse(plots.line_chart([plots.Series("s", [(0, -1.0), (1, 2.0)])], title="t", x_label="x"))
    (line,) = root.iter(NS + "polyline")
    ys = [float(p.split(",")[1]) for p in line.get("points").split()]
    assert all(12 <= y <= 280 for y in ys)


def test_reliability_diagram_skips_empty_bins():
    bins = [
        {"lo": 0.0, "hi": 0.5, "n": 0, "accuracy": None, "confidence": None},
        {"lo": 0.5, "hi": 1.0, "n": 10, "accuracy": 0.6, "confidence": 0.8},
    ]
    root = _parse(plots.reliability_diagram(bins, title="clean"))
    assert root.get("width") == "300"
    assert len([r for r in root.iter(NS + "rect") if r.get("fill-opacity") == "0.75"]) == 1


def test_bar_chart_flags_and_unique_pattern_ids():
    bars = [
        plots.Bar("a = x", 0.8, 0.75, 0.85, n=100),
        plots.Bar("a = &\"'", 0.5, 0.3, 0.7, flagged=True, n=9),
        plots.Bar("a = none", None),
    ]
    one, two = plots.bar_chart_ci(bars, title="one"), plots.bar_chart_ci(bars, title="two")
    root = _parse(one)
    assert "(few)" in str(one) and "no data" in str(one)
    assert "a = &amp;&#34;&#39;" in str(one)
    ids = [p.get("id") for p in root.iter(NS + "pattern")]
    assert ids and ids[0] not in str(two)


def test_heatmap_scales_to_many_classes():
    k = 60
    matrix = [[(5 if i == j else 1) for j in range(k)] for i in range(k)]
    root = _parse(plots.heatmap(matrix, [f"class {i}" for i in range(k)], title="cm"))
    assert float(root.get("width")) <= 640
    assert not [t for t in root.iter(NS + "text") if t.text == "5"]  # no counts drawn at this size


def test_heatmap_annotates_small_matrices():
    svg = plots.heatmap([[3, 1], [0, 4]], ["<script>", "dog"], title="cm")
    assert "&lt;script&gt;" in str(svg) and "<script>" not in str(svg)
    assert [t.text for t in _parse(svg).iter(NS + "text")].count("4") == 1
