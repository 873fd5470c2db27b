"""The numbers the built-in policies' descriptions state about power and sizes (issue 32).

    PYTHONPATH=. python benchmarks/bench_power.py sizes            # exact, seconds
    PYTHONPATH=. python benchmarks/bench_power.py calibration      # simulation, tens of minutes

``sizes``: exact over the binomial distributions (:mod:`audit.contract.power`, and for the
equivalence test the same enumeration over every pair of counts): the samples per group from which
the power stays at or above 80 % (no zigzag), and the power at a given size.
``calibration``: how often high-risk's demonstration ``debiased_l2_ce`` ``ci_upper <= 0.05`` passes,
simulated through ``AuditStats`` (``benchmarks/sim.py``: 5 classes, top-label confidence
0.4 + 0.6·Beta(4, 1.5), right with probability confidence − δ; 1000 bootstrap replicates).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from scipy.special import ndtr
from scipy.stats import binom

from audit.contract.power import alternative, exact_power, samples_for_power


def tost_power(n: int, p: float, tau: float = 0.05, alpha: float = 0.05) -> float:
    """Exact power of the demonstrate test (Agresti-Caffo TOST) for two groups of n at accuracy p."""
    k = np.arange(n + 1)
    a = (k + 1) / (n + 2)
    v = a * (1 - a) / (n + 2)
    f = binom.pmf(k, n, p)
    d = np.abs(a[None, :] - a[:, None])
    se = np.sqrt(v[:, None] + v[None, :])
    pv = np.maximum(ndtr((d - tau) / se), ndtr(-(d + tau) / se))
    return float(f @ (pv <= alpha).astype(float) @ f)


def tost_samples(p: float, lo: int = 100, hi: int = 1000) -> int:
    """Equal group size from which the demonstrate power stays at 80 % (scanned over [lo, hi))."""
    return 1 + max(n for n in range(lo, hi) if tost_power(n, p) < 0.8)


def sizes() -> None:
    print("| rule | alternative | pairs (Holm) | samples per group (80% power, stays) |")
    print("|---|---|---:|---:|")
    for pooled in (0.9, 0.8):
        alt = alternative("gap", 0.1, pooled)
        for groups in (2, 10):
            m = groups * (groups - 1) // 2
            n = samples_for_power("gap", 0.1, 0.05 / m, alt)
            print(f"| gap max 0.10, detect | {alt.low:.2f} vs {alt.high:.2f} | {m} | {n} |")
    alt = alternative("gap", 0.1, 0.8)
    print(f"\nPower at 110 per group, 0.70 vs 0.90, 1 pair: {exact_power('gap', 0.1, 0.05, 110, 110, 0.7, 0.9):.3f}")
    for groups in (2, 4):
        m = groups * (groups - 1) // 2
        alt = alternative("ratio", 0.9, 0.9)
        print(
            f"ratio min 0.90, {alt.low:.2f} vs {alt.high:.2f}, {m} pairs: {samples_for_power('ratio', 0.9, 0.05 / m, alt)}"
        )
    for p in (0.95, 0.90):
        print(f"demonstrate gap max 0.05, 2 groups at {p}: {tost_samples(p)} per group")
    print(
        "equalized odds, TPR 0.70 vs 0.90, 160 pairs:",
        samples_for_power("gap", 0.1, 0.05 / 160, alternative("gap", 0.1, 0.8)),
        "positives per class and group; power at 100:",
        round(exact_power("gap", 0.1, 0.05 / 160, 100, 100, 0.7, 0.9), 3),
    )


def calibration() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import sim

    print("| δ | n | datasets | passes ci_upper <= 0.05 |")
    print("|---:|---:|---:|---:|")
    for delta, n, d in ((0.0, 1000, 200), (0.05, 1000, 150), (0.0, 3000, 80), (0.05, 3000, 80)):
        rows = list(sim.bootstrap_metric_intervals(n, d, delta=delta, replicates=1000, seed=1))
        upper = np.array([r["debiased_l2_ce_ci"][1] for r in rows])
        print(f"| {delta} | {n} | {d} | {(upper <= 0.05).mean():.1%} |", flush=True)


if __name__ == "__main__":
    {"sizes": sizes, "calibration": calibration}[sys.argv[1] if len(sys.argv) > 1 else "sizes"]()
