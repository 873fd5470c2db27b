"""Exact calculations behind the numbers the documentation states, through cvaudit's own tests.

    PYTHONPATH=. python benchmarks/exact_claims.py all

Each section prints what it computed; every number is exact (summed over the binomial
distributions, no simulation) unless it says otherwise:

- ``boundary``: the detect gap test's false-fail rate for two groups whose true gap is exactly the
  tolerance, maximised over the accuracies (p, p + τ) and listed by group size;
- ``power``: exact power of the two-group gap test and the samples per group from which it *stays*
  at or above 80 % (discrete tests zigzag: the first n reaching 80 % is not enough);
- ``bound``: images from which a Wilson ``ci_lower`` bound keeps passing a model 0.05 above the
  threshold with at least 80 % probability;
- ``coverage``: Wilson's exact coverage where it dips below 0.95;
- ``sequential``: early stopping's false-pass rate at an accuracy exactly at the threshold (the
  anytime-valid test after every batch, the rule agreeing, the fixed-n rule at the end when
  undecided), by dynamic programming over the count, beside the fixed-n rule's rate;
- ``ece``: the plug-in ECE of a calibrated model times √n, asymptotically (by integration) and
  simulated at n = 500 and 5000, for two stated confidence distributions.

``tests/audit/contract/test_statistics_claims.py`` (slow) recomputes the stated numbers.
"""

from __future__ import annotations

import argparse
import math
from functools import cache

import numpy as np
from scipy.stats import beta as beta_dist
from scipy.stats import binom

from audit.contract import gaptests
from audit.contract.intervals import wilson
from audit.contract.sequential import decide

POWER = 0.8


# ---- the gap test -----------------------------------------------------------------------------------------


def gap_reject(n1: int, n2: int, *, tolerance: float, alpha: float = 0.05, mode: str = "detect") -> np.ndarray:
    """``[k1, k2]``: whether cvaudit's two-group gap test decides against the model (detect: a violation;
    demonstrate: not shown within), for every count pair, through :mod:`audit.contract.gaptests`."""
    a = [gaptests._proportion("accuracy", "a", k, n1) for k in range(n1 + 1)]
    b = [gaptests._proportion("accuracy", "b", k, n2) for k in range(n2 + 1)]
    members = a + b
    ia, ib = np.meshgrid(np.arange(n1 + 1), np.arange(n1 + 1, n1 + n2 + 2), indexing="ij")
    ia, ib = ia.ravel(), ib.ravel()
    value = np.array([e.value for e in members])
    first_low = value[ia] <= value[ib]
    lo, hi = np.where(first_low, ia, ib), np.where(first_low, ib, ia)
    _, _, p = gaptests._statistics(members, lo, hi, kind="gap", tolerance=tolerance, mode=mode)
    fails = p <= alpha if mode == "detect" else p > alpha
    return fails.reshape(n1 + 1, n2 + 1)


def gap_fail_rate(n1: int, n2: int, p1: float, p2: float, *, tolerance: float, mode: str = "detect") -> float:
    """P(the rule fails) for two groups of true accuracies p1, p2 (exact)."""
    reject = gap_reject(n1, n2, tolerance=tolerance, mode=mode)
    w1, w2 = binom.pmf(np.arange(n1 + 1), n1, p1), binom.pmf(np.arange(n2 + 1), n2, p2)
    return float(w1 @ reject.astype(float) @ w2)


def boundary_worst(n: int, tolerance: float = 0.05, step: float = 0.01) -> tuple[float, float]:
    """(worst false-fail rate, the lower accuracy p there) over p in [0, 1 - τ] on a grid, groups of n, gap τ."""
    reject = gap_reject(n, n, tolerance=tolerance).astype(float)
    ks = np.arange(n + 1)
    best = (0.0, 0.0)
    for p in np.arange(0.0, 1.0 - tolerance + 1e-9, step):
        rate = float(binom.pmf(ks, n, p) @ reject @ binom.pmf(ks, n, p + tolerance))
        best = max(best, (rate, round(float(p), 4)))
    return best


def boundary_scan(sizes, tolerance: float = 0.05, step: float = 0.01) -> tuple[float, float, int]:
    """(worst false-fail rate, lower accuracy, group size) over equal group sizes and the accuracy grid."""
    return max((*boundary_worst(n, tolerance, step), n) for n in sizes)


def stays_above(power_at, start: int, horizon: int, target: float = POWER) -> tuple[int, int]:
    """(first n in [start, horizon] with power >= target, first n from which it stays there up to horizon)."""
    values = {n: power_at(n) for n in range(start, horizon + 1)}
    first = next((n for n, v in values.items() if v >= target), -1)
    stay = horizon + 1
    for n in range(horizon, start - 1, -1):
        if values[n] < target:
            break
        stay = n
    return first, stay


