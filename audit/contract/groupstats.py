"""Group statistics of one condition and one grouping: the one definition of every gap.

The evaluator fills results.json's ``fairness`` entries with
:func:`fairness_summary`; a policy rule that raises the minimum group size
(``min_samples`` above ``evaluation.min_group_size``) calls the same function
on the stored groups. So the report, the stored fairness table and the verdict
can never compute a gap two ways.

Inputs are per-group dicts as stored in results.json (``value`` and the
group's metrics: ``n``, ``confusion`` (K x K counts, rows = true class),
``accuracy``, ``ece``, ...). A group *takes part* when ``n > 0`` and
``n >= min_group_size``; the others are listed in ``exclusions`` with the
reason (``empty`` or ``below min_group_size``) and take no part in any value.

Definitions, over the groups that take part (at least two, else every value
is None):

- ``worst_group`` / ``best_group``: lowest / highest accuracy (first in input
  order on ties);
- ``<m>_gap`` = max - min of group metric ``m`` for every metric in
  :data:`GAP_METRICS`; ``<m>_ratio`` = min / max for the metrics in
  :data:`RATIO_METRICS` (None when max = 0);
- ``equalized_odds_difference``: for each class c, binarise (label == c,
  prediction == c); per group TPR = TP / (TP + FN), FPR = FP / (FP + TN); the
  class's value is the larger of the TPR gap and the FPR gap (max - min over
  groups); the result is the maximum over classes. A group in which a rate is
  undefined (no positives, or no negatives, of that class) is left out of that
  rate's gap (fairlearn would count the rate as 0);
- ``demographic_parity_difference``: for each class c, max - min over groups
  of the rate of prediction == c; the maximum over classes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "GAP_METRICS",
    "RATIO_METRICS",
    "demographic_parity_difference",
    "equalized_odds_difference",
    "fairness_summary",
    "takes_part",
]

#: Group metrics whose spread (max - min) every fairness entry carries as ``<metric>_gap``.
GAP_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "top_k_accuracy", "ece", "brier", "nll")
#: Higher-is-better group metrics whose ``min / max`` every fairness entry carries as ``<metric>_ratio``.
RATIO_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "top_k_accuracy")


def takes_part(n: Any, min_group_size: int) -> bool:
    """Whether a group of ``n`` samples is large enough to judge (the one definition)."""
    return isinstance(n, int) and n > 0 and n >= min_group_size


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if np.isfinite(value) else None


def _rates(confusion: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class TPR, FPR (NaN where undefined) and selection rate of one group."""
    cm = np.asarray(confusion, dtype=np.float64)
    n = cm.sum()
    tp, pos, sel = np.diag(cm), cm.sum(axis=1), cm.sum(axis=0)
    fp, neg = sel - tp, n - pos
    with np.errstate(divide="ignore", invalid="ignore"):
        tpr = np.where(pos > 0, tp / np.maximum(pos, 1), np.nan)
        fpr = np.where(neg > 0, fp / np.maximum(neg, 1), np.nan)
    return tpr, fpr, sel / n


def _max_class_gap(per_group: np.ndarray) -> float | None:
    """Max over classes of (max - min over groups), ignoring NaN; (G, K) -> float."""
    defined = ~np.isnan(per_group)
    counts = defined.sum(axis=0)
    hi = np.where(defined, per_group, -np.inf).max(axis=0)
    lo = np.where(defined, per_group, np.inf).min(axis=0)
    gaps = (hi - lo)[counts >= 2]
    return float(gaps.max()) if gaps.size else None


def equalized_odds_difference(confusions: Sequence[Any]) -> float | None:
    """Equalized-odds difference, max over one-vs-rest classes (see the module docstring).

    Args:
        confusions: one confusion matrix per group (rows = true, cols = predicted).

    Returns:
        The difference, or None when no class has a defined rate in two groups.

    Shape:
        each confusion: (K, K)
    """
    if len(confusions) < 2:
        return None
    rates = [_rates(cm) for cm in confusions]
    gaps = [_max_class_gap(np.stack([r[i] for r in rates])) for i in (0, 1)]
    defined = [g for g in gaps if g is not None]
    return max(defined) if defined else None


