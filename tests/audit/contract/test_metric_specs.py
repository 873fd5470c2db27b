"""The metric registry: every spec is computed, every computed metric has a spec, and every list is derived.

A real run (24 images, two cameras, ``evaluation.top_k`` set, bootstrap on) gives the metrics the
evaluator actually writes; the registry, the results models, groups.csv, the MLflow names and the
committed documentation table are checked against it and against each other.
"""

from __future__ import annotations

import ast
import csv
import io
import json
import types
from collections import defaultdict
from pathlib import Path
from typing import get_args

import pytest
import torch
from click.testing import CliRunner
from cvaudit_fixtures import ColourNet, make_dataset, save_model, write_config

from audit.contract import gaptests, groupstats
from audit.contract.intervals import (
    CLOSED_FORM,
    INTERVAL_METHOD_LABELS,
    INTERVAL_METHOD_SPECS,
    INTERVAL_METHODS,
    IntervalMethod,
)
from audit.contract.load import parse_results
from audit.contract.metric_specs import (
    EXPORTS,
    METRICS,
    MetricSpec,
    _register,
    exported,
    gap_metric_names,
    interval_metric_names,
    markdown_table,
    proportion_metric_names,
    rate_difference_names,
    ratio_metric_names,
    specs,
)
from audit.contract.results import ErrorTypes, FairnessEntry, GroupMetrics, Metrics
from audit.evaluation.metrics import audit_metrics
from audit.tracking import names as tracking_names
from reports import groups_csv

