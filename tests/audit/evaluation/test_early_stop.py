"""Early stopping: the stratified order, the stop monitor, the targets policies give it, and a run."""

from __future__ import annotations

import csv
import json
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from audit.cli import main
from audit.contract.plan import PlannedCondition, RunPlan
from audit.evaluation.data import SampleTable
from audit.evaluation.early_stop import StopMonitor, stratified_order
from audit.evaluation.groups import build_layout
from audit.evaluation.metrics import AuditStats
from policies.early_stop import stop_targets
from policies.loader import policy_from_dict

sys.path.append(str(Path(__file__).resolve().parents[3] / "benchmarks"))
import coded


def test_stratified_order_is_a_seeded_permutation_with_stratified_prefixes():
    strata = [("a", 0)] * 600 + [("b", 0)] * 300 + [("b", 1)] * 100
    keys = list(range(1000, 2000))
    order = stratified_order(keys, strata, seed=3)
    assert sorted(order) == list(range(1000)) and order == stratified_order(keys, strata, seed=3)
    assert order != stratified_order(keys, strata, seed=4)
    for length in (10, 37, 250, 999):
        counts = Counter(strata[i] for i in order[:length])
        for stratum, share in ((("a", 0), 0.6), (("b", 0), 0.3), (("b", 1), 0.1)):
            assert abs(counts[stratum] - share * length) <= 1.0 + 1e-9, (length, stratum)
    shuffled = list(reversed(range(1000)))  # the same samples given in another order: the same sequence of keys
    again = stratified_order([keys[i] for i in shuffled], [strata[i] for i in shuffled], seed=3)
    assert [keys[shuffled[i]] for i in again] == [keys[i] for i in order]
    with pytest.raises(ValueError, match="strata"):
        stratified_order([1, 2], ["a"], seed=0)


def _plan():
    return RunPlan(
        "config.yaml",
        (
            PlannedCondition("clean"),
            PlannedCondition("night@1", "night", 1.0),
            PlannedCondition("pgd@0.1", "pgd", 0.1, True),
        ),
        {"site": ("s0", "s1")},
    )


def _policy(*rules):
    return policy_from_dict({"version": 1, "name": "p", "rules": list(rules)}, source="p.yaml")


def test_stop_targets_say_what_each_condition_waits_for():
    policy = _policy(
        {"id": "acc", "condition": "clean", "metric": "accuracy", "judge": "ci_lower", "min": 0.8},
        {"id": "grp", "condition": "clean", "attribute": "site", "value": "s1", "metric": "accuracy", "min": 0.7},
        {
            "id": "gap",
            "condition": "night@*",
            "attribute": "site",
            "aggregate": "gap",
            "metric": "accuracy",
            "max": 0.1,
        },
        {"id": "soft", "condition": "pgd@*", "metric": "ece", "max": 0.1, "blocking": False},
        {"id": "drop", "section": "robustness", "entry": "night@1", "metric": "drop", "max": 0.5},
        {"id": "size", "section": "dataset", "metric": "num_samples", "min": 10},
    )
    records = stop_targets(policy, _plan())
    decidable = [(r["condition"], r["rule"], r["attribute"]) for r in records if "full" not in r]
    assert decidable == [("clean", "acc", None), ("clean", "grp", "site")]
    full = {r["condition"]: r["full"] for r in records if "full" in r}
    assert "gap of accuracy across groups" in full["night@1"] or "robustness" in full["night@1"]
    assert "reads section 'robustness'" in full["clean"] and "pgd@0.1" in full  # the robustness section reads all


def _stats(correct: int, n: int, slots: int = 1) -> AuditStats:
    stats = AuditStats(num_classes=2, num_slots=slots, n_bootstrap=0)
    right = torch.zeros(n, dtype=torch.bool)
    right[:correct] = True
    probs = torch.where(right[:, None], torch.tensor([0.9, 0.1]), torch.tensor([0.1, 0.9])).double()
    stats.update(probs, torch.zeros(n, dtype=torch.long), torch.zeros(n, 1, dtype=torch.long), torch.arange(n))
    return stats


def _monitor(records, *, conditions=(("clean", False),), min_samples=50, hold_clean=False):
    table = SampleTable(Path("x"), ["a"], [0], {})
    return StopMonitor(
        records,
        conditions=list(conditions),
        available={cid: 10_000 for cid, _ in conditions},
        layout=build_layout(table, []),
        slot_sizes=[10_000],
        min_samples=min_samples,
        min_group_size=30,
        hold_clean=hold_clean,
    )


RULE = {
    "condition": "clean",
    "rule": "acc",
    "metric": "accuracy",
    "attribute": None,
    "value": None,
    "aggregate": None,
    "op": "min",
    "threshold": 0.8,
    "judge": "ci_lower",
    "min_samples": None,
}


def test_a_condition_stops_once_its_rules_are_decided_and_says_why():
    monitor = _monitor([RULE])
    monitor.after_batch({"clean": _stats(85, 100)})
    assert monitor.active("clean")  # 0.85 on 100 samples decides nothing yet
    monitor.after_batch({"clean": _stats(950, 1000)})
    assert not monitor.active("clean") and monitor.all_stopped()
    record = monitor.summary("clean", 1000)
    (decision,) = record["decisions"]
    assert decision["decision"] == "pass" and decision["n"] == 1000 and 0.8 < decision["bound"] < 0.95
    assert record["stopped"] and "decided by an anytime-valid test (the last after 1000 samples)" in record["reason"]
    failing = _monitor([RULE])
    failing.after_batch({"clean": _stats(600, 1000)})
    assert failing.summary("clean", 1000)["decisions"][0]["decision"] == "fail"


