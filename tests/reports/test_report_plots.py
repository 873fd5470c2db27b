"""SVG charts: well-formed XML, escaped labels, sizes that fit the page."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from audit.contract.results import ReliabilityBin
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
        ReliabilityBin(lo=0.0, hi=0.5, n=0, accuracy=None, confidence=None),
        ReliabilityBin(lo=0.5, hi=1.0, n=10, accuracy=0.6, confidence=0.8),
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


def _alt(svg) -> str:
    return _parse(svg).find(NS + "title").text


def test_contrast_ratio_matches_wcag_examples():
    assert plots.contrast_ratio("#000000", "#ffffff") == pytest.approx(21.0)
    assert plots.contrast_ratio("#ffffff", "#ffffff") == pytest.approx(1.0)
    assert plots.contrast_ratio("#777777", "#ffffff") == pytest.approx(4.48, abs=0.01)  # the classic near-miss
    assert plots.contrast_ratio("#b26a00", "#ffffff") == pytest.approx(4.23, abs=0.01)  # the old warn badge


def test_palette_has_3_to_1_contrast_on_white():
    assert all(plots.contrast_ratio(colour, "#ffffff") >= 3.0 for colour in plots.PALETTE)


def test_heatmap_cell_text_has_4_5_to_1_contrast():
    matrix = [[(i * 7 + j * 3) % 11 + (40 if i == j else 0) for j in range(6)] for i in range(6)]
    root = _parse(plots.heatmap(matrix, [f"c{i}" for i in range(6)], title="cm"))
    cells = [r for r in root.iter(NS + "rect") if r.get("stroke") == "#fff"]
    texts = [t for t in root.iter(NS + "text") if t.get("fill")]
    assert len(cells) == len(texts) == 36
    for cell, text in zip(cells, texts):
        assert plots.contrast_ratio(cell.get("fill"), text.get("fill")) >= 4.5, (cell.get("fill"), text.get("fill"))
    assert {t.get("fill") for t in texts} == {"#000000", "#ffffff"}


def test_line_chart_text_alternative_lists_every_point():
    svg = plots.line_chart(
        [plots.Series("night", [(0, 0.945), (1, 0.797), (5, 0.185)]), plots.Series("<glare>", [(0, 0.945), (2, 0.5)])],
        title="Accuracy against stressor severity",
        x_label="severity",
        x_words={0.0: "clean"},
        x_prefix="at severity",
    )
    assert _alt(svg) == (
        "Accuracy against stressor severity. night: accuracy 94.5% clean, 79.7% at severity 1, 18.5% at severity 5;"
        " <glare>: accuracy 94.5% clean, 50.0% at severity 2."
    )
    assert "&lt;glare&gt;" in str(svg)


def test_bar_chart_text_alternative_gives_values_intervals_and_counts():
    svg = plots.bar_chart_ci(
        [plots.Bar("site = A", 0.8, 0.75, 0.85, n=100), plots.Bar("site = B", 0.5, flagged=True, n=9)], title="t"
    )
    assert _alt(svg) == (
        "t. site = A: accuracy 80.0% (95% interval 75.0% to 85.0%), 100 images;"
        " site = B: accuracy 50.0%, 9 images, too few images to compare."
    )


def test_reliability_text_alternative_lists_non_empty_bins():
    bins = [
        ReliabilityBin(lo=0.0, hi=0.5, n=0, accuracy=None, confidence=None),
        ReliabilityBin(lo=0.5, hi=1.0, n=10, accuracy=0.6, confidence=0.8),
    ]
    assert _alt(plots.reliability_diagram(bins, title="clean")) == (
        "clean. Accuracy per confidence bin, confidence 50.0% to 100.0%, 10 images: accuracy 60.0%,"
        " mean confidence 80.0%."
    )


def test_large_heatmap_text_alternative_summarises_each_row():
    k = 20
    matrix = [[(9 if i == j else (3 if j == (i + 1) % k else 0)) for j in range(k)] for i in range(k)]
    alt = _alt(plots.heatmap(matrix, [f"class {i}" for i in range(k)], title="cm"))
    assert "true class 0, 12 images: 9 predicted correctly, most often mistaken for class 1 (3 images)" in alt
    assert alt.count("; true class") == k - 1
