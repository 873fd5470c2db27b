"""The report is a registry of sections: a section registered here appears in the page, nothing else edited."""

from __future__ import annotations

import re

import pytest

from audit.contract.load import parse_results
from reports.html import build_view, render_html
from reports.html.environment import TEMPLATES
from reports.html.sections import Section, registered, temporarily

NOTE = "Detector boxes: 17 of 20 \u05e9\u05dc\u05d5\u05dd matched"


def _note_view(ctx) -> dict:
    """A section that reads the typed results: the number of conditions."""
    return {"extra_note": NOTE, "extra_conditions": len(ctx.conditions)}


def _extra_section(folder) -> Section:
    (folder / "extra_note.html.j2").write_text(
        '<section id="extra-note" aria-labelledby="extra-note-h">\n'
        '<h2 id="extra-note-h">Extra note</h2>\n'
        "<p>{{ extra_note }} over {{ extra_conditions }} conditions.</p>\n"
        "</section>\n",
        encoding="utf-8",
    )
    return Section("extra-note", "Extra note", _note_view, "extra_note.html.j2", folder=folder)


def _ids(html: str) -> list[str]:
    return re.findall(r'<section[^>]*\bid="([^"]+)"', html)


def test_a_registered_section_appears_in_the_page_and_its_table_of_contents(results, tmp_path):
    with temporarily(_extra_section(tmp_path), before="limitations"):
        html = render_html(results)
    ids = _ids(html)
    assert ids.index("extra-note") == ids.index("limitations") - 1  # where it was registered
    assert '<li><a href="#extra-note">Extra note</a></li>' in html
    # its values went through the page's escaping: right-to-left text is isolated
    assert "<bdi>Detector boxes: 17 of 20 \u05e9\u05dc\u05d5\u05dd matched</bdi> over" in html
    assert f"over {len(results['conditions'])} conditions." in html
    assert "extra-note" not in render_html(results)  # and it is gone once unregistered


def test_a_section_whose_view_returns_none_is_left_out(results, tmp_path):
    hidden = Section("hidden", "Hidden", lambda ctx: None, "missing_template.html.j2", folder=tmp_path)
    with temporarily(hidden):
        html = render_html(results)
    assert "hidden" not in _ids(html) and 'href="#hidden"' not in html


def test_every_registered_section_has_a_template_include_that_exists():
    sections = registered()
    assert len({s.id for s in sections}) == len(sections)
    for s in sections:
        folder = s.folder or TEMPLATES
        assert (folder / s.template).is_file(), f"section {s.id}: no template {s.template} in {folder}"


def test_every_registered_section_renders_its_own_region(results):
    html = render_html(results)
    ids = _ids(html)
    shown = [s.id for s in build_view(results)["sections"]]
    assert [i for i in ids if i in shown] == shown  # one <section id> per shown section, in registry order
    assert set(shown) >= {
        s.id
        for s in registered()
        if s.id not in ("breaking-points", "adversarial", "gallery", "detection", "corruptions", "slices", "physical")
    }


def test_sections_may_not_overwrite_each_others_values(results, tmp_path):
    clash = Section("clash", "Clash", lambda ctx: {"summary": ["overwritten"]}, "x.html.j2", folder=tmp_path)
    with temporarily(clash), pytest.raises(ValueError, match="clash"):
        build_view(results)


def test_the_view_reads_the_typed_results_and_a_mapping_alike(results):
    typed = parse_results(results)
    assert render_html(typed) == render_html(results)


def test_every_registered_section_survives_a_detection_run():
    """Each section's view runs on detection results (no classification conditions): it shows its part or none,
    never an internal error (the physical-threats section iterated `conditions`, which a detection run lacks)."""
    from detection_results import detection_dict
    from results_builder import complete_results

    results = complete_results(detection_dict())
    html = render_html(results)
    shown = [s.id for s in build_view(results)["sections"]]
    assert "detection" in shown and "physical" not in shown
    assert [i for i in _ids(html) if i in shown] == shown