def test_conditions_without_blocking_rules_stop_at_the_minimum_and_undecidable_ones_run_on():
    monitor = _monitor(
        [{"condition": "night@1", "full": "rule 'gap' needs every sample"}],
        conditions=(("clean", False), ("night@1", False)),
        min_samples=200,
    )
    monitor.after_batch({"clean": _stats(100, 150), "night@1": _stats(100, 150)})
    assert monitor.active("clean") and monitor.active("night@1")
    monitor.after_batch({"clean": _stats(150, 200), "night@1": _stats(150, 200)})
    assert not monitor.active("clean") and monitor.active("night@1")
    assert "no blocking rule reads it" in monitor.summary("clean", 200)["reason"]
    assert monitor.summary("night@1", 10_000)["reason"] == "ran to the end: rule 'gap' needs every sample"


def test_clean_is_held_while_an_attack_runs_on_the_subset():
    monitor = _monitor([], conditions=(("clean", False), ("pgd@0.1", True)), hold_clean=True)
    monitor.after_batch({"clean": _stats(90, 100), "pgd@0.1": _stats(10, 40)})
    assert monitor.active("clean") and monitor.active("pgd@0.1")
    monitor.after_batch({"clean": _stats(90, 100), "pgd@0.1": _stats(10, 60)})
    assert not monitor.active("pgd@0.1") and not monitor.active("clean")


def _run(root: Path, *, early_stop: bool, policy: str) -> dict:
    (root / "policy.yaml").write_text(policy)
    cfg = coded.config(
        root,
        policy="policy.yaml",
        early_stop=early_stop,
        stressors="  - {name: night, severities: [3]}\n",
        batch_size=64,
    )
    out = root / ("early" if early_stop else "full")
    result = CliRunner().invoke(main, ["run", str(cfg), "--out", str(out), "--quiet"])
    assert result.exit_code in (0, 1), result.output
    return json.loads((out / "results.json").read_text()) | {"_out": str(out)}


POLICY = """\
version: 1
name: es
rules:
  - {id: clean-accuracy, condition: clean, metric: accuracy, judge: ci_lower, min: 0.80}
  - {id: night-accuracy, condition: "night@*", metric: accuracy, min: 0.5, blocking: false}
"""


@pytest.mark.slow
def test_early_stopping_run_uses_fewer_images_and_reaches_the_same_verdict(tmp_path):
    coded.write_npz(tmp_path / "data.npz", 3000, 0.92)
    coded.save_model(tmp_path / "model.pt")
    full = _run(tmp_path, early_stop=False, policy=POLICY)
    early = _run(tmp_path, early_stop=True, policy=POLICY)
    assert early["policy"]["verdict"] == full["policy"]["verdict"] == "pass"
    assert early["evaluation"]["early_stop"] is True and full["evaluation"]["early_stop"] is False
    clean = early["conditions"][0]
    stop = clean["early_stop"]
    assert stop["stopped"] and stop["samples_used"] == clean["metrics"]["n"] < 3000
    assert stop["decisions"][0]["rule"] == "clean-accuracy" and stop["decisions"][0]["decision"] == "pass"
    rule = early["policy"]["rules"][0]
    assert rule["decided_early"] == stop["decisions"][0]["n"] and "anytime-valid test" in rule["message"]
    night = early["conditions"][1]["early_stop"]
    assert night["stopped"] and 200 <= night["samples_used"] < 264 and "no blocking rule" in night["reason"]
    with open(Path(early["_out"]) / "predictions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    ids = [int(r["sample_id"]) for r in rows if r["condition"] == "clean"]
    assert ids == sorted(ids) and len(ids) == stop["samples_used"]  # dataset order, evaluated rows only
    assert len(rows) == stop["samples_used"] + night["samples_used"]


@pytest.mark.slow
def test_a_blocking_gap_rule_keeps_its_condition_running_and_a_clear_failure_stops_early(tmp_path):
    coded.write_npz(tmp_path / "data.npz", 2000, 0.6)
    coded.save_model(tmp_path / "model.pt")
    policy = POLICY + "  - {id: gap, condition: clean, attribute: site, aggregate: gap, metric: accuracy, max: 0.1}\n"
    early = _run(tmp_path, early_stop=True, policy=policy)
    clean = early["conditions"][0]
    assert early["policy"]["verdict"] == "fail" and clean["metrics"]["n"] == 2000
    assert clean["early_stop"]["reason"].startswith("ran to the end: rule 'gap' judges the gap of accuracy")
    assert clean["early_stop"]["decisions"][0]["decision"] == "fail"


def test_early_stop_is_refused_under_torchrun():
    from types import SimpleNamespace

    from audit.contract.errors import AuditError
    from audit.runner import _early_stop

    with pytest.raises(AuditError, match="evaluation.early_stop needs a single process"):
        _early_stop(SimpleNamespace(world=2), None, None, [])


def test_sort_rows_puts_rows_back_in_dataset_order_in_chunks(tmp_path):
    from audit.evaluation.early_stop import sort_rows

    rows = [[str(i), f"s{i}", cond] for i in (7, 3, 9, 0, 3, 7, 1) for cond in ("night@1", "clean")][:11]
    path = tmp_path / "part.csv"
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    order = {"clean": 0, "night@1": 1}
    sort_rows(path, key=lambda r: (int(r[0]), order[r[2]]), chunk=3)
    with open(path, newline="") as fh:
        back = list(csv.reader(fh))
    assert back == sorted(rows, key=lambda r: (int(r[0]), order[r[2]]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["part.csv"]  # no chunk file left behind
