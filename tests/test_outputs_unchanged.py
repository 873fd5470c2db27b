"""The demo run writes what it wrote before: same predictions, same results, on any CPU.

The reference (``tests/data/demo_outputs_reference.json.gz``) was recorded by
``scripts/make_output_reference.py`` from a ``cvaudit demo`` run of the revision it names. This test
compares the session's demo run (the ``demo_run`` fixture) with it:

- ``predictions.csv``, ``governance.csv`` and ``breaking_points.csv``: byte for byte on the machine
  that recorded the reference; on another CPU, row for row with float fields equal within
  :data:`make_output_reference.FLOAT_TOLERANCE` and other fields equal in all but a few rows
  (:func:`make_output_reference.compare_csv`: torch's CPU kernels round differently, and an attack
  on a sample at its decision boundary may end on the other side);
- results.json: every key of the reference present with an equal value (numbers within the same
  tolerance), after :func:`make_output_reference.normalise` (run times, paths, the TorchScript zip's
  digest, versions); keys the reference lacks are new keys and are not compared; a policy rule the
  reference lacks (a new rule of the built-in policy) is left out, and so are the policy's digest
  and rule counts, which a new rule changes.

The demo's weights are shipped (``audit/demo_weights``), not trained per machine, and its images
are byte-identical everywhere (``audit.demo``).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from make_output_reference import CSV_FILES, REFERENCE, attacked_conditions, compare_csv, compare_json, normalise

pytestmark = pytest.mark.slow


def _without_new_rules(policy: dict[str, Any], known: set[str]) -> dict[str, Any]:
    out = {k: v for k, v in policy.items() if k not in ("sha256", "counts")}
    out["rules"] = [r for r in policy.get("rules", []) if r.get("id") in known]
    return out


def test_demo_outputs_match_the_reference(demo_run):
    reference = json.loads(gzip.decompress(REFERENCE.read_bytes()))
    attacked = attacked_conditions(reference["results"])
    for name in CSV_FILES:
        data = (demo_run / name).read_bytes()
        if hashlib.sha256(data).hexdigest() != reference["sha256"][name]:
            text = data.decode("utf-8")
            differences = compare_csv(name, reference["csv"][name], text, attacked)
            assert not differences, f"{name} differs from the output of {reference['commit']}: {differences[:12]}"
    ref = reference["results"]
    new = normalise(json.loads((demo_run / "results.json").read_text(encoding="utf-8")))
    known = {r["id"] for r in ref["policy"]["rules"]}
    ref["policy"], new["policy"] = _without_new_rules(ref["policy"], known), _without_new_rules(new["policy"], known)
    # a newer minor schema adds keys and leaves a classifier's keys as they were (1.3: task, detection)
    old_major, old_minor = (int(x) for x in ref.pop("schema_version").split("."))
    major, minor = (int(x) for x in new.pop("schema_version").split("."))
    assert major == old_major and minor >= old_minor, (ref, new)
    assert new.get("task", "classification") == "classification" and "detection" not in new
    differences = compare_json(ref, new, attacked=attacked)
    assert not differences, differences[:20]
    assert new["dataset"]["skipped_share"] == 0.0 and new["provenance"]["threads"] >= 1  # the new keys are there


def test_the_comparison_fails_on_a_changed_prediction_and_a_moved_number():
    """The tolerances cannot hide a real change: a flipped prediction, a moved probability or accuracy."""
    header = "sample_id,condition,prediction,confidence\n"
    ref = header + "".join(f"s{i},clean,{i % 3},0.{5 + i % 4}00000001\n" for i in range(50))
    ref += "".join(f"s{i},pgd@0.1,{i % 3},0.{5 + i % 4}00000001\n" for i in range(50))
    attacked = {"pgd@0.1"}
    assert compare_csv("p.csv", ref, ref.replace("0.500000001", "0.500000002"), attacked) == []  # rounding
    assert compare_csv("p.csv", ref, ref.replace("s4,clean,1,", "s4,clean,2,"), attacked)  # a clean prediction
    assert compare_csv("p.csv", ref, ref.replace("clean,0,0.500000001", "clean,0,0.5005"), attacked)  # a number
    assert compare_csv("p.csv", ref, ref.replace("s4,pgd@0.1,1,", "s4,pgd@0.1,2,"), attacked) == []  # 1 of 50
    flipped = ref.replace("s4,pgd@0.1,1,", "s4,pgd@0.1,2,").replace("s7,pgd@0.1,1,", "s7,pgd@0.1,0,")
    assert compare_csv("p.csv", ref, flipped, attacked)  # 2 of 50 attacked rows: more than 2 %
    assert compare_json({"accuracy": 0.945}, {"accuracy": 0.9433}) and not compare_json({"a": 0.5}, {"a": 0.5 + 1e-9})
    bins = {"bins": [{"n": 2, "accuracy": 0.5}, {"n": 1, "accuracy": 1.0}]}
    attack = {"id": "pgd@0.1", "metrics": {"accuracy": 0.145, "ece": 0.8, "n": 200}, "reliability": bins}
    moved_bins = {"bins": [{"n": 3, "accuracy": 1.0}, {"n": 0, "accuracy": None}]}
    moved = {"id": "pgd@0.1", "metrics": {"accuracy": 0.15, "ece": 0.81, "n": 200}, "reliability": moved_bins}
    assert compare_json(attack, moved, attacked=attacked) == [] and compare_json(attack, moved)
    for metrics in (
        {"accuracy": 0.19, "ece": 0.8, "n": 200},  # 9 samples of 200 changed their outcome: more than 3
        {"accuracy": 0.145, "ece": 0.8, "n": 203},  # the condition's sample count is exact
        {"accuracy": 0.145, "ece": None, "n": 200},  # a metric that disappeared
    ):
        assert compare_json(attack, {**moved, "metrics": metrics}, attacked=attacked), metrics
