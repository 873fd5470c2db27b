"""What a compliance reviewer reads (issue 30): governance that could not be judged, probes, rules in words,
named misclassified samples."""

from __future__ import annotations

import csv
import html
import re

import pytest
from reports_fixture import make_results

from policies import check_policy, parse_policy
from reports.error_examples import EXAMPLES_PER_TARGET, error_examples
from reports.html import fmt_rule_value, render_html
from reports.rule_words import rule_in_words


def _text(page: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", page))


def _section(page: str, start: str, end: str) -> str:
    """The text between two markers of the HTML (the first ``start`` after ``<main``), tags removed."""
    begin = page.index(start, page.index("<main"))
    return _text(page[begin : page.index(end, begin)])


def _unjudged(results: dict, checks: tuple[str, ...]) -> None:
    results["governance"]["findings"] = [
        {
            "check": check,
            "status": "warn",
            "blocking": False,
            "count": None,
            "total": None,
            "sample_ids": [],
            "judgeable": False,
            "message": f"cannot be judged: the column {check} reads is absent from the manifest",
        }
        for check in checks
    ]


# ------------------------------------------------------------------ governance: cannot be judged is not a finding


def test_checks_that_cannot_be_judged_are_not_counted_as_findings(results):
    checks = ("consent_missing", "consent_withdrawn", "purpose_missing", "lawful_basis_missing", "region_not_allowed")
    _unjudged(results, checks)
    results["policy"].update(verdict="pass", blocking_failures=[], failures=[])
    for rule in results["policy"]["rules"]:
        rule["status"] = "pass"
    page = render_html(results)
    summary = _section(page, 'id="summary"', 'id="identity"')
    assert "raised a finding" not in summary
    assert "5 data-governance checks could not be judged (insufficient data" in summary
    assert all(check in summary for check in checks)
    verdict = _section(page, 'id="verdict"', 'id="summary"')
    assert "Still read: 5 governance checks that could not be judged (insufficient data, not findings)" in verdict
    table = _section(page, 'id="governance"', 'id="gallery"')
    assert table.count("cannot be judged: insufficient data, not a finding") == 5


def test_findings_and_unjudged_checks_are_told_apart(results):
    findings = results["governance"]["findings"]
    _unjudged(results, ("biometric_without_basis",))
    results["governance"]["findings"] = findings + results["governance"]["findings"]
    results["governance"]["findings"][-1]["status"] = "fail"  # on_insufficient_data: fail, blocking
    summary = _section(render_html(results), 'id="summary"', 'id="identity"')
    assert "2 data-governance checks raised a finding: region_not_allowed, consent_missing." in summary
    assert "1 data-governance check could not be judged" in summary and "biometric_without_basis" in summary
    assert "1 of them fails the verdict because the policy treats what cannot be judged as a failure" in summary


# ------------------------------------------------------------------ probes are marked wherever conditions appear


def test_probe_conditions_are_marked_in_every_table_and_the_verdict(results):
    probe = next(c for c in results["conditions"] if c["id"] == "pgd@0.016")
    probe["probe"] = True
    rule = next(r for r in results["policy"]["rules"] if r["id"] == "worst_group_gap")
    rule["condition"] = probe["id"]
    results["policy"]["failures"] = [
        {"id": "worst_group_gap", "kind": "rule", "observed": 0.11, "threshold": 0.05, "op": "max", "message": "gap"}
    ]
    page = render_html(results)
    marked = f"{probe['id']} (probe)"
    for start, end in (
        ("Metrics per condition", "What the severity levels mean"),
        ("Accuracy by condition and group", 'id="errors"'),  # the group tables' column headers
        ('id="fairness"', "A gap is evidence"),
    ):
        assert marked in _section(page, start, end), start
    assert f"({probe['id']} is a probe)" in _section(page, 'id="policy"', 'id="robustness"')
    verdict = _section(page, 'id="verdict"', 'id="summary"')
    assert f"{probe['id']} is a probe condition" in verdict
    # a condition that is not a probe is not marked
    assert "night@3 (probe)" not in _text(page)


# ------------------------------------------------------------------ each rule in words


POLICY = """
version: 1
name: every-kind
on_insufficient_data: warn
rules:
  - {id: point, metric: accuracy, condition: clean, min: 0.8}
  - {id: ci-lower, metric: accuracy, condition: clean, judge: ci_lower, min: 0.75}
  - {id: ci-upper, metric: ece, condition: clean, judge: ci_upper, max: 0.1}
  - {id: glob, metric: accuracy, condition: "night@*", min: 0.5}
  - {id: by-stressor, metric: accuracy, stressor: night, severity: 3, min: 0.5}
  - {id: group, metric: accuracy, condition: clean, attribute: skin_tone, value: "V-VI", min: 0.7}
  - {id: worst, metric: accuracy, condition: clean, attribute: skin_tone, aggregate: worst, min: 0.7}
  - {id: gap-detect, metric: accuracy, condition: clean, attribute: skin_tone, aggregate: gap, max: 0.05}
  - {id: gap-demonstrate, metric: accuracy, condition: clean, attribute: camera, aggregate: gap, max: 0.05,
     test: demonstrate}
  - {id: gap-point, metric: accuracy, condition: clean, attribute: camera, aggregate: gap, max: 0.05, test: point}
  - {id: ratio, metric: accuracy, condition: clean, attribute: site, aggregate: ratio, min: 0.8}
  - {id: fairness, metric: equalized_odds_difference, condition: clean, attribute: skin_tone, max: 0.2}
  - {id: section, metric: num_skipped, section: dataset, max: 10}
  - {id: one-check, kind: finding, check: gradient_masking}
  - {id: warn-too, kind: finding, check: unbounded_attack_success, fail_on: [fail, warn], blocking: false}
"""

WORDS = {
    "point": "Accuracy on clean must be at least 80.00%",
    "ci-lower": "The lower end of the 95% interval of accuracy on clean must be at least 75.00%",
    "ci-upper": "The upper end of the 95% interval of the expected calibration error (ECE) on clean must be at most"
    " 10.00%",
    "glob": "Accuracy on each of the 5 matching targets (the worst: night@5) must be at least 50.00%",
    "by-stressor": "Accuracy on night@3 must be at least 50.00%",
    "group": "Accuracy of the group skin_tone=V-VI on clean must be at least 70.00%",
    "worst": "Accuracy of the worst skin_tone group on clean must be at least 70.00%",
    "gap-detect": "The gap in accuracy between the skin_tone groups on clean must be at most 5.00 pp; it fails only"
    " when the data show it larger (95% confidence)",
    "gap-demonstrate": "The gap in accuracy between the camera groups on clean must be at most 5.00 pp; it passes"
    " only when the data show it within the bound (95% confidence)",
    "gap-point": "The gap in accuracy between the camera groups on clean must be at most 5.00 pp",
    "ratio": "The ratio of the lowest to the highest accuracy across the site groups on clean must be at least"
    " 0.800 (ratio); it fails only when the data show it smaller (95% confidence)",
    "fairness": "The equalized odds difference across the skin_tone groups on clean must be at most 20.00 pp; it"
    " fails only when the data show it larger (95% confidence)",
    "section": "The number of skipped images in dataset must be at most 10 images",
    "one-check": "Check gradient_masking must not fail",
    "warn-too": "Check unbounded_attack_success must neither fail nor warn",
}


@pytest.fixture(scope="module")
def judged() -> dict:
    """The fixture results judged by a policy with every rule kind of the policy schema."""
    results = make_results()
    results["policy"] = check_policy(results, parse_policy(POLICY))
    return results


@pytest.mark.parametrize("rule_id", sorted(WORDS))
def test_every_rule_kind_in_words(judged, rule_id):
    rule = next(r for r in judged["policy"]["rules"] if r["id"] == rule_id)
    assert rule_in_words(rule, fmt_rule_value) == WORDS[rule_id]


def test_the_rules_table_says_each_rule_in_words(judged):
    rules = _section(render_html(judged), 'id="policy"', 'id="robustness"')
    assert "status not in" not in rules
    for words in WORDS.values():
        assert words in rules


def test_a_glob_over_checks_has_words_too():
    rule = {"kind": "finding", "check": None, "threshold": "status not in {fail}", "status": "insufficient_data"}
    assert rule_in_words(rule) == "No matching check may fail"


# ------------------------------------------------------------------ named misclassified samples


def _predictions(path, rows) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sample_id", "condition", "stressor", "severity", "label", "prediction", "confidence",
                         "p_true", "prob_sq_sum", "skin_tone", "camera", "site"])  # fmt: skip
        writer.writerows(rows)


