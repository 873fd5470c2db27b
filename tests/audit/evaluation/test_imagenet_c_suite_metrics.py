"""The ImageNet-C summary (CE, relative CE, mCE; mPC, rPC) against a hand-written reference on fixed errors."""

from __future__ import annotations

import math
import random

import pytest

from audit.contract.config import BenchmarkConfig
from audit.contract.corruption_suite import ALEXNET_ERRORS, BENCHMARK, CORRUPTIONS, HELD_OUT
from audit.evaluation.corruption_benchmark import imagenet_c_summary
from tests.results_builder import typed_results

# The "Average" column of the README table (hendrycks/robustness, commit 76d93933): each row's mean over
# the five severities must equal it, which catches a mistyped severity value in ALEXNET_ERRORS.
PUBLISHED_AVERAGE = {
    "gaussian_noise": 0.886428,
    "shot_noise": 0.894468,
    "impulse_noise": 0.922640,
    "defocus_blur": 0.819880,
    "glass_blur": 0.826268,
    "motion_blur": 0.785948,
    "zoom_blur": 0.798360,
    "snow": 0.866816,
    "frost": 0.826572,
    "fog": 0.819324,
    "brightness": 0.564592,
    "contrast": 0.853204,
    "elastic_transform": 0.646056,
    "pixelate": 0.717840,
    "jpeg_compression": 0.606500,
    "speckle_noise": 0.845388,
    "gaussian_blur": 0.787108,
    "spatter": 0.717512,
    "saturate": 0.658248,
}


def test_alexnet_constants_match_the_published_averages():
    assert set(ALEXNET_ERRORS) == set(CORRUPTIONS) == set(PUBLISHED_AVERAGE)
    assert len(BENCHMARK) == 15 and len(HELD_OUT) == 4
    for name, errors in ALEXNET_ERRORS.items():
        assert sum(errors) / 5 == pytest.approx(PUBLISHED_AVERAGE[name], abs=1e-6), name


def _results(errors: dict[str, list[float]], clean_error: float, task: str = "classification"):
    conditions = [{"id": "clean", "stressor": None, "severity": 0, "value": 1.0 - clean_error}]
    for name, errs in errors.items():
        for s, e in enumerate(errs, start=1):
            conditions.append({"id": f"{name}@{s}", "stressor": name, "severity": s, "value": 1.0 - e})
    if task == "classification":
        return typed_results(
            {
                "conditions": [
                    {
                        "id": c["id"],
                        "stressor": c["stressor"],
                        "severity": c["severity"],
                        "model_aware": False,
                        "metrics": {"n": 100, "accuracy": c["value"]},
                    }
                    for c in conditions
                ]
            }
        )
    return typed_results(
        {
            "task": "detection",
            "detection": {
                "conditions": [
                    {
                        "id": c["id"],
                        "stressor": c["stressor"],
                        "severity": c["severity"],
                        "metrics": {"map": c["value"]},
                    }
                    for c in conditions
                ]
            },
        }
    )


def _draw(seed: int) -> tuple[dict[str, list[float]], float]:
    rng = random.Random(seed)
    return {name: [rng.uniform(0.05, 0.95) for _ in range(5)] for name in CORRUPTIONS}, rng.uniform(0.05, 0.4)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ce_and_mce_against_alexnet_equal_a_hand_written_reference(seed):
    errors, clean = _draw(seed)
    out = imagenet_c_summary(_results(errors, clean), BenchmarkConfig(), None)
    # reference: Hendrycks & Dietterich (2019), eq. for CE_c^f = (sum_s E_s,c^f) / (sum_s E_s,c^AlexNet)
    ref_ce = {}
    for name in CORRUPTIONS:
        num = 0.0
        den = 0.0
        for s in range(5):
            num += errors[name][s]
            den += ALEXNET_ERRORS[name][s]
        ref_ce[name] = num / den
    ref_mce = sum(ref_ce[n] for n in BENCHMARK) / 15
    ref_held = sum(ref_ce[n] for n in HELD_OUT) / 4
    by_name = {r.corruption: r for r in out.corruptions}
    for name in CORRUPTIONS:
        assert by_name[name].ce == pytest.approx(ref_ce[name], rel=1e-12)
        assert by_name[name].relative_ce is None  # AlexNet's clean error is not in the published table
        assert by_name[name].held_out == (name in HELD_OUT)
    assert out.mce == pytest.approx(ref_mce, rel=1e-12)
    assert out.held_out_mce == pytest.approx(ref_held, rel=1e-12)
    assert out.relative_mce is None and out.complete
    assert out.clean_error == pytest.approx(clean)


