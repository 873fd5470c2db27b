"""Watched slices on detection runs (config ``slices.watch`` with ``task: detection``).

- the measurement (:func:`audit.evaluation.measure_watched_detection`) against a hand-written numpy reference of the
  ratio estimator and its cluster-robust (by image) variance;
- the config and policy checks (an attribute a detection run cannot have, ``slices.search``, ``gap.accuracy``);
- end to end through the CLI: ``cvaudit slices RUN --promote 1`` on a real detection run, the printed rule and
  watch in a second run, its results.json ``slices`` against the objects of objects.csv, and the gate's exit code.
"""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from audit.contract.slices import WatchedSlice
from audit.evaluation import measure_watched_detection
from audit.evaluation.slices.run_folder import RunTable

Z95 = 1.959963984540054


def _reference_recall(missed: np.ndarray, image: np.ndarray, inside: np.ndarray) -> tuple[float, list[float]]:
    """Recall of the objects ``inside`` and its 95 % interval, written out independently: the ratio P = misses /
    objects, the sandwich variance over every image of the table (G/(G-1) sum_i ((m_i - P n_i)/N)^2) floored at
    the Agresti-Caffo-style p~(1-p~)/(N+2), clipped to [0, 1]."""
    images = sorted(set(image.tolist()))
    total_n = float(inside.sum())
    p = missed[inside].sum() / total_n
    terms = []
    for g in images:
        here = (image == g) & inside
        terms.append((missed[here].sum() - p * here.sum()) / total_n)
    big_g = len(images)
    v = big_g / (big_g - 1) * sum(t * t for t in terms)
    tilde = (missed[inside].sum() + 1) / (total_n + 2)
    se = math.sqrt(max(v, tilde * (1 - tilde) / (total_n + 2)))
    return 1 - p, [max(0.0, 1 - p - Z95 * se), min(1.0, 1 - p + Z95 * se)]


def _table(seed: int = 3, images: int = 60) -> RunTable:
    rng = np.random.default_rng(seed)
    image, missed, size, cx, camera = [], [], [], [], []
    for r in range(images):
        effect = rng.normal(0, 1)
        for _ in range(int(rng.integers(1, 6))):
            s = str(rng.choice(["small", "medium", "large"]))
            x = float(rng.random())
            logit = -1.5 + effect + (2.0 if s == "small" and x < 0.4 else 0.0)
            image.append(100 + 3 * r)  # image_row need not start at 0 nor be contiguous
            missed.append(float(rng.random() < 1 / (1 + math.exp(-logit))))
            size.append(s)
            cx.append(x)
            camera.append("AB"[r % 2])
    return RunTable(
        ids=[str(i) for i in range(len(missed))],
        badness={"recall": np.array(missed)},
        attributes={"size": np.array(size), "center_x": np.array(cx), "camera": np.array(camera)},
        manifest_attributes=["camera"],
        properties=[],
        properties_file=False,
        task="detection",
        clusters=np.array(image, dtype=np.int64),
    )


def test_watched_detection_slice_equals_a_hand_written_reference():
    table = _table()
    watch = [
        WatchedSlice.model_validate(
            {
                "id": "small-left",
                "all": [{"attribute": "size", "equals": "small"}, {"attribute": "center_x", "max": 0.4}],
            }
        ),
        WatchedSlice.model_validate({"id": "cam-b", "all": [{"attribute": "camera", "equals": "B"}]}),
    ]
    measured = measure_watched_detection(watch, table, min_group_size=5)
    missed, image = table.badness["recall"], table.clusters
    masks = [
        (table.attributes["size"] == "small") & (table.attributes["center_x"] < 0.4),
        table.attributes["camera"] == "B",
    ]
    for got, inside in zip(measured, masks, strict=True):
        value, ci = _reference_recall(missed, image, inside)
        rest_value, rest_ci = _reference_recall(missed, image, ~inside)
        assert got["n"] == int(inside.sum()) and got["rest"]["n"] == int((~inside).sum())
        assert got["metrics"]["recall"] == pytest.approx(value, abs=1e-12)
        assert got["metrics"]["recall_ci"] == pytest.approx(ci, abs=1e-12)
        assert got["rest"]["metrics"]["recall"] == pytest.approx(rest_value, abs=1e-12)
        assert got["rest"]["metrics"]["recall_ci"] == pytest.approx(rest_ci, abs=1e-12)
        assert got["gap"] == {"recall": pytest.approx(rest_value - value, abs=1e-12)}
        assert got["insufficient_data"] is False
    # the planted slice is worse than the rest, and its interval is wider than the naive binomial one
    assert measured[0]["gap"]["recall"] > 0.2
    n0, r0 = measured[0]["n"], measured[0]["metrics"]["recall"]
    naive = Z95 * math.sqrt(r0 * (1 - r0) / n0)
    ci0 = measured[0]["metrics"]["recall_ci"]
    assert (ci0[1] - ci0[0]) / 2 > naive * 0.9