def gap_power(n: int, p1: float, p2: float, tolerance: float) -> float:
    return gap_fail_rate(n, n, p1, p2, tolerance=tolerance)


# ---- the accuracy bound ------------------------------------------------------------------------------------


@cache
def wilson_pass_k(n: int, threshold: float) -> int | None:
    """The smallest k whose Wilson lower bound is at least ``threshold`` (None if none)."""
    if wilson(n, n)[0] < threshold:
        return None
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if wilson(mid, n)[0] < threshold else (lo, mid)
    return lo


def bound_power(n: int, threshold: float, true: float) -> float:
    k = wilson_pass_k(n, threshold)
    return 0.0 if k is None else float(binom.sf(k - 1, n, true))


def wilson_coverage(p: float, n: int) -> float:
    ks = np.arange(n + 1)
    inside = np.array([wilson(int(k), n)[0] <= p <= wilson(int(k), n)[1] for k in ks])
    return float(binom.pmf(ks, n, p) @ inside)


# ---- early stopping ----------------------------------------------------------------------------------------


def _first(n: int, predicate, *, increasing: bool) -> int:
    """The smallest k in [0, n + 1] where a monotone predicate of k holds (n + 1: never)."""
    lo, hi = 0, n + 1
    while lo < hi:
        mid = (lo + hi) // 2
        if predicate(mid) == increasing:
            hi = mid
        else:
            lo = mid + 1
    return lo


def sequential_false_pass(
    threshold: float = 0.8, *, p: float | None = None, n_max: int = 10_000, batch: int = 128, alpha: float = 0.025
) -> tuple[float, float]:
    """(early stop's pass rate, the fixed-n rule's pass rate) at true accuracy ``p`` (default: the threshold).

    After every batch a target is decided above when the anytime-valid test says ``above`` and the
    Wilson lower bound agrees (pass), below when the test says ``below`` and the bound is under the
    threshold (fail); undecided at ``n_max`` it is judged on all the data by the Wilson bound.
    """
    p = threshold if p is None else p
    alive = np.array([1.0])
    passed = 0.0
    n = 0
    while n < n_max:
        step = min(batch, n_max - n)
        alive = np.convolve(alive, binom.pmf(np.arange(step + 1), step, p))
        n += step
        k_pass = wilson_pass_k(n, threshold)
        k_pass = n + 1 if k_pass is None else k_pass
        above = _first(n, lambda k, n=n: decide(k, n, threshold, alpha=alpha) == "above", increasing=True)
        # below: decide says below for k up to some count (and the Wilson bound is then under the threshold)
        below_end = _first(n, lambda k, n=n: decide(k, n, threshold, alpha=alpha) != "below", increasing=True)
        start = max(above, k_pass)
        if n == n_max:
            return passed + float(alive[k_pass:].sum()), float(binom.sf(k_pass - 1, n_max, p))
        passed += float(alive[start:].sum())
        alive[start:] = 0.0
        alive[: min(below_end, k_pass)] = 0.0
    raise AssertionError("unreachable")


def check_monotone(n: int, threshold: float = 0.8, alpha: float = 0.025) -> bool:
    """decide() is 'below' for small k, None in between, 'above' for large k (what the bisection assumes)."""
    order = {"below": 0, None: 1, "above": 2}
    sides = [order[decide(k, n, threshold, alpha=alpha)] for k in range(n + 1)]
    return all(a <= b for a, b in zip(sides, sides[1:]))


# ---- the plug-in ECE of a calibrated model -----------------------------------------------------------------

#: Top-label confidence distributions: (name, floor, Beta a, Beta b); confidence = floor + (1 - floor)·Beta(a, b).
CONFIDENCES = (("README (5 classes)", 0.4, 4.0, 1.5), ("confident", 0.4, 12.0, 1.0))


def ece_constant(floor: float, a: float, b: float, bins: int = 15) -> float:
    """lim √n·E[ECE] of a calibrated model: √(2/π)·Σ_b √(w_b·E[c(1 - c); bin b]) (the bins' normal limit)."""
    total = 0.0
    dist = beta_dist(a, b)
    for i in range(bins):
        lo, hi = i / bins, (i + 1) / bins
        u_lo, u_hi = max((lo - floor) / (1 - floor), 0.0), min(max((hi - floor) / (1 - floor), 0.0), 1.0)
        if u_hi <= u_lo:
            continue
        grid = np.linspace(u_lo, u_hi, 2001)
        c = floor + (1 - floor) * grid
        density = dist.pdf(grid)
        m = np.trapezoid(c * (1 - c) * density, grid)
        total += math.sqrt(max(m, 0.0))  # √(w_b · E[c(1-c) | b]) = √(∫_b c(1-c) f)
    return math.sqrt(2 / math.pi) * total