ROOT = Path(__file__).resolve().parents[3]
#: Entries of a slot of ``AuditStats.compute()`` that are structures, not metrics.
SLOT_STRUCTURES = {"confusion", "top_confusions", "reliability"}
#: Keys of a fairness entry that describe it (which groups, what drove a value), not a metric.
FAIRNESS_STRUCTURE = {
    "condition",
    "attribute",
    "min_group_size",
    "min_positives",
    "groups_compared",
    "worst_group",
    "best_group",
    "tests",
    "excluded",
    "exclusions",
}


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """One real ``cvaudit run`` with top-k and the bootstrap (its output folder)."""
    from audit.cli import main

    root = tmp_path_factory.mktemp("metric-specs")
    make_dataset(root)
    save_model(root / "model.pt", ColourNet())
    cfg = write_config(root, stressors="  - {name: night, severities: [2]}\n")
    cfg.write_text(cfg.read_text().replace("n_bootstrap: 50\n", "n_bootstrap: 50\n  top_k: 2\n"))
    out = root / "out"
    result = CliRunner().invoke(main, ["run", str(cfg), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def results(run: Path) -> dict:
    return json.loads((run / "results.json").read_text())


def _where(results: dict, spec: MetricSpec) -> list[dict]:
    """Every place in results.json that holds ``spec``'s metric."""
    conditions = results["conditions"]
    if spec.scope == "slot":
        return [c["metrics"] for c in conditions] + [g["metrics"] for c in conditions for g in c["groups"]]
    if spec.scope == "condition":
        return [c["error_types"] for c in conditions]
    return list(results["fairness"])


# --- every spec is computed, every computed metric has a spec -------------------------------------


def test_every_spec_is_computed_by_the_run(results):
    assert results["fairness"] and all(len(c["groups"]) == 2 for c in results["conditions"])
    for spec in specs():
        places = _where(results, spec)
        missing = [p for p in places if p.get(spec.name) is None]
        assert not missing, f"{spec.name}: the run wrote no value in {len(missing)} of {len(places)} places"


def test_every_metric_the_run_writes_has_a_spec(results):
    def metrics_of(entries: list[dict]) -> set[str]:
        return {k for e in entries for k in e if not k.endswith("_ci")}

    conditions = results["conditions"]
    slot = metrics_of([c["metrics"] for c in conditions] + [g["metrics"] for c in conditions for g in c["groups"]])
    condition = metrics_of([c["error_types"] for c in conditions])
    assert slot - {"confusion"} == {s.name for s in specs(lambda s: s.scope == "slot")}
    assert condition - {"top_confusions"} == {s.name for s in specs(lambda s: s.scope == "condition")}
    for entry in results["fairness"]:
        for key in set(entry) - FAIRNESS_STRUCTURE:
            if key.endswith("_driver"):
                assert key in {s.driver for s in specs()}, key
            elif key.endswith("_gap"):
                assert key.removesuffix("_gap") in gap_metric_names(), key
            elif key.endswith("_ratio"):
                assert key.removesuffix("_ratio") in ratio_metric_names(), key
            else:
                assert METRICS[key].scope == "fairness", key


def test_every_metric_the_evaluator_computes_has_a_spec_and_no_more():
    torch.manual_seed(0)
    probs = torch.softmax(torch.randn(40, 3), dim=1)
    labels = torch.arange(40) % 3
    slot = audit_metrics(probs, labels, n_bootstrap=20, top_k=2)
    computed = {k for k in slot if not k.endswith("_ci")} - SLOT_STRUCTURES
    assert computed == {s.name for s in specs(lambda s: s.scope in ("slot", "condition"))}


def test_an_empty_slot_has_every_key_of_a_full_one_undefined():
    from audit.evaluation.metrics import AuditStats

    stats = AuditStats(num_classes=3, num_slots=2, n_bootstrap=10, top_k=2)
    probs = torch.softmax(torch.randn(12, 3, generator=torch.Generator().manual_seed(2)), dim=1)
    stats.update(probs, torch.arange(12) % 3, torch.zeros(12, 1, dtype=torch.long), torch.arange(12))
    full, empty = stats.compute()
    assert set(empty) == set(full)
    for spec in specs(lambda s: s.scope in ("slot", "condition")):
        assert empty[spec.name] == (0 if spec.kind == "count" else [None] * 3 if spec.kind == "rate" else None)


@pytest.mark.parametrize("top_k", [None, 2])
@pytest.mark.parametrize("n_bootstrap", [0, 20])
def test_interval_metrics_are_those_the_evaluator_gives_an_interval(top_k, n_bootstrap):
    from audit.runner import _intervals

    torch.manual_seed(1)
    probs = torch.softmax(torch.randn(60, 3), dim=1)
    slot = audit_metrics(probs, torch.arange(60) % 3, n_bootstrap=n_bootstrap, top_k=top_k)
    slot_names = {s.name for s in specs(lambda s: s.scope == "slot")}
    with_interval = {k.removesuffix("_ci") for k, v in slot.items() if k.endswith("_ci") and v is not None}
    expected = interval_metric_names(top_k=top_k is not None, bootstrap=n_bootstrap > 0)
    assert with_interval & slot_names == expected
    cfg = types.SimpleNamespace(evaluation=types.SimpleNamespace(top_k=top_k, n_bootstrap=n_bootstrap))
    assert _intervals(cfg) == expected


# --- the results models hold exactly what the registry says ---------------------------------------


def test_results_models_have_a_described_field_per_spec_and_its_interval():
    model = {"slot": Metrics, "condition": ErrorTypes, "fairness": FairnessEntry}
    for spec in specs():
        fields = model[spec.scope].model_fields
        assert fields[spec.name].description, spec.name
        if spec.scope == "slot":
            assert (f"{spec.name}_ci" in fields) == (spec.interval != "none"), spec.name
    metric_fields = {k for k in Metrics.model_fields if not k.endswith("_ci")}
    assert metric_fields == {s.name for s in specs(lambda s: s.scope == "slot")}
    assert set(GroupMetrics.model_fields) - set(Metrics.model_fields) == {"confusion"}
    fairness = FairnessEntry.model_fields
    assert {k for k in fairness if k.endswith("_gap")} == {f"{m}_gap" for m in gap_metric_names()}
    assert {k for k in fairness if k.endswith("_ratio")} == {f"{m}_ratio" for m in ratio_metric_names()}
    assert {k for k in fairness if k.endswith("_driver")} == {s.driver for s in specs(lambda s: s.driver)}


# --- the derived lists ----------------------------------------------------------------------------


def test_derived_lists_are_the_registry():
    assert groupstats.GAP_METRICS == gap_metric_names() == tuple(s.name for s in specs() if s.gap_tested)
    assert groupstats.RATIO_METRICS == ratio_metric_names() == tuple(s.name for s in specs() if s.ratio_tested)
    assert rate_difference_names() == gaptests.RATE_DIFFERENCES
    assert proportion_metric_names() == gaptests.PROPORTION_METRICS
    assert all(METRICS[m].higher_is_better for m in ratio_metric_names())
    assert set(ratio_metric_names()) <= set(gap_metric_names())


def test_the_gap_tests_use_counts_exactly_for_proportions(results):
    for entry in results["fairness"]:
        for key, test in entry["tests"].items():
            name = key.removesuffix("_gap")
            counted = name in proportion_metric_names() or name in rate_difference_names()
            assert test["method"] == ("agresti-caffo" if counted else "wald-bootstrap-se"), key


def test_policy_rules_know_the_registrys_differences():
    from policies.schema import MetricRule

    def rule(metric: str) -> MetricRule:
        return MetricRule(id="r", condition="clean", attribute="camera", metric=metric, max=0.1)

    for name in gap_metric_names():
        assert rule(f"{name}_gap").difference == (name, "gap")
    for name in rate_difference_names():
        assert rule(name).difference == (name, "gap")
    for name in set(METRICS) - set(gap_metric_names()):
        assert rule(f"{name}_gap").difference is None


def test_interval_methods_are_one_registry():
    assert get_args(IntervalMethod) == INTERVAL_METHODS == tuple(INTERVAL_METHOD_SPECS)
    assert set(INTERVAL_METHOD_LABELS) == set(INTERVAL_METHODS) and all(INTERVAL_METHOD_LABELS.values())
    assert CLOSED_FORM == ("wilson", "clopper-pearson")


# --- exports --------------------------------------------------------------------------------------


def _expected_columns(to: str) -> list[str]:
    out = []
    for spec in exported(to):
        out += [spec.name] + ([f"{spec.name}_ci_low", f"{spec.name}_ci_high"] if spec.interval_exported else [])
    return out


def test_groups_csv_has_a_column_per_exported_metric_with_its_values(run, results):
    rows = list(csv.DictReader(io.StringIO((run / "groups.csv").read_text())))
    header = list(rows[0])
    metric_columns = [
        c for c in header if c not in ("condition", "attribute", "value", "insufficient_data", "confusion")
    ]
    assert metric_columns == _expected_columns("groups.csv")
    assert tuple(header) == groups_csv.GROUPS_COLUMNS
    groups = [g for c in results["conditions"] for g in c["groups"]]
    assert len(rows) == len(groups)
    for row, group in zip(rows, groups):
        for spec in exported("groups.csv"):
            assert float(row[spec.name]) == group["metrics"][spec.name]
            if spec.interval_exported:
                low, high = group["metrics"][f"{spec.name}_ci"]
                assert (float(row[f"{spec.name}_ci_low"]), float(row[f"{spec.name}_ci_high"])) == (low, high)


def test_mlflow_logs_every_exported_metric(results):
    logged = {name for name, _ in tracking_names.metric_values(parse_results(results))}
    clean = {n.removeprefix("clean/") for n in logged if n.startswith("clean/") and n.count("/") == 1}
    assert clean == set(_expected_columns("mlflow"))
    assert tuple(_expected_columns("mlflow")) == tracking_names.CONDITION_METRICS
    group = defaultdict(set)
    for n in logged:
        if n.startswith("clean/group/"):
            group[n.rpartition("/")[0]].add(n.rpartition("/")[2])
    assert group and all(v == {s.name for s in exported("mlflow.group")} for v in group.values())
    fairness = {n.rpartition("/")[2] for n in logged if n.startswith("clean/fairness/")}
    assert fairness == {f"{s.name}_gap" for s in exported("mlflow.fairness")}


def test_a_new_exported_spec_is_exported_without_another_edit(monkeypatch, results):
    spec = MetricSpec(
        name="zz_score",
        label="ZZ",
        phrase="the zz score",
        unit="score",
        kind="score",
        scope="slot",
        higher_is_better=False,
        interval="bootstrap",
        gap_tested=True,
        exports=frozenset(EXPORTS),
        interval_exported=True,
    )
    monkeypatch.setitem(METRICS, spec.name, spec)
    # the registry decides every exporter's names; the values come from the typed results, so a new metric
    # also needs its field in the results contract (audit/contract/results: the schema test fails without it)
    assert list(groups_csv.groups_columns())[-4:] == ["zz_score", "zz_score_ci_low", "zz_score_ci_high", "confusion"]
    assert {"zz_score", "zz_score_ci_low", "zz_score_ci_high"} <= set(tracking_names.condition_metric_names())
    assert "zz_score" in tracking_names.group_metric_names()
    assert "zz_score_gap" in tracking_names.fairness_gap_names()
    assert "zz_score" in gap_metric_names() and "zz_score" in interval_metric_names(top_k=False, bootstrap=True)


def test_report_exports_are_shown_by_the_report():
    shown = "".join(p.read_text() for p in (ROOT / "reports" / "templates").glob("*.j2"))
    shown += "".join(p.read_text() for p in (ROOT / "reports" / "html").rglob("*.py"))
    shown += "".join(p.read_text() for p in (ROOT / "reports" / "templates").rglob("*.j2"))
    for spec in exported("report"):
        assert spec.name in shown, spec.name


# --- the specs themselves -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"kind": "percent"}, "kind"),
        ({"ratio_tested": True}, "higher-is-better"),
        ({"scope": "condition", "gap_tested": True}, "scope 'slot'"),
        ({"interval_exported": True, "interval": "none"}, "cannot export"),
        ({"exports": frozenset({"csv"})}, "exports"),
        ({"exports": frozenset({"mlflow.fairness"})}, "gap"),
        ({"driver": "x_driver"}, "driver"),
        ({"scope": "condition", "exports": frozenset({"groups.csv"})}, "groups.csv or MLflow"),
        ({"requires": "n_bins"}, "requires"),
    ],
)
def test_contradictory_specs_are_refused(change, message):
    fields = {
        "name": "x",
        "label": "X",
        "phrase": "x",
        "unit": "nats",
        "kind": "score",
        "scope": "slot",
        "higher_is_better": False,
    }
    with pytest.raises(ValueError, match=message):
        MetricSpec(**{**fields, **change})