@pytest.fixture
def failing(results, tmp_path):
    """A failed gap rule on clean / skin_tone (lowest group V-VI) and a warned rule on night@3, with predictions."""
    gap = next(r for r in results["policy"]["rules"] if r["id"] == "worst_group_gap")
    gap.update(condition="clean", group="skin_tone")
    ece = next(r for r in results["policy"]["rules"] if r["id"] == "ece_max")
    ece.update(condition="night@3")
    rows = []
    for i in range(20):
        tone = "V-VI" if i % 2 else "I-II"
        wrong = i % 3 != 0
        # p_true falls with i; two samples tie on p_true to check the tie-break by id
        p_true = 0.05 if i in (13, 17) else round(0.9 - 0.04 * i, 4)
        rows.append([f"img_{i:04d}", "clean", "", "", 1, 2 if wrong else 1, 0.9, p_true, 0.8, tone, "phone", "A"])
        rows.append([f"img_{i:04d}", "night@3", "night", 3, 0, 4 if i < 12 else 0, 0.9, 0.1 + i / 100, 0.8, tone,
                     "phone", "A"])  # fmt: skip
    path = tmp_path / "predictions.csv"
    _predictions(path, rows)
    return results, path


def test_failing_groups_and_conditions_name_their_misclassified_samples(failing):
    results, path = failing
    examples = error_examples(results, path)
    by_target = {(e["condition"], e["attribute"], e["value"]): e for e in examples}
    lowest = by_target[("clean", "skin_tone", "V-VI")]  # the gap rule names the lowest group stored in fairness[]
    # misclassified V-VI samples on clean: odd i with i % 3 != 0; the lowest p_true first, ties by sample id
    expected = sorted(
        ((0.05 if i in (13, 17) else round(0.9 - 0.04 * i, 4), f"img_{i:04d}") for i in range(1, 20, 2) if i % 3),
    )[:EXAMPLES_PER_TARGET]
    assert [s["sample_id"] for s in lowest["samples"]] == [sid for _, sid in expected]
    assert lowest["samples"][0]["sample_id"] == "img_0013" and lowest["samples"][1]["sample_id"] == "img_0017"
    assert lowest["errors"] == 7 and lowest["samples"][0]["label"] == "nevus"  # class names from results.json
    night = by_target[("night@3", None, None)]
    assert night["errors"] == 12 and [s["sample_id"] for s in night["samples"]] == [
        f"img_{i:04d}" for i in range(EXAMPLES_PER_TARGET)
    ]
    page = _section(render_html(results, predictions=path), 'id="error-examples"', 'id="fairness"')
    assert f"up to {EXAMPLES_PER_TARGET} misclassified samples by id" in page
    assert "the lowest probability given to the true class (ties by sample id)" in page
    assert "clean · skin_tone = V-VI" in page and "img_0013 (nevus → basal cell carcinoma, p = 0.05)" in page