def test_relative_mce_against_a_baseline_run_equals_the_reference():
    errors, clean = _draw(3)
    base_errors, base_clean = _draw(4)
    bench = BenchmarkConfig(baseline="baseline/results.json")
    out = imagenet_c_summary(_results(errors, clean), bench, _results(base_errors, base_clean))
    rel = {}
    ce = {}
    for name in CORRUPTIONS:
        ce[name] = sum(errors[name]) / sum(base_errors[name])
        rel[name] = sum(e - clean for e in errors[name]) / sum(b - base_clean for b in base_errors[name])
    by_name = {r.corruption: r for r in out.corruptions}
    for name in CORRUPTIONS:
        assert by_name[name].ce == pytest.approx(ce[name], rel=1e-12)
        assert by_name[name].relative_ce == pytest.approx(rel[name], rel=1e-12)
    assert out.mce == pytest.approx(sum(ce[n] for n in BENCHMARK) / 15, rel=1e-12)
    assert out.relative_mce == pytest.approx(sum(rel[n] for n in BENCHMARK) / 15, rel=1e-12)
    assert out.held_out_relative_mce == pytest.approx(sum(rel[n] for n in HELD_OUT) / 4, rel=1e-12)
    assert out.baseline.kind == "results" and out.baseline.clean_error == pytest.approx(base_clean)


def test_the_same_model_as_its_own_baseline_has_mce_one():
    errors, clean = _draw(5)
    run = _results(errors, clean)
    out = imagenet_c_summary(run, BenchmarkConfig(baseline="b.json"), run)
    assert out.mce == pytest.approx(1.0) and out.relative_mce == pytest.approx(1.0)


def test_a_subset_of_corruptions_and_severities_is_not_the_complete_benchmark():
    errors, clean = _draw(6)
    sub = {n: errors[n] for n in ("gaussian_noise", "contrast", "saturate")}
    out = imagenet_c_summary(
        _results(sub, clean),
        BenchmarkConfig(corruptions=["gaussian_noise", "contrast", "saturate"], severities=[2, 4]),
        None,
    )
    assert not out.complete
    ce = {n: (sub[n][1] + sub[n][3]) / (ALEXNET_ERRORS[n][1] + ALEXNET_ERRORS[n][3]) for n in sub}
    assert out.mce == pytest.approx((ce["gaussian_noise"] + ce["contrast"]) / 2, rel=1e-12)
    assert out.held_out_mce == pytest.approx(ce["saturate"], rel=1e-12)


def test_detection_mpc_and_rpc_equal_the_reference():
    maps, _ = _draw(7)
    maps = {n: [1.0 - m for m in v] for n, v in maps.items()}  # _results stores 1 - value
    clean_map = 0.55
    out = imagenet_c_summary(_results(maps, 1.0 - clean_map, task="detection"), BenchmarkConfig(), None)
    flat = [1.0 - m for n in BENCHMARK for m in maps[n]]
    mpc = sum(flat) / len(flat)
    assert len(flat) == 75
    assert out.mpc == pytest.approx(mpc, rel=1e-12)
    assert out.rpc == pytest.approx(mpc / clean_map, rel=1e-12)
    assert out.held_out_mpc == pytest.approx(sum(1.0 - m for n in HELD_OUT for m in maps[n]) / 20, rel=1e-12)
    assert out.mce is None and math.isclose(out.clean_map, clean_map)