def test_a_name_registered_twice_is_refused():
    with pytest.raises(ValueError, match="registered twice"):
        _register(METRICS["accuracy"])


# --- the documentation table ----------------------------------------------------------------------


def test_committed_metric_table_is_the_generated_one():
    committed = (ROOT / "docs" / "reference" / "metrics.md").read_text()
    assert committed == markdown_table(), (
        "run: python -m audit.contract.metric_specs --markdown > docs/reference/metrics.md"
    )
    for spec in specs():
        assert f"`{spec.name}`" in committed


def test_the_markdown_command_prints_the_table(capsys):
    from audit.contract.metric_specs import main

    assert main(["--markdown"]) == 0
    assert capsys.readouterr().out == markdown_table()


# --- metric names are written in one place --------------------------------------------------------

PRODUCT = ("audit", "reports", "policies", "stressors")
#: The files that write a metric's name: its computation and its registration.
DEFINED_IN = {
    "audit/contract/metric_specs.py",  # the registry
    "audit/evaluation/metrics.py",  # the metrics of a slot and of a condition
    "audit/contract/groupstats.py",  # the differences between groups
    "audit/contract/results/detection.py",  # the detection metrics' model (their definitions)
    "audit/evaluation/detection/summary.py",  # the detection metrics of a condition and a group
    "audit/evaluation/detection/statistics.py",  # their intervals and tests
}
#: Files that still write metric names, each with its reason; an entry that no longer does fails.
ALLOWED = {
    # the metric type ids of the Hugging Face model index and the Model Card Toolkit: another vocabulary
    # that shares some words (cvaudit's macro_f1 is "f1" there, its ece "expected_calibration_error")
    "reports/model_card/mct.py": "model card metric ids",
    "reports/model_card/huggingface.py": "model card metric ids",
    # the schema's descriptions ("max - min of the group accuracy ..."); its field names are checked above
    "audit/contract/results/summaries.py": "schema descriptions",
    # COCOeval.stats positions under faster-coco-eval's own names (cvaudit's "map" is its "map" too)
    "audit/evaluation/detection/coco_metrics.py": "COCOeval stats names",
    # the detection demo's policy rules, written by the demo (the classifier demo's is a built-in YAML)
    "audit/demo_detection.py": "the detection demo's policy rules",
    # the pytest helpers named after their metric (assert_map, assert_recall)
    "audit/testing.py": "assert_map / assert_recall",
    # which metrics an object-level group carries (recall and its counts; COCO AP for size and class)
    "policies/detection.py": "object-level group metrics",
    # the detection section's table columns and chart series
    "reports/html/sections/detection.py": "detection report columns",
    "reports/html/detection_charts.py": "detection report chart series",
    # the metrics a slice is measured with: the means of a per-sample value of predictions.csv (config slices.metric)
    "audit/contract/config.py": "slices.metric's choices",
    "audit/evaluation/slice_watch.py": "a slice's per-sample metrics",
    # which metrics a watched slice is measured with, per task (WATCHED_METRICS: policy validation, the report)
    "audit/contract/slices.py": "a watched slice's metrics per task",
    # the slice search's metrics (SEARCH_METRICS, DETECTION_METRICS: the per-sample value and its test) and the
    # per-sample values read from predictions.csv / objects.csv
    "audit/evaluation/slices/search.py": "the slice search's per-sample metrics",
    "audit/evaluation/slices/run_folder.py": "a slice's per-sample metrics",
}
#: Another quantity with the same key: the corruption summary's mean corruption error (``mce``).
SAME_KEY_OTHER_QUANTITY = {
    ("mce", "audit/evaluation/robustness.py"),
    ("mce", "audit/tracking/names.py"),
    # an example box's outcome (a true or false positive), not the operating point's counts
    ("tp", "audit/evaluation/detection/results.py"),
    ("fp", "audit/evaluation/detection/results.py"),
}


def _string_constants(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}


def test_no_metric_name_is_written_in_more_than_its_definition_and_registration():
    # ``n`` is every results node's sample count (bins, exclusions, drivers ...), not only the metric's.
    names = set(METRICS) - {"n"}
    written: dict[str, set[str]] = defaultdict(set)
    for package in PRODUCT:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            for name in _string_constants(path) & names:
                if (name, rel) not in SAME_KEY_OTHER_QUANTITY:
                    written[rel].add(name)
    stale = sorted(set(ALLOWED) - set(written))
    assert not stale, f"no longer write metric names: remove from ALLOWED: {stale}"
    outside = {rel: sorted(found) for rel, found in written.items() if rel not in DEFINED_IN | set(ALLOWED)}
    assert not outside, f"metric names written outside their definition and registration: {outside}"
    for name in names:
        files = [rel for rel, found in written.items() if name in found and rel not in ALLOWED]
        assert len(files) <= 2, f"{name} is written in {files}"
