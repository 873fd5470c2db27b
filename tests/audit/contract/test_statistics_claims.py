"""The numbers docs/statistics.md states, recomputed: the simulation suite as a regression test.

Exact where cheap (summed over binomial distributions through cvaudit's own tests and intervals:
``benchmarks/exact_claims.py``), simulated and seeded otherwise, with a tolerance of three Monte-Carlo
standard errors. Each test also checks that the page still states the number it recomputes, so a
number changed on one side only fails here.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "benchmarks"))

import exact_claims  # noqa: E402

PAGE = (ROOT / "docs" / "statistics.md").read_text(encoding="utf-8")


def _stated(*texts: str) -> None:
    flat = " ".join(PAGE.split())
    for text in texts:
        assert text in flat, f"docs/statistics.md no longer states {text!r}"


def test_confidence_level_is_not_a_setting(tmp_path: Path) -> None:
    from audit.contract.config import EvaluationConfig

    _stated("The level is fixed, not a setting")
    assert "confidence_level" not in EvaluationConfig.model_fields
    with pytest.raises(ValueError, match="confidence_level"):
        EvaluationConfig.model_validate({"confidence_level": 0.9})


@pytest.mark.slow
def test_boundary_false_fails_exact() -> None:
    _stated("exact: 4.76%", "the worst case is 5.94% (2 × 35 at 0.47/0.52); 5.86% at 2 × 50 (0.48/0.53)")
    _stated("6.12% at 2 × 22 (0.48/0.53) when smaller groups take part")
    _stated("at most 5.94 %, at 2 × 35 and accuracies 0.47/0.52; 5.86 % at 2 × 50 and 0.48/0.53")
    _stated("at most 5.6 % from 100 per group; 4.76 % at 2 × 500 and 0.85/0.90")
    assert round(exact_claims.gap_fail_rate(500, 500, 0.85, 0.90, tolerance=0.05), 4) == 0.0476
    worst, at = exact_claims.boundary_worst(50)
    assert (round(worst, 4), at) == (0.0586, 0.48)
    worst, at, n = exact_claims.boundary_scan(range(30, 301))
    assert (round(worst, 4), at, n) == (0.0594, 0.47, 35)
    worst, at, n = exact_claims.boundary_scan(range(10, 30))
    assert (round(worst, 4), at, n) == (0.0612, 0.48, 22)
    assert exact_claims.boundary_scan(range(100, 301))[0] < 0.056


@pytest.mark.slow
def test_wilson_coverage_dips_exact() -> None:
    _stated("covers 0.935 at p = 0.5 and 0.937 at p = 0.97 with n = 50, 0.944 at both with n = 200")
    _stated("its lowest coverage is 0.922 at n = 50 and 0.933 at n = 200")
    got = {(p, n): round(exact_claims.wilson_coverage(p, n), 3) for p in (0.5, 0.97) for n in (50, 200)}
    assert got == {(0.5, 50): 0.935, (0.97, 50): 0.937, (0.5, 200): 0.944, (0.97, 200): 0.944}
    for n, lowest in ((50, 0.922), (200, 0.933)):
        grid = np.arange(0.02, 0.99, 0.005)
        assert round(min(exact_claims.wilson_coverage(float(p), n) for p in grid), 3) == lowest


@pytest.mark.slow
def test_bound_sizes_stay_above_80_percent() -> None:
    stated = {0.70: (654, 625), 0.80: (481, 454), 0.90: (254, 217), 0.94: (118, 118)}
    for t, (stay, first) in stated.items():
        _stated(f"| {t:.2f} | {stay:,} | {first:,} |")
        got_first, got_stay = exact_claims.stays_above(
            lambda n, t=t: exact_claims.bound_power(n, t, t + 0.05), 20, 2000
        )
        assert (got_stay, got_first) == (stay, first)


@pytest.mark.slow
def test_gap_sizes_stay_above_80_percent() -> None:
    _stated("the power is at least 80 % from 436 per group on (checked to 700; at 446: 81.0%)")
    _stated("at 0.80 and 0.90 (pooled 0.85) only from 623 (checked to 800; at 446: 67.4%)")
    for p1, p2, stay in ((0.85, 0.95, 436), (0.80, 0.90, 623)):
        assert exact_claims.gap_power(stay - 1, p1, p2, 0.05) < 0.8
        assert all(exact_claims.gap_power(n, p1, p2, 0.05) >= 0.8 for n in range(stay, stay + 150))
    assert round(exact_claims.gap_power(446, 0.85, 0.95, 0.05), 3) == 0.810
    assert round(exact_claims.gap_power(446, 0.80, 0.90, 0.05), 3) == 0.674


@pytest.mark.slow
def test_early_stop_false_passes_exact() -> None:
    _stated("early stop 3.20% against 2.44% for the fixed-n rule on all 10,000 samples")
    _stated("passes falsely 3.20 % of the time with early stopping against 2.44 % without")
    assert all(exact_claims.check_monotone(n) for n in (128, 1280, 9984))
    early, fixed = exact_claims.sequential_false_pass(0.8, n_max=10_000, batch=128)
    assert (round(early, 4), round(fixed, 4)) == (0.0320, 0.0244)


@pytest.mark.slow
def test_early_stop_dynamic_programme_matches_a_simulation() -> None:
    """The exact calculation models the procedure right: a seeded simulation of it agrees (3 standard errors)."""
    from audit.contract.intervals import wilson
    from audit.contract.sequential import decide

    threshold, n_max, batch, runs = 0.8, 2_000, 128, 1500
    early, _ = exact_claims.sequential_false_pass(threshold, n_max=n_max, batch=batch)
    rng = np.random.default_rng(0)
    passes = 0
    for _ in range(runs):
        k = np.cumsum(rng.random(n_max) < threshold)
        n, result = 0, None
        while n < n_max and result is None:
            n = min(n + batch, n_max)
            kn = int(k[n - 1])
            side, lower = decide(kn, n, threshold, alpha=0.025), wilson(kn, n)[0]
            if side == "above" and lower >= threshold:
                result = True
            elif side == "below" and lower < threshold:
                result = False
        passes += result if result is not None else wilson(int(k[-1]), n_max)[0] >= threshold
    se = math.sqrt(early * (1 - early) / runs)
    assert abs(passes / runs - early) <= 3 * se


@pytest.mark.slow
def test_ece_of_a_calibrated_model_scales_as_stated() -> None:
    _stated("about 0.75/√n when the top-label confidence is 0.4 + 0.6·Beta(4, 1.5)", "about 0.31/√n for a confident")
    for (_, floor, a, b), stated in zip(exact_claims.CONFIDENCES, (0.751, 0.312)):
        assert round(exact_claims.ece_constant(floor, a, b), 3) == stated
        samples = exact_claims.ece_samples(500, floor, a, b, datasets=400, seed=1)
        error = 3 * samples.std(ddof=1) / math.sqrt(len(samples))
        assert abs(samples.mean() - stated) <= error + 0.01  # + the finite-n difference (measured below 0.01)


@pytest.mark.slow
def test_bootstrap_coverage_at_097_200() -> None:
    """`interval: bootstrap` at p = 0.97, n = 200 through AuditStats: consistent with the stated 0.932."""
    import sim

    _stated("covered 0.932 ± 0.006 at p = 0.97, n = 200")
    datasets = 200
    r = sim.proportion_intervals(0.97, 200, datasets, replicates=1000, seed=1)
    degenerate = (r["k"] == 0) | (r["k"] == 200)
    used = np.where(degenerate[:, None], r["wilson"], r["bootstrap"])
    coverage = float(((used[:, 0] <= 0.97) & (used[:, 1] >= 0.97)).mean())
    assert abs(coverage - 0.932) <= 3 * math.sqrt(0.932 * 0.068 / datasets)