def test_an_intersection_group_names_its_misclassified_samples(failing):
    """A rule on an intersection group (``skin_tone×camera = V-VI×phone``) is matched column by column."""
    results, path = failing
    gap = next(r for r in results["policy"]["rules"] if r["id"] == "worst_group_gap")
    gap.update(condition="clean", group="skin_tone×camera=V-VI×phone")
    target = next(e for e in error_examples(results, path) if e["condition"] == "clean")
    assert (target["attribute"], target["value"]) == ("skin_tone×camera", "V-VI×phone")
    assert target["errors"] == 7 and target["samples"][0]["sample_id"] == "img_0013"


def test_without_predictions_the_report_says_why_no_samples_are_named(results):
    page = _section(render_html(results), 'id="error-examples"', 'id="fairness"')
    assert "Sample ids are not named: no predictions.csv known to belong to these results" in page


#: A 1 x 1 PNG (a stand-in thumbnail).
PNG = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAAAAAA6fptVAAAACklEQVR4nGNgAAAAAgABSK+kcQAAAABJRU5ErkJggg=="
)


def _raw_section(page: str, start: str, end: str) -> str:
    """The HTML between two markers (the first ``start`` after ``<main``), tags kept."""
    begin = page.index(start, page.index("<main"))
    return page[begin : page.index(end, begin)]


