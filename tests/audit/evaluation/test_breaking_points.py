"""Per-sample breaking points: derivation, summaries (checked against an independent count), refinement."""

from __future__ import annotations

import csv
import json
import math
import random
from fractions import Fraction
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from cvaudit_fixtures import ColourNet, write_config

import stressors
from audit.cli import main
from audit.contract.config import BreakingPointsConfig
from audit.evaluation.breaking_points import (
    CSV_COLUMNS,
    _bisect,
    _Job,
    compute_breaking_points,
    median_interval_ranks,
    tracks_of,
)
from audit.evaluation.data import AuditDataset, read_samples, sample_keys_of

LEVELS = (1.0, 2.0, 3.0)
CONDITIONS = [{"id": "clean", "stressor": None, "severity": 0, "model_aware": False}] + [
    {"id": f"fog@{int(s)}", "stressor": "fog", "severity": s, "model_aware": False} for s in LEVELS
]


def exact_ranks(n: int) -> tuple[int, int] | None:
    """The order-statistic interval of the median with exact rational binomial sums."""
    best = None
    for low in range(1, n + 1):
        tail = sum(Fraction(math.comb(n, i), 2**n) for i in range(low))
        if tail <= Fraction(1, 40):
            best = low
        else:
            break
    return None if best is None else (best, n - best + 1)


def test_median_interval_ranks_match_the_exact_binomial():
    for n in range(1, 160):
        assert median_interval_ranks(n) == exact_ranks(n), n


def rows_of(samples: list[tuple[str, int, list[int], str]]) -> list[list[str]]:
    """predictions.csv rows: (sample id, label, [clean prediction, level predictions...], camera)."""
    out = []
    for sid, label, preds, camera in samples:
        for cond, pred in zip(CONDITIONS, preds):
            sev = "" if cond["stressor"] is None else str(int(cond["severity"]))
            out.append(
                [sid, cond["id"], cond["stressor"] or "", sev, str(label), str(pred), "0.9", "0.5", "0.5", camera]
            )
    return out


def compute(tmp_path: Path, rows: list[list[str]], min_group_size: int = 1):
    out = tmp_path / "bp.csv"
    keys = compute_breaking_points(
        rows=lambda: iter(rows),
        conditions=CONDITIONS,
        attributes=["camera"],
        groupings=[("camera", ("camera",))],
        min_group_size=min_group_size,
        out_csv=out,
    )
    with open(out, newline="") as fh:
        return keys, list(csv.DictReader(fh))


def test_states_breaking_points_and_flips(tmp_path):
    samples = [
        ("a", 1, [1, 1, 0, 0], "A"),  # breaks at 2
        ("b", 1, [1, 1, 1, 1], "A"),  # never
        ("c", 1, [0, 1, 1, 1], "B"),  # wrong on clean
        ("d", 2, [2, 0, 2, 0], "B"),  # breaks at 1, flips 3 times
    ]
    keys, rows = compute(tmp_path, rows_of(samples))
    assert list(rows[0]) == [*CSV_COLUMNS, "camera"]
    got = {r["sample_id"]: (r["state"], r["breaking_point"], r["survived"], r["flips"]) for r in rows}
    assert got == {
        "a": ("broken", "2.0", "1.0", "1"),
        "b": ("never", "", "3.0", "0"),
        "c": ("wrong_on_clean", "", "", "1"),
        "d": ("broken", "1.0", "0.0", "3"),
    }
    overall = keys["breaking_points"][0]
    assert (overall["id"], overall["n"], overall["n_total"], overall["wrong_on_clean"]) == ("fog", 3, 4, 1)
    assert [p["n_surviving"] for p in overall["survival"]] == [2, 1, 1]
    assert overall["median"] == 2.0 and overall["median_censored"] is False and overall["median_ci"] is None


