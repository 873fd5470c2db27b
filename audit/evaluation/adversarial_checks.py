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
  Run for attacks whose class sets ``iterative = True``. Convention: the probe
  is the attack's LARGEST ε, and it counts only if it is at least the class's
  ``zero_accuracy_epsilon`` (0.3 for the L∞ attacks, 10 for the L2 PGD);
  otherwise the finding is ``insufficient_data`` (add a condition at that ε).
  ``observed`` = the accuracy there.
- ``adversarial.iterative_stronger_than_single_step``: an attack whose class sets
  ``stronger_than_single_step`` (PGD) has an accuracy not above that of any
  non-iterative attack of the same ``norm`` (FGSM) at any ε both ran.
  ``observed`` = the largest excess.
- ``adversarial.zero_epsilon_matches_clean``: accuracy at ε = 0 equals clean
  accuracy. ``observed`` = the absolute difference.

AutoAttack's flags (Croce & Hein 2020, the reference's ``checks.py`` / ``flags_doc.md``):

- ``adversarial.ensemble_at_least_as_strong``: an attack whose class sets ``ensemble`` (autoattack)
  has an accuracy not above that of any other attack of the same ``norm`` at a shared ε.
  A failure means a member is broken, the model is randomised (use EoT) or its output
  depends on the batch; the ensemble's number is then not a valid upper bound on robustness.
  ``observed`` = the largest excess.
- ``adversarial.white_box_stronger_than_black_box``: a gradient-free attack (class with
  ``needs_gradients = False``, e.g. HopSkipJump) does not reach a lower accuracy than an
  iterative gradient attack of the same norm at a shared ε. ``warn`` when it does: the
  gradients mislead the white-box attack (gradient masking), so every gradient attack's
  robust accuracy is overstated; the verdict should rest on the lowest accuracy found.
  ``observed`` = the largest gap.
- ``adversarial.zero_gradients``: from an attack's ``attack_details`` (APGD, autoattack): the share
  of attacked samples whose input gradient was all zero or not finite at the start. ``warn`` when
  above 0: on those samples a gradient attack cannot move, their "robustness" is masking, not
  robustness (use a gradient-free attack on them). ``observed`` = that share.
- ``adversarial.randomised_model``: from ``attack_details``: two identical forward passes of the
  model differed. ``fail`` when no EoT was used (the gradient of one random draw is noise: robust
  accuracy overstated); ``warn`` when EoT was used (robust accuracy is itself random: rerun with
  another seed to see its spread). ``observed`` = null.

:data:`MEANING` (:mod:`audit.contract.adversarial_meaning`) says, per check id, what a failing finding means for the verdict.

Tolerance: ``tolerance`` (accuracy units) if given, else sampling noise:
``z * sqrt(p1 (1 - p1) / n1 + p2 (1 - p2) / n2) + 1 / min(n1, n2)``. With
``--attack-samples`` the attack conditions cover a subset, so their ``n``
differs from clean's; comparisons with clean then use the noise tolerance and
a violation is a ``warn``, not a ``fail``.

The traits are class attributes of the attacks (:class:`stressors.attacks.common.Attack`);
no attack is recognised by its name here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from audit.contract.adversarial_meaning import (
    CHECKS,  # noqa: F401  (re-exported: audit.evaluation.ADVERSARIAL_CHECKS)
    ENSEMBLE_STRONGEST,
    ITERATIVE_STRONGER,
    LARGE_EPSILON,
    MEANING,
    MONOTONE,
    RANDOMISED,
    WHITE_BOX_STRONGER,
    ZERO_EPSILON,
    ZERO_GRADIENTS,
)
from audit.contract.metric_specs import ACCURACY

#: The traits read from an attack's class, with the defaults of an attack that declares none.
_TRAITS = {
    "iterative": False,
    "zero_accuracy_epsilon": 0.3,
    "stronger_than_single_step": False,
    "norm": "linf",
    "needs_gradients": True,
    "ensemble": False,
    "breaking_measure": "epsilon",
}


