"""The demo searches its night@3 predictions for weak slices (config slices) and its report shows them."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow


def test_the_demo_report_shows_discovered_slices(demo_run):
    search = json.loads((demo_run / "results.json").read_text())["slice_search"]
    assert search["condition"] == "night@3" and search["findings"]
    texts = [f["text"] for f in search["findings"]]
    assert "camera = B" in texts  # the dim sensor at night: the demo's planted weakness
    assert not any(f["fairness"] for f in search["findings"])  # slices.protected: [] in the demo
    assert all(1 <= len(f["examples"]) <= 3 for f in search["findings"])  # images: anonymized
    assert (demo_run / "slices.csv").is_file() and (demo_run / "image_properties.csv").is_file()
    section = (demo_run / "report.html").read_text().split('<section id="slices"')[1].split("</section>")[0]
    assert "camera = B" in section and 'alt="sample ' in section