def test_summaries_match_an_independent_count(tmp_path):
    rng = random.Random(7)
    samples = []
    for i in range(240):
        label = rng.randrange(3)
        camera = "A" if i % 3 else "B"
        hazard = 0.25 if camera == "A" else 0.5
        preds = [label if rng.random() > 0.1 else (label + 1) % 3]
        preds += [label if rng.random() > hazard else (label + 2) % 3 for _ in LEVELS]
        samples.append((f"s{i:03d}", label, preds, camera))
    keys, _ = compute(tmp_path, rows_of(samples), min_group_size=30)
    for entry in keys["breaking_points"]:
        chosen = [s for s in samples if entry["value"] is None or s[3] == entry["value"]]
        right = [s for s in chosen if s[2][0] == s[1]]
        points = sorted(next((lv for lv, p in zip(LEVELS, s[2][1:]) if p != s[1]), math.inf) for s in right)
        assert entry["n"] == len(right) and entry["wrong_on_clean"] == len(chosen) - len(right)
        assert [p["surviving"] for p in entry["survival"]] == pytest.approx(
            [sum(v > lv for v in points) / len(points) for lv in LEVELS]
        )
        lower_median = points[(len(points) + 1) // 2 - 1]
        assert entry["median"] == (LEVELS[-1] if math.isinf(lower_median) else lower_median)
        assert entry["median_censored"] is math.isinf(lower_median)
        lo, hi = exact_ranks(len(points))
        expected = [None if math.isinf(points[r - 1]) else points[r - 1] for r in (lo, hi)]
        assert entry["median_ci"] == expected
    (disparity,) = keys["breaking_point_disparity"]
    by_value = {e["value"]: e for e in keys["breaking_points"] if e["value"] is not None}
    gaps = [abs(a["surviving"] - b["surviving"]) for a, b in zip(by_value["A"]["survival"], by_value["B"]["survival"])]
    assert disparity["disparity"] == pytest.approx(max(gaps)) and disparity["worst_group"] == "B"


def test_small_groups_are_flagged_and_left_out_of_the_disparity(tmp_path):
    samples = [(f"s{i}", 0, [0, 0, 1, 1], "A" if i < 40 else "B") for i in range(45)]
    keys, _ = compute(tmp_path, rows_of(samples), min_group_size=30)
    flags = {e["value"]: e["insufficient_data"] for e in keys["breaking_points"]}
    assert flags == {None: False, "A": False, "B": True}
    assert keys["breaking_point_disparity"][0]["excluded"] == ["B"]
    assert keys["breaking_point_disparity"][0]["disparity"] is None


def test_tracks_need_two_levels_and_skip_attack_probes():
    conditions = CONDITIONS + [
        {"id": "glare@3", "stressor": "glare", "severity": 3, "model_aware": False},
        {"id": "pgd@0", "stressor": "pgd", "severity": 0.0, "model_aware": True},
        {"id": "pgd@0.01", "stressor": "pgd", "severity": 0.01, "model_aware": True},
        {"id": "pgd@0.03", "stressor": "pgd", "severity": 0.03, "model_aware": True},
        {"id": "pgd@0.5", "stressor": "pgd", "severity": 0.5, "model_aware": True, "probe": True},
    ]
    tracks = {t.label: t for t in tracks_of(conditions)}
    assert set(tracks) == {"fog", "pgd"}
    assert tracks["pgd"].levels == (0.01, 0.03) and tracks["pgd"].measure == "epsilon"


def test_bisection_brackets_every_threshold():
    thresholds = [1.1, 1.5, 1.51, 1.99, 2.0]
    jobs = [_Job(i, 1.0, 2.0) for i in range(len(thresholds))]
    calls = []

    def correct_at(positions, value):
        calls.append(value)
        return torch.tensor([value < thresholds[jobs[k].index] for k in positions])

    _bisect(jobs, correct_at, resolution=0.125, max_steps=8)
    for job, t in zip(jobs, thresholds):
        assert job.lo < t <= job.hi and job.hi - job.lo <= 0.125 and job.steps == 3
    capped = [_Job(0, 0.0, 1.0)]
    _bisect(capped, lambda p, v: torch.tensor([v < 0.3]), resolution=1e-9, max_steps=4)
    assert capped[0].steps == 4 and capped[0].lo < 0.3 <= capped[0].hi


def run_cli(*args: str):
    return CliRunner().invoke(main, [*args], catch_exceptions=False)


def predicted(model, stressor, x, keys, severity: float) -> int:
    if severity == 0:
        return int(model(x).argmax())
    return int(model(stressor.apply(x, stressor.sample_params(keys, severity, seed=0, fractional=True))).argmax())


def test_refined_breaking_points_hold_when_checked_again(workspace):
    extra = "breaking_points: {stressors: [night], resolution: 0.25}\n"
    cfg = write_config(workspace, extra=extra, stressors="  - {name: night, severities: [1, 3, 5]}\n")
    out = workspace / "out"
    result = run_cli("run", str(cfg), "--out", str(out), "--quiet")
    assert result.exit_code == 0, result.output
    with open(out / "breaking_points.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    broken = [r for r in rows if r["state"] == "broken"]
    assert broken and all(r["method"] == "bisection" for r in broken)
    # independent re-check: the model is wrong at the breaking point and right just below it
    from audit.contract.config import load_config

    config = load_config(cfg)
    table = read_samples(config.data, class_names=config.model.class_names)
    keys = sample_keys_of(table)
    night = stressors.get("night")
    model = ColourNet()
    index = {sid: i for i, sid in enumerate(table.ids)}
    dataset = AuditDataset(table, config.model)
    for r in broken:
        i = index[r["sample_id"]]
        x = dataset[i]["image"][None]
        breaking, survived = float(r["breaking_point"]), float(r["survived"])
        assert 0 <= breaking - survived <= 0.25 or survived == 0.0

        assert predicted(model, night, x, keys[i : i + 1], breaking) != table.labels[i]
        assert predicted(model, night, x, keys[i : i + 1], survived) == table.labels[i]
    results = json.loads((out / "results.json").read_text())
    overall = next(e for e in results["breaking_points"] if e["id"] == "night")
    assert overall["method"] == "bisection" and overall["resolution"] == 0.25


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("breaking_points: {stressors: [fog]}\n", "breaking_points.stressors: 'fog' is not a stressor entry"),
        ("breaking_points: {stressors: [motion_blur]}\n", "does not support fractional severities"),
        ("breaking_points: {stressors: [night], resolution: 0}\n", "breaking_points.resolution"),
        ("breaking_points: {stressors: [night], step: 1}\n", "breaking_points.step: unknown key"),
    ],
    ids=["unknown-entry", "not-fractional", "zero-resolution", "unknown-key"],
)
def test_bad_refinement_settings_are_one_line_and_exit_2(workspace, extra, message):
    body = "  - {name: night, severities: [1, 3]}\n  - {name: motion_blur, severities: [1, 3]}\n"
    cfg = write_config(workspace, extra=extra, stressors=body)
    result = CliRunner().invoke(main, ["run", str(cfg), "--out", str(workspace / "out"), "--quiet"])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.output
    assert not (workspace / "out").exists()


def test_refinement_defaults():
    cfg = BreakingPointsConfig()
    assert (cfg.stressors, cfg.resolution, cfg.max_steps) == ([], 0.25, 8)
