"""Sanity checks of an adversarial evaluation (Carlini et al. 2019, "On Evaluating
Adversarial Robustness", Section 5 checklist), as a pure function over results.

Input: the ``conditions`` of results.json (:mod:`audit.contract.results`), i.e. dicts with ``id``,
``stressor`` (None for clean), ``severity`` (the ε) and ``metrics`` (``n``,
``accuracy``). Output: findings ``{check, status, attack, observed, message}``
with status ``pass | fail | warn | insufficient_data``. The check ids are stable
(policy rules name them):

- ``adversarial.monotone_in_epsilon``: robust accuracy does not rise with ε
  (clean accuracy counts as ε = 0 when the attack has no ε = 0 condition).
  ``observed`` = the largest rise.
- ``adversarial.large_epsilon_zero_accuracy``: at a very large ε the attack
  drives accuracy to about 0; otherwise gradient masking is suspected.
  Convention: the probe is the attack's LARGEST ε, and it counts only if it is
  at least ``large_epsilons[kind]`` (0.3 for L∞ attacks, 10 for ``pgd_l2``);
  otherwise the finding is ``insufficient_data`` (add e.g. ``pgd@0.5``).
  ``observed`` = the accuracy there.
- ``adversarial.iterative_stronger_than_single_step``: PGD's accuracy is not
  above FGSM's at any ε both ran. ``observed`` = the largest excess.
- ``adversarial.zero_epsilon_matches_clean``: accuracy at ε = 0 equals clean
  accuracy. ``observed`` = the absolute difference.

Tolerance: ``tolerance`` (accuracy units) if given, else sampling noise:
``z * sqrt(p1 (1 - p1) / n1 + p2 (1 - p2) / n2) + 1 / min(n1, n2)``. With
``--attack-samples`` the attack conditions cover a subset, so their ``n``
differs from clean's; comparisons with clean then use the noise tolerance and
a violation is a ``warn``, not a ``fail``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

#: Built-in attacks: condition ``stressor`` name -> attack kind.
DEFAULT_ATTACKS: Mapping[str, str] = {a: a for a in ("fgsm", "pgd", "pgd_l2", "deepfool", "hopskipjump")}
#: Smallest ε that counts as "very large" per attack kind (L∞ pixel units, L2 for pgd_l2).
DEFAULT_LARGE_EPSILONS: Mapping[str, float] = {
    "fgsm": 0.3,
    "pgd": 0.3,
    "deepfool": 0.3,
    "hopskipjump": 0.3,
    "pgd_l2": 10.0,
}
#: Attack kinds expected to reach ~0% at a very large ε (FGSM is single-step: not expected).
ITERATIVE = ("pgd", "pgd_l2", "deepfool", "hopskipjump")

MONOTONE = "adversarial.monotone_in_epsilon"
LARGE_EPSILON = "adversarial.large_epsilon_zero_accuracy"
ITERATIVE_STRONGER = "adversarial.iterative_stronger_than_single_step"
ZERO_EPSILON = "adversarial.zero_epsilon_matches_clean"
CHECKS = (MONOTONE, LARGE_EPSILON, ITERATIVE_STRONGER, ZERO_EPSILON)


def _finding(check: str, status: str, attack: str | None, observed: float | None, message: str) -> dict[str, Any]:
    return {"check": check, "status": status, "attack": attack, "observed": observed, "message": message}


def _point(cond: Mapping[str, Any]) -> tuple[float, int, float]:
    """(ε, n, accuracy) of a condition."""
    metrics = cond["metrics"]
    return float(cond.get("severity") or 0.0), int(metrics["n"]), float(metrics["accuracy"])


def noise_tolerance(p1: float, n1: int, p2: float, n2: int, *, z: float = 1.96) -> float:
    """Sampling tolerance for the difference of two accuracies (normal approximation + one sample).

    >>> round(noise_tolerance(0.5, 100, 0.5, 100), 4)
    0.1486
    """
    return z * math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2) + 1 / min(n1, n2)


def _curves(
    conditions: Sequence[Mapping[str, Any]], attacks: Mapping[str, str]
) -> dict[str, list[tuple[float, int, float]]]:
    """Per attack label, its (ε, n, accuracy) points sorted by ε (conditions with n = 0 dropped)."""
    curves: dict[str, list[tuple[float, int, float]]] = {}
    for cond in conditions:
        label = cond.get("stressor")
        if label in attacks and int(cond["metrics"]["n"]) > 0:
            curves.setdefault(label, []).append(_point(cond))
    return {label: sorted(points) for label, points in curves.items()}


def _clean(conditions: Sequence[Mapping[str, Any]]) -> tuple[float, int, float] | None:
    for cond in conditions:
        if cond.get("stressor") is None and cond.get("id") == "clean" and int(cond["metrics"]["n"]) > 0:
            return _point(cond)
    return None


def _tol(tolerance: float | None, a: tuple[float, int, float], b: tuple[float, int, float]) -> float:
    return tolerance if tolerance is not None else noise_tolerance(a[2], a[1], b[2], b[1])


def check_monotone(label: str, points, clean, tolerance: float | None) -> dict[str, Any]:
    """Robust accuracy must not rise with ε (beyond tolerance)."""
    series = list(points)
    if clean is not None and series[0][0] > 0:
        series.insert(0, (0.0, clean[1], clean[2]))
    if len(series) < 2:
        return _finding(MONOTONE, "insufficient_data", label, None, f"{label}: fewer than two epsilons to compare")
    worst, where = 0.0, None
    for i, low in enumerate(series):
        for high in series[i + 1 :]:
            rise = high[2] - low[2]
            if rise > _tol(tolerance, low, high) and rise > worst:
                worst, where = rise, (low, high)
    if where is None:
        return _finding(MONOTONE, "pass", label, 0.0, f"{label}: robust accuracy does not rise with epsilon")
    (e1, _, a1), (e2, _, a2) = where
    return _finding(
        MONOTONE,
        "fail",
        label,
        worst,
        f"{label}: accuracy rises from {a1:.3f} at eps={e1:.4g} to {a2:.3f} at eps={e2:.4g}; "
        "the attack is not converging (too few steps, bad step size or gradient masking)",
    )


def check_large_epsilon(label: str, kind: str, points, threshold: float, max_accuracy: float) -> dict[str, Any]:
    """At the largest ε (if very large) accuracy must be about 0."""
    eps, _n, acc = points[-1]
    if eps < threshold:
        return _finding(
            LARGE_EPSILON,
            "insufficient_data",
            label,
            None,
            f"{label}: largest epsilon {eps:.4g} < {threshold:g}; add a probe condition "
            f"(e.g. {label}@0.5) to test for gradient masking",
        )
    if acc <= max_accuracy:
        return _finding(LARGE_EPSILON, "pass", label, acc, f"{label}: accuracy {acc:.3f} at eps={eps:.4g}")
    return _finding(
        LARGE_EPSILON,
        "fail",
        label,
        acc,
        f"{label}: accuracy is still {acc:.3f} at eps={eps:.4g} (expected <= {max_accuracy:g}); "
        "gradient masking or a broken attack is suspected",
    )


def check_iterative_stronger(pgd_label: str, pgd, fgsm_label: str, fgsm, tolerance: float | None) -> dict[str, Any]:
    """PGD must not be weaker than FGSM at a shared ε."""
    by_eps = {p[0]: p for p in fgsm}
    shared = [(p, by_eps[p[0]]) for p in pgd if p[0] in by_eps and p[0] > 0]
    if not shared:
        return _finding(
            ITERATIVE_STRONGER,
            "insufficient_data",
            pgd_label,
            None,
            f"{pgd_label} and {fgsm_label} share no epsilon > 0",
        )
    excess = [(p[2] - f[2], p, f) for p, f in shared if p[2] - f[2] > _tol(tolerance, p, f)]
    if not excess:
        worst = max(p[2] - f[2] for p, f in shared)
        return _finding(
            ITERATIVE_STRONGER,
            "pass",
            pgd_label,
            max(worst, 0.0),
            f"{pgd_label} is at least as strong as {fgsm_label} at every shared epsilon",
        )
    gap, p, f = max(excess)
    return _finding(
        ITERATIVE_STRONGER,
        "fail",
        pgd_label,
        gap,
        f"{pgd_label} accuracy {p[2]:.3f} exceeds {fgsm_label} accuracy {f[2]:.3f} at eps={p[0]:.4g}; "
        "the iterative attack is broken (step size, steps) or gradients are masked",
    )


def check_zero_epsilon(label: str, points, clean, tolerance: float | None) -> dict[str, Any]:
    """Accuracy at ε = 0 must equal clean accuracy."""
    zero = next((p for p in points if p[0] == 0.0), None)
    if zero is None or clean is None:
        what = "no eps=0 condition" if zero is None else "no clean condition"
        return _finding(ZERO_EPSILON, "insufficient_data", label, None, f"{label}: {what}")
    diff = abs(zero[2] - clean[2])
    same_samples = zero[1] == clean[1]
    allowed = (tolerance if tolerance is not None else 1 / zero[1]) if same_samples else _tol(tolerance, zero, clean)
    if diff <= allowed + 1e-9:  # float slack: one sample in n is allowed exactly
        return _finding(
            ZERO_EPSILON, "pass", label, diff, f"{label}: accuracy at eps=0 {zero[2]:.3f}, clean {clean[2]:.3f}"
        )
    status = "fail" if same_samples else "warn"
    note = "" if same_samples else f" (the attack ran on {zero[1]} of {clean[1]} samples)"
    return _finding(
        ZERO_EPSILON,
        status,
        label,
        diff,
        f"{label}: accuracy at eps=0 is {zero[2]:.3f} but clean accuracy is {clean[2]:.3f}{note}; "
        "the attack changes images at eps=0 or the attack path preprocesses differently",
    )


def sanity_checks(
    conditions: Sequence[Mapping[str, Any]],
    *,
    tolerance: float | None = None,
    attacks: Mapping[str, str] | None = None,
    large_epsilons: Mapping[str, float] | None = None,
    max_large_epsilon_accuracy: float = 0.05,
) -> list[dict[str, Any]]:
    """Run the Carlini et al. 2019 sanity checks over evaluated conditions.

    Args:
        conditions: results.json ``conditions`` (the clean one included).
        tolerance: allowed accuracy difference; None = sampling noise (module docstring).
        attacks: condition ``stressor`` label -> attack kind (``fgsm``, ``pgd``,
            ``pgd_l2``, ``deepfool``, ``hopskipjump``); default: the built-in
            names map to themselves. Pass it when config entries carry a ``label``.
        large_epsilons: attack kind -> smallest ε that counts as a large-ε probe.
        max_large_epsilon_accuracy: "about 0%" at the probe; default 0.05.

    Returns:
        Findings ``{check, status, attack, observed, message}``, grouped per
        attack label in the order the labels first appear; empty if no attack ran.

    Raises:
        KeyError: a condition lacks ``metrics.n`` or ``metrics.accuracy``.
    """
    attacks = DEFAULT_ATTACKS if attacks is None else attacks
    thresholds = {**DEFAULT_LARGE_EPSILONS, **(large_epsilons or {})}
    curves, clean = _curves(conditions, attacks), _clean(conditions)
    fgsm = [(label, pts) for label, pts in curves.items() if attacks[label] == "fgsm"]
    findings: list[dict[str, Any]] = []
    for label, points in curves.items():
        kind = attacks[label]
        findings.append(check_monotone(label, points, clean, tolerance))
        if kind in ITERATIVE:
            findings.append(
                check_large_epsilon(label, kind, points, thresholds.get(kind, 0.3), max_large_epsilon_accuracy)
            )
        if kind == "pgd":  # FGSM is L-inf: compare with L-inf PGD only
            for fgsm_label, fgsm_points in fgsm:
                findings.append(check_iterative_stronger(label, points, fgsm_label, fgsm_points, tolerance))
        findings.append(check_zero_epsilon(label, points, clean, tolerance))
    return findings