def attack_traits(attack: Any) -> dict[str, Any]:
    """The traits the checks read from an attack class or instance (missing ones take the defaults)."""
    return {key: getattr(attack, key, default) for key, default in _TRAITS.items()}


def _registered(conditions: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Condition ``stressor`` label -> its registered class, for the model-aware ones."""
    import stressors

    out: dict[str, Any] = {}
    for cond in conditions:
        label = cond.get("stressor")
        if label is None or label in out:
            continue
        try:
            factory = stressors.factory(str(label))
        except stressors.StressorError:
            continue
        if getattr(factory, "model_aware", False):
            out[str(label)] = factory
    return out


def _finding(check: str, status: str, attack: str | None, observed: float | None, message: str) -> dict[str, Any]:
    return {"check": check, "status": status, "attack": attack, "observed": observed, "message": message}


def _point(cond: Mapping[str, Any]) -> tuple[float, int, float]:
    """(ε, n, accuracy) of a condition."""
    metrics = cond["metrics"]
    return float(cond.get("severity") or 0.0), int(metrics["n"]), float(metrics[ACCURACY.name])


def noise_tolerance(p1: float, n1: int, p2: float, n2: int, *, z: float = 1.96) -> float:
    """Sampling tolerance for the difference of two accuracies (normal approximation + one sample).

    >>> round(noise_tolerance(0.5, 100, 0.5, 100), 4)
    0.1486
    """
    return z * math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2) + 1 / min(n1, n2)


def _curves(
    conditions: Sequence[Mapping[str, Any]], attacks: Mapping[str, Any]
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


#: An attack's ``breaking_measure`` -> (its levels in words, the symbol in messages).
MEASURE_WORDS = {"epsilon": ("epsilon", "eps"), "area_share": ("patch share of the image area", "share")}


def check_monotone(label: str, points, clean, tolerance: float | None, measure: str = "epsilon") -> dict[str, Any]:
    """Robust accuracy must not rise with ε (or the attack's ``measure``, e.g. a patch's area share) beyond
    tolerance."""
    noun, symbol = MEASURE_WORDS.get(measure, MEASURE_WORDS["epsilon"])
    series = list(points)
    if clean is not None and series[0][0] > 0:
        series.insert(0, (0.0, clean[1], clean[2]))
    if len(series) < 2:
        return _finding(MONOTONE, "insufficient_data", label, None, f"{label}: fewer than two {noun} levels to compare")
    worst, where = 0.0, None
    for i, low in enumerate(series):
        for high in series[i + 1 :]:
            rise = high[2] - low[2]
            if rise > _tol(tolerance, low, high) and rise > worst:
                worst, where = rise, (low, high)
    if where is None:
        return _finding(MONOTONE, "pass", label, 0.0, f"{label}: robust accuracy does not rise with {noun}")
    (e1, _, a1), (e2, _, a2) = where
    return _finding(
        MONOTONE,
        "fail",
        label,
        worst,
        f"{label}: accuracy rises from {a1:.3f} at {symbol}={e1:.4g} to {a2:.3f} at {symbol}={e2:.4g}; "
        "the attack is not converging (too few steps, bad step size or gradient masking)",
    )


def check_large_epsilon(label: str, points, threshold: float, max_accuracy: float) -> dict[str, Any]:
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


def check_iterative_stronger(
    label: str, points, other_label: str, other_points, tolerance: float | None
) -> dict[str, Any]:
    """An iterative attack (PGD) must not be weaker than a single-step one of its norm (FGSM) at a shared ε."""
    by_eps = {p[0]: p for p in other_points}
    shared = [(p, by_eps[p[0]]) for p in points if p[0] in by_eps and p[0] > 0]
    if not shared:
        return _finding(
            ITERATIVE_STRONGER,
            "insufficient_data",
            label,
            None,
            f"{label} and {other_label} share no epsilon > 0",
        )
    excess = [(p[2] - f[2], p, f) for p, f in shared if p[2] - f[2] > _tol(tolerance, p, f)]
    if not excess:
        worst = max(p[2] - f[2] for p, f in shared)
        return _finding(
            ITERATIVE_STRONGER,
            "pass",
            label,
            max(worst, 0.0),
            f"{label} is at least as strong as {other_label} at every shared epsilon",
        )
    gap, p, f = max(excess)
    return _finding(
        ITERATIVE_STRONGER,
        "fail",
        label,
        gap,
        f"{label} accuracy {p[2]:.3f} exceeds {other_label} accuracy {f[2]:.3f} at eps={p[0]:.4g}; "
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


def check_ensemble(label: str, points, other_label: str, other_points, tolerance: float | None) -> dict[str, Any]:
    """An ensemble must not be weaker than another attack of its norm at a shared ε."""
    by_eps = {p[0]: p for p in other_points}
    shared = [(p, by_eps[p[0]]) for p in points if p[0] in by_eps and p[0] > 0]
    if not shared:
        return _finding(
            ENSEMBLE_STRONGEST, "insufficient_data", label, None, f"{label} and {other_label} share no epsilon > 0"
        )
    excess = [(p[2] - o[2], p, o) for p, o in shared if p[2] - o[2] > _tol(tolerance, p, o)]
    if not excess:
        worst = max(p[2] - o[2] for p, o in shared)
        return _finding(
            ENSEMBLE_STRONGEST,
            "pass",
            label,
            max(worst, 0.0),
            f"{label} is at least as strong as {other_label} at every shared epsilon",
        )
    gap, p, o = max(excess)
    return _finding(
        ENSEMBLE_STRONGEST,
        "fail",
        label,
        gap,
        f"ensemble {label} accuracy {p[2]:.3f} exceeds {other_label} accuracy {o[2]:.3f} at eps={p[0]:.4g}; "
        + MEANING[ENSEMBLE_STRONGEST],
    )


def check_white_box(label: str, points, black_label: str, black_points, tolerance: float | None) -> dict[str, Any]:
    """A gradient-free attack must not be clearly stronger than an iterative gradient attack (AutoAttack's flag)."""
    by_eps = {p[0]: p for p in black_points}
    shared = [(p, by_eps[p[0]]) for p in points if p[0] in by_eps and p[0] > 0]
    if not shared:
        return _finding(
            WHITE_BOX_STRONGER, "insufficient_data", label, None, f"{label} and {black_label} share no epsilon > 0"
        )
    gaps = [(p[2] - b[2], p, b) for p, b in shared if p[2] - b[2] > _tol(tolerance, p, b)]
    if not gaps:
        return _finding(
            WHITE_BOX_STRONGER,
            "pass",
            label,
            max(max(p[2] - b[2] for p, b in shared), 0.0),
            f"{label} (white-box) is at least as strong as {black_label} (black-box) at every shared epsilon",
        )
    gap, p, b = max(gaps)
    return _finding(
        WHITE_BOX_STRONGER,
        "warn",
        label,
        gap,
        f"black-box {black_label} accuracy {b[2]:.3f} is below white-box {label} accuracy {p[2]:.3f} "
        f"at eps={p[0]:.4g}; " + MEANING[WHITE_BOX_STRONGER],
    )


def detail_checks(conditions: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> list[dict[str, Any]]:
    """AutoAttack's per-run flags from the conditions' ``attack_details`` (zero gradients, randomised model)."""
    findings: list[dict[str, Any]] = []
    for label in labels:
        details = [c["attack_details"] for c in conditions if c.get("stressor") == label and c.get("attack_details")]
        if not details:
            continue
        attacked = sum(d["members"][0]["attacked"] for d in details if d["members"])
        zero = sum(d["zero_gradient_samples"] for d in details)
        share = zero / attacked if attacked else 0.0
        if zero:
            findings.append(
                _finding(
                    ZERO_GRADIENTS,
                    "warn",
                    label,
                    share,
                    f"{label}: {zero} of {attacked} attacked samples had an all-zero or non-finite input gradient; "
                    + MEANING[ZERO_GRADIENTS],
                )
            )
        else:
            findings.append(
                _finding(ZERO_GRADIENTS, "pass", label, 0.0, f"{label}: no attacked sample had a zero gradient")
            )
        if not any(d["randomised_model"] for d in details):
            findings.append(
                _finding(
                    RANDOMISED, "pass", label, None, f"{label}: two identical forward passes gave the same outputs"
                )
            )
            continue
        eot = max(d["eot_samples"] for d in details)
        if eot > 1:
            message = f"{label}: the model is randomised; EoT with {eot} gradient samples per step was used; "
            findings.append(_finding(RANDOMISED, "warn", label, None, message + MEANING[RANDOMISED]))
        else:
            message = f"{label}: the model is randomised but no EoT was used (eot: never); "
            findings.append(_finding(RANDOMISED, "fail", label, None, message + MEANING[RANDOMISED]))
    return findings


def sanity_checks(
    conditions: Sequence[Mapping[str, Any]],
    *,
    tolerance: float | None = None,
    attacks: Mapping[str, Any] | None = None,
    large_epsilons: Mapping[str, float] | None = None,
    max_large_epsilon_accuracy: float = 0.05,
) -> list[dict[str, Any]]:
    """Run the Carlini et al. 2019 sanity checks over evaluated conditions.

    Args:
        conditions: results.json ``conditions`` (the clean one included).
        tolerance: allowed accuracy difference; None = sampling noise (module docstring).
        attacks: condition ``stressor`` label -> the attack (its class or instance), whose
            traits (``iterative``, ``zero_accuracy_epsilon``, ``stronger_than_single_step``,
            ``norm``) choose the checks; default: the labels that name a registered
            model-aware stressor. Pass it when config entries carry a ``label``.
        large_epsilons: attack label -> smallest ε that counts as a large-ε probe
            (overrides the attack's ``zero_accuracy_epsilon``).
        max_large_epsilon_accuracy: "about 0%" at the probe; default 0.05.

    Returns:
        Findings ``{check, status, attack, observed, message}``, grouped per
        attack label in the order the labels first appear; empty if no attack ran.

    Raises:
        KeyError: a condition lacks ``metrics.n`` or ``metrics.accuracy``.
    """
    attacks = _registered(conditions) if attacks is None else attacks
    traits = {label: attack_traits(attack) for label, attack in attacks.items()}
    curves, clean = _curves(conditions, attacks), _clean(conditions)
    single_step = [(label, pts) for label, pts in curves.items() if not traits[label]["iterative"]]
    findings: list[dict[str, Any]] = []
    for label, points in curves.items():
        trait = traits[label]
        findings.append(check_monotone(label, points, clean, tolerance, trait["breaking_measure"]))
        if trait["iterative"]:
            threshold = (large_epsilons or {}).get(label, trait["zero_accuracy_epsilon"])
            findings.append(check_large_epsilon(label, points, threshold, max_large_epsilon_accuracy))
        if trait["iterative"] and trait["stronger_than_single_step"]:
            for other_label, other_points in single_step:
                if traits[other_label]["norm"] == trait["norm"]:
                    findings.append(check_iterative_stronger(label, points, other_label, other_points, tolerance))
        findings.append(check_zero_epsilon(label, points, clean, tolerance))
        if trait["ensemble"]:
            for other_label, other_points in curves.items():
                if other_label != label and traits[other_label]["norm"] == trait["norm"]:
                    findings.append(check_ensemble(label, points, other_label, other_points, tolerance))
        if trait["iterative"] and trait["needs_gradients"]:
            for other_label, other_points in curves.items():
                if not traits[other_label]["needs_gradients"] and traits[other_label]["norm"] == trait["norm"]:
                    findings.append(check_white_box(label, points, other_label, other_points, tolerance))
    findings += detail_checks(conditions, list(curves))
    return findings