def test_named_samples_show_their_thumbnails_from_results_json(failing):
    results, path = failing
    named = [s["sample_id"] for s in error_examples(results, path)[0]["samples"]]
    results["error_thumbnails"] = [
        {"condition": "clean", "attribute": "skin_tone", "value": "V-VI", "samples": [{"sample_id": named[0], "image": PNG}]},
        # another target's thumbnail is not shown for this one, nor one of a sample the report does not name
        {"condition": "night@3", "attribute": None, "value": None, "samples": [{"sample_id": "img_0019", "image": PNG}]},
    ]  # fmt: skip
    page = _raw_section(render_html(results, predictions=path), 'id="error-examples"', 'id="fairness"')
    imgs = re.findall(r'<img src="([^"]+)" alt="([^"]*)"><figcaption>([^<]*)</figcaption>', page)
    caption = f"{named[0]} (nevus → basal cell carcinoma, p = 0.05)"
    assert imgs == [(PNG, f"sample {named[0]} as the model saw it under condition clean", caption)]
    assert page.count("<img") == 1
    assert "Each sample with a thumbnail is shown as the model saw it under the condition" in page
    # the other samples of that target keep their caption, without an image
    assert all(f"<figcaption>{sid} (" in page for sid in named)


def test_without_thumbnails_the_report_says_why(failing):
    results, path = failing
    page = _section(render_html(results, predictions=path), 'id="error-examples"', 'id="fairness"')
    assert "No thumbnails: these results hold none for the named samples." in page  # images allowed (a gallery)
    del results["gallery"]
    page = _section(render_html(results, predictions=path), 'id="error-examples"', 'id="fairness"')
    assert "No thumbnails: the report may show no images (config report.images, capped by the policy)." in page


def test_without_predictions_the_samples_with_thumbnails_in_results_json_are_shown(results):
    samples = [{"sample_id": "img_0007", "image": PNG}, {"sample_id": "img_0002", "image": PNG}]
    results["error_thumbnails"] = [{"condition": "clean", "attribute": "camera", "value": "phone", "samples": samples}]
    page = _raw_section(render_html(results), 'id="error-examples"', 'id="fairness"')
    assert re.findall(r'<img src="[^"]+" alt="([^"]+)"><figcaption>([^<]*)</figcaption>', page) == [
        ("sample img_0007 as the model saw it under condition clean", "img_0007"),
        ("sample img_0002 as the model saw it under condition clean", "img_0002"),
    ]
    text = _text(page)
    assert '<td class="num">—</td>' in page  # the number misclassified is in predictions.csv
    assert "stored them with their thumbnails in results.json" in text and "Sample ids are not named" not in text