def test_insufficient_data_by_objects_and_by_images():
    table = _table(images=60)
    few_objects = WatchedSlice.model_validate({"id": "b", "all": [{"attribute": "camera", "equals": "B"}]})
    (entry,) = measure_watched_detection([few_objects], table, min_group_size=10_000)
    assert entry["insufficient_data"] is True and entry["metrics"]["recall"] is not None
    # a slice inside fewer than 10 images (the cluster-robust test's least) is insufficient whatever its objects
    cut = float(np.sort(np.unique(table.clusters))[8])  # images with image_row <= the 9th smallest
    table.attributes["row"] = table.clusters.astype(float)
    nine = WatchedSlice.model_validate({"id": "nine", "all": [{"attribute": "row", "max": cut + 0.5}]})
    (entry,) = measure_watched_detection([nine], table, min_group_size=2)
    assert entry["n"] >= 9 and entry["insufficient_data"] is True
    empty = WatchedSlice.model_validate({"id": "none", "all": [{"attribute": "size", "equals": "huge"}]})
    (entry,) = measure_watched_detection([empty], table, min_group_size=2)
    assert entry["n"] == 0 and entry["metrics"] == {"recall": None, "recall_ci": None}
    assert entry["gap"] == {"recall": None} and entry["insufficient_data"] is True
    # the rest is the other side of the comparison: a slice of all but 9 images is judged on those 9 alone
    all_but_nine = WatchedSlice.model_validate({"id": "most", "all": [{"attribute": "row", "min": cut + 0.5}]})
    (entry,) = measure_watched_detection([all_but_nine], table, min_group_size=2)
    assert entry["rest"]["n"] >= 9 and entry["gap"]["recall"] is not None and entry["insufficient_data"] is True
    (entry,) = measure_watched_detection([few_objects], table, min_group_size=2)
    assert entry["insufficient_data"] is False  # both sides large: judged


# ---- config and policy checks -----------------------------------------------------------------------------------


def _detection_config(tmp_path: Path, **overrides) -> Path:
    from detection_fixtures import write_detection_config

    return write_detection_config(tmp_path, tmp_path / "detector.pt", **overrides)


def test_detection_watch_accepts_object_columns_and_refuses_others(tmp_path):
    from audit.contract.config import load_config
    from audit.contract.errors import CvauditError

    ok = {
        "watch": [
            {
                "id": "s",
                "all": [
                    {"attribute": "class", "equals": "red"},
                    {"attribute": "object.occluded", "equals": "1"},
                    {"attribute": "center_distance", "min": 0.5},
                    {"attribute": "brightness", "max": 0.3},
                ],
            }
        ]
    }
    cfg = load_config(_detection_config(tmp_path, slices=ok))
    assert [p.attribute for p in cfg.slices.watch[0].all][1] == "object.occluded"
    bad = {"watch": [{"id": "s", "all": [{"attribute": "size", "equals": "small"}, {"attribute": "object.truncated"}]}]}
    bad["watch"][0]["all"][1]["equals"] = "1"
    with pytest.raises(CvauditError, match=r"slices\.watch\[0\]\.all\[1\]\.attribute: 'object\.truncated'") as err:
        load_config(_detection_config(tmp_path, slices=bad))
    assert "\n" not in str(err.value) and "detection run" in str(err.value)