def demographic_parity_difference(confusions: Sequence[Any]) -> float | None:
    """Demographic-parity difference: max over classes of the selection-rate gap.

    Args:
        confusions: one confusion matrix per (non-empty) group.

    Returns:
        The difference, or None with fewer than two groups.

    Shape:
        each confusion: (K, K)
    """
    if len(confusions) < 2:
        return None
    return _max_class_gap(np.stack([_rates(cm)[2] for cm in confusions]))


def _spread(groups: Sequence[Mapping[str, Any]], metric: str) -> tuple[float | None, float | None]:
    values = [v for g in groups if (v := _number(g.get(metric))) is not None]
    if len(values) < 2:
        return None, None
    lo, hi = min(values), max(values)
    return hi - lo, (lo / hi if hi > 0 else None)


def fairness_summary(groups: Sequence[Mapping[str, Any]], *, min_group_size: int) -> dict[str, Any]:
    """Every group statistic of one condition and one grouping (see the module docstring).

    Args:
        groups: one dict per group value with ``value``, ``n``, ``confusion``
            and the group metrics (None where undefined).
        min_group_size: groups with fewer samples take no part.

    Returns:
        ``{min_group_size, groups_compared, worst_group, best_group,
        equalized_odds_difference, demographic_parity_difference, excluded,
        exclusions, <m>_gap for m in GAP_METRICS, <m>_ratio for m in
        RATIO_METRICS}``; ``excluded`` lists the values left out and
        ``exclusions`` gives ``{value, n, reason}`` for each.

    Raises:
        ValueError: ``min_group_size`` is negative.

    Example:
        >>> g = [{"value": "a", "n": 2, "confusion": [[1, 0], [1, 0]], "accuracy": 0.5, "ece": 0.1},
        ...      {"value": "b", "n": 2, "confusion": [[1, 0], [0, 1]], "accuracy": 1.0, "ece": 0.2}]
        >>> s = fairness_summary(g, min_group_size=1)
        >>> s["worst_group"], s["accuracy_gap"], s["demographic_parity_difference"]
        ('a', 0.5, 0.5)
    """
    if min_group_size < 0:
        raise ValueError(f"min_group_size must be >= 0; got {min_group_size}")
    taking_part = [g for g in groups if takes_part(g.get("n"), min_group_size)]
    exclusions = [
        {"value": g.get("value"), "n": g.get("n"), "reason": "empty" if not g.get("n") else "below min_group_size"}
        for g in groups
        if not takes_part(g.get("n"), min_group_size)
    ]
    summary: dict[str, Any] = {
        "min_group_size": min_group_size,
        "groups_compared": len(taking_part),
        "worst_group": None,
        "best_group": None,
        "equalized_odds_difference": None,
        "demographic_parity_difference": None,
        "excluded": [e["value"] for e in exclusions],
        "exclusions": exclusions,
    }
    for metric in GAP_METRICS:
        summary[f"{metric}_gap"] = None
    for metric in RATIO_METRICS:
        summary[f"{metric}_ratio"] = None
    if len(taking_part) < 2:
        return summary
    scored = [(a, i) for i, g in enumerate(taking_part) if (a := _number(g.get("accuracy"))) is not None]
    if scored:
        summary["worst_group"] = taking_part[min(scored, key=lambda s: (s[0], s[1]))[1]].get("value")
        summary["best_group"] = taking_part[max(scored, key=lambda s: (s[0], -s[1]))[1]].get("value")
    confusions = [g["confusion"] for g in taking_part if g.get("confusion") is not None]
    if len(confusions) == len(taking_part):
        summary["equalized_odds_difference"] = equalized_odds_difference(confusions)
        summary["demographic_parity_difference"] = demographic_parity_difference(confusions)
    for metric in GAP_METRICS:
        gap, ratio = _spread(taking_part, metric)
        summary[f"{metric}_gap"] = gap
        if metric in RATIO_METRICS:
            summary[f"{metric}_ratio"] = ratio
    return summary