def ece_simulated(n: int, floor: float, a: float, b: float, *, datasets: int = 2000, seed: int = 0) -> float:
    """√n·mean plug-in ECE (15 equal-width bins of the top-label confidence) of a calibrated model, simulated."""
    return float(np.mean(ece_samples(n, floor, a, b, datasets=datasets, seed=seed)))


def ece_samples(n: int, floor: float, a: float, b: float, *, datasets: int, seed: int = 0) -> np.ndarray:
    """√n·plug-in ECE of ``datasets`` simulated datasets of a calibrated model."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(datasets):
        c = floor + (1 - floor) * rng.beta(a, b, n)
        y = rng.random(n) < c
        idx = np.minimum((c * 15).astype(int), 14)
        gap = np.bincount(idx, weights=y - c, minlength=15)
        out.append(np.abs(gap).sum() / n)
    return np.asarray(out) * math.sqrt(n)


# ---- the report --------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("section", choices=["boundary", "power", "bound", "coverage", "sequential", "ece", "all"])
    args = parser.parse_args()
    chosen = (
        ("boundary", "power", "bound", "coverage", "sequential", "ece") if args.section == "all" else (args.section,)
    )
    if "boundary" in chosen:
        print("Detect gap test, two groups of n whose true gap is exactly τ = 0.05 (grid step 0.01): worst false fails")
        for n in (20, 30, 50, 100, 200, 500):
            rate, p = boundary_worst(n)
            print(f"  n = {n}: {rate:.4f} at {p:.2f}/{p + 0.05:.2f}")
        print(f"  n = 500 at 0.85/0.90: {gap_fail_rate(500, 500, 0.85, 0.90, tolerance=0.05):.4f}")
        for sizes in (range(10, 30), range(30, 301), range(100, 301)):
            rate, p, n = boundary_scan(sizes)
            print(f"  worst over n in {sizes.start}..{sizes.stop - 1}: {rate:.4f} at 2 x {n}, {p:.2f}/{p + 0.05:.2f}")
    if "power" in chosen:
        print("Exact power of the two-group detect test (95 %), equal groups: (first n at 80 %, n from which it stays)")
        for tol, p1, p2, start, horizon in (
            (0.05, 0.85, 0.95, 380, 800),
            (0.05, 0.80, 0.90, 500, 900),
            (0.10, 0.70, 0.90, 80, 300),
            (0.10, 0.80, 1.00, 40, 200),
        ):
            first, stay = stays_above(lambda n, a=p1, b=p2, t=tol: gap_power(n, a, b, t), start, horizon)
            at = {n: gap_power(n, p1, p2, tol) for n in (446, 628, 110) if start <= n <= horizon}
            print(
                f"  τ = {tol}, {p1}/{p2}: first {first}, stays from {stay}; "
                + ", ".join(f"n={n}: {v:.3f}" for n, v in at.items())
            )
    if "bound" in chosen:
        print("Wilson ci_lower >= t, true accuracy t + 0.05: (first n at 80 %, n from which it stays, up to 2000)")
        for t in (0.70, 0.80, 0.90, 0.94):
            first, stay = stays_above(lambda n, t=t: bound_power(n, t, t + 0.05), 20, 2000)
            print(f"  t = {t}: first {first}, stays from {stay}")
    if "coverage" in chosen:
        print("Wilson exact coverage:")
        for p in (0.5, 0.6, 0.9, 0.97):
            print(
                "  p = " + str(p) + ": " + ", ".join(f"n={n}: {wilson_coverage(p, n):.4f}" for n in (20, 50, 200, 1000))
            )
        for n in (50, 200):
            grid = np.arange(0.02, 0.99, 0.005)
            cov = [wilson_coverage(float(p), n) for p in grid]
            i = int(np.argmin(cov))
            print(f"  n = {n}: lowest over p in [0.02, 0.98] (step 0.005): {cov[i]:.4f} at p = {grid[i]:.3f}")
    if "sequential" in chosen:
        print("monotone decide():", all(check_monotone(n) for n in (128, 1280, 9984)))
        early, fixed = sequential_false_pass()
        print(
            f"Early stop at p = threshold = 0.8 (batches of 128, up to 10,000, α = 0.025): false passes {early:.4f}; fixed n: {fixed:.4f}"
        )
    if "ece" in chosen:
        for name, floor, a, b in CONFIDENCES:
            const = ece_constant(floor, a, b)
            sims = {n: ece_simulated(n, floor, a, b, datasets=1000) for n in (500, 5000)}
            print(
                f"ECE·√n, {name}: confidence {floor} + {1 - floor:g}·Beta({a:g}, {b:g}) (mean "
                f"{floor + (1 - floor) * a / (a + b):.3f}): limit {const:.3f}; simulated "
                + ", ".join(f"n={n}: {v:.3f}" for n, v in sims.items())
            )


if __name__ == "__main__":
    main()