@pytest.mark.parametrize("name", ["size", "center_x", "brightness", "object.occluded"])
def test_a_manifest_attribute_named_like_an_object_column_is_refused_before_any_image(tmp_path, name):
    """The watched slices are measured on one table of columns (cvaudit slices's): a manifest attribute with the name
    of an object column or an image property cannot be told apart, so the config is refused, not the run's end."""
    from audit.contract.config import load_config
    from audit.contract.errors import CvauditError

    watch = {"watch": [{"id": "s", "all": [{"attribute": "class", "equals": "red"}]}]}
    path = _detection_config(tmp_path, slices=watch, data={"attributes": [name]})
    with pytest.raises(CvauditError, match=rf"data\.attributes: '{name}' is also the name of an object column") as err:
        load_config(path)
    assert "\n" not in str(err.value)


def _detection_plan(watched: frozenset[str]):
    from audit.contract.plan import PlannedCondition, RunPlan
    from audit.contract.results import Results

    sections = {k for k, f in Results.model_fields.items() if f.is_required()} | {"task", "detection", "slices"}
    return RunPlan(
        source="config.yaml",
        conditions=(PlannedCondition("clean", None, 0.0, False, False),),
        sections=frozenset(sections),
        task="detection",
        slices=watched,
    )


@pytest.mark.parametrize(
    ("metric", "problem"),
    [
        ("gap.recall", None),
        ("metrics.recall", None),
        ("rest.metrics.recall_ci", None),
        ("n", None),
        ("gap.accuracy", "a detection run's watched slice has no 'gap.accuracy' (it measures gap.recall)"),
        ("metrics.brier", "a detection run's watched slice has no 'metrics.brier'"),
    ],
)
def test_policy_validation_of_a_detection_watched_slice_rule(metric, problem):
    from policies import PolicyError
    from policies.loader import policy_from_dict
    from policies.validate import validate_policy

    rule = {"kind": "metric", "id": "r", "section": "slices", "entry": "s1", "metric": metric, "max": 0.1}
    policy = policy_from_dict({"version": 1, "name": "p", "rules": [rule]})
    if problem is None:
        validate_policy(policy, _detection_plan(frozenset({"s1"})))
    else:
        with pytest.raises(PolicyError, match=problem.replace("(", r"\(").replace(")", r"\)")):
            validate_policy(policy, _detection_plan(frozenset({"s1"})))
    with pytest.raises(PolicyError, match="not watched by this run"):
        validate_policy(policy, _detection_plan(frozenset({"other"})))


# ---- end to end through the CLI --------------------------------------------------------------------------------


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "audit", *args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )


POLICY_HEAD = "version: 1\nname: detection-watch\n"


def test_promoted_detection_slice_is_measured_and_gated(tmp_path):
    from detection_fixtures import make_detection_dataset, save_detector

    make_detection_dataset(tmp_path, n=60)  # ColourBoxNet misses every object of camera B (odd images)
    save_detector(tmp_path / "detector.pt")
    (tmp_path / "policy.yaml").write_text(
        POLICY_HEAD + "rules:\n  - id: clean-map\n    condition: clean\n    metric: map\n    min: 0.0\n"
    )
    base = {"stressors": [], "evaluation": {"n_bootstrap": 0, "min_group_size": 5}}
    cfg = _detection_config(tmp_path, policy="policy.yaml", **base)
    first = tmp_path / "first"
    done = _cli("run", str(cfg), "--out", str(first), "--quiet", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    found = _cli(
        "slices", str(first), "--out", str(tmp_path / "s.csv"), "--min-size", "10", "--depth", "1", cwd=tmp_path
    )
    assert found.returncode == 0, found.stderr
    with (tmp_path / "s.csv").open(newline="") as f:
        row = next(csv.DictReader(f))
    assert row["metric"] == "recall" and row["definition"] == "camera = B"
    promoted = _cli("slices", str(first), "--out", str(tmp_path / "s.csv"), "--promote", "1", cwd=tmp_path)
    assert promoted.returncode == 0, promoted.stderr
    snippet = yaml.safe_load(promoted.stdout)
    (rule,) = snippet["rules"]
    assert rule["section"] == "slices" and rule["entry"] == row["id"] and rule["metric"] == "gap.recall"
    assert rule["max"] == float(row["tolerance"]) and rule["min_samples"] == int(row["n_confirm"])
    assert snippet["slices"]["watch"][0]["id"] == row["id"]

    # the slice recomputed on the whole run from objects.csv (clean objects present), by hand
    with (first / "objects.csv").open(newline="") as f:
        objects = [r for r in csv.DictReader(f) if r["condition"] == "clean" and r["present"] == "true"]
    with (first / "detections.csv").open(newline="") as f:
        camera = {r["sample_id"]: r["camera"] for r in csv.DictReader(f) if r["condition"] == "clean"}
    missed = np.array([r["found"] == "false" for r in objects], dtype=float)
    image = np.array([int(r["image_row"]) for r in objects])
    inside = np.array([camera[r["sample_id"]] == "B" for r in objects])
    value, ci = _reference_recall(missed, image, inside)
    rest_value, _ = _reference_recall(missed, image, ~inside)
    assert float(row["value"]) == value == 0.0  # slices.csv's confirmation half: the same recall (every B missed)

    for max_gap, code in ((rule["max"], 1), (1.0, 0)):
        (tmp_path / "policy2.yaml").write_text(
            POLICY_HEAD + yaml.safe_dump({"rules": [{**rule, "max": max_gap}]}, sort_keys=False)
        )
        cfg2 = _detection_config(tmp_path, policy="policy2.yaml", slices=snippet["slices"], **base)
        out = tmp_path / f"second-{code}"
        again = _cli("run", str(cfg2), "--out", str(out), "--quiet", cwd=tmp_path)
        assert again.returncode == code, again.stderr
        results = json.loads((out / "results.json").read_text())
        (watched,) = results["slices"]
        assert watched["id"] == row["id"] and watched["n"] == int(inside.sum()) == int(row["n"])
        assert watched["metrics"]["recall"] == pytest.approx(value, abs=1e-12)
        assert watched["metrics"]["recall_ci"] == pytest.approx(ci, abs=1e-12)
        assert watched["rest"]["metrics"]["recall"] == pytest.approx(rest_value, abs=1e-12)
        assert watched["gap"]["recall"] == pytest.approx(rest_value - value, abs=1e-12)
        assert watched["insufficient_data"] is False
        judged = {r["id"]: r for r in results["policy"]["rules"]}[rule["id"]]
        assert judged["status"] == ("fail" if code else "pass"), judged
        html = (out / "report.html").read_text()
        assert "recall (slice)" in html and "accuracy (slice)" not in html
        assert f"{row['id']}: camera = B" in html


def test_a_watched_attribute_a_detection_run_cannot_have_is_exit_2(tmp_path):
    from detection_fixtures import make_detection_dataset, save_detector

    make_detection_dataset(tmp_path, n=4)
    save_detector(tmp_path / "detector.pt")
    slices = {"watch": [{"id": "w", "all": [{"attribute": "weather", "equals": "rain"}]}]}
    cfg = _detection_config(tmp_path, slices=slices)
    out = tmp_path / "out"
    proc = _cli("run", str(cfg), "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "slices.watch[0].all[0].attribute: 'weather'" in lines[0], proc.stderr
    assert not (out / "results.json").exists()


def test_slices_search_in_a_detection_config_is_one_line_exit_2(tmp_path):
    from detection_fixtures import make_detection_dataset, save_detector

    make_detection_dataset(tmp_path, n=4)
    save_detector(tmp_path / "detector.pt")
    cfg = _detection_config(tmp_path, slices={"search": "on"})
    proc = _cli("run", str(cfg), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "slices.search is not supported with task: detection" in lines[0], proc.stderr
    assert "cvaudit slices RUN_DIR" in lines[0]
