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
  groups); the result is the maximum over classes. A rate that is undefined in
  a group (no positives, or no negatives, of that class) counts as 0, as in
  fairlearn (``equalized_odds_difference`` of each binarised class gives the
  same number). With ``min_positives`` > 0 a rate whose denominator (positives
  of the class for the TPR, negatives for the FPR) is below it is left out of
  that rate's gap instead — so an undefined rate is then never used;
- ``demographic_parity_difference``: for each class c, max - min over groups
  of the rate of prediction == c; the maximum over classes. It compares what
  the model predicts, not whether it is right: groups whose labels differ
  (other base rates) differ in it even under a perfect model.

Each difference comes with the *driver* of its value (``equalized_odds_driver``,
``demographic_parity_driver``): the class, the rate, the two groups and the
sample counts behind the two rates (positives, negatives or group sizes), so a
reader sees the n that decided it. With ``level`` set the entry also carries
``tests``: for every gap and difference, the Holm-corrected test of "no
difference" (:func:`audit.contract.gaptests.entry_tests`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from audit.contract.gaptests import RATE_DIFFERENCES, entry_tests
from audit.contract.metric_specs import (
    ACCURACY,
    DEMOGRAPHIC_PARITY_DIFFERENCE,
    EQUALIZED_ODDS_DIFFERENCE,
    gap_metric_names,
    ratio_metric_names,
)
from audit.contract.participation import takes_part

__all__ = [
    "GAP_METRICS",
    "RATIO_METRICS",
    "demographic_parity_difference",
    "demographic_parity_driver",
    "equalized_odds_difference",
    "equalized_odds_driver",
    "fairness_summary",
    "takes_part",
]

#: Group metrics whose spread (max - min) every fairness entry carries as ``<metric>_gap`` (from the registry).
GAP_METRICS = gap_metric_names()
#: Higher-is-better group metrics whose ``min / max`` every fairness entry carries as ``<metric>_ratio``.
RATIO_METRICS = ratio_metric_names()
_EQUALIZED_ODDS, _DEMOGRAPHIC_PARITY = EQUALIZED_ODDS_DIFFERENCE.name, DEMOGRAPHIC_PARITY_DIFFERENCE.name


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if np.isfinite(value) else None


def _rates(confusion: Any, min_positives: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-class (rate, denominator) of one group: TPR, FPR (see the module docstring) and selection."""
    cm = np.asarray(confusion, dtype=np.float64)
    n = cm.sum()
    tp, pos, sel = np.diag(cm), cm.sum(axis=1), cm.sum(axis=0)
    fp, neg = sel - tp, n - pos
    with np.errstate(divide="ignore", invalid="ignore"):
        tpr = np.where(pos > 0, tp / np.maximum(pos, 1), 0.0)  # fairlearn: an undefined rate is 0
        fpr = np.where(neg > 0, fp / np.maximum(neg, 1), 0.0)
    if min_positives > 0:
        tpr = np.where(pos >= min_positives, tpr, np.nan)
        fpr = np.where(neg >= min_positives, fpr, np.nan)
    return {"tpr": (tpr, pos), "fpr": (fpr, neg), "selection": (sel / n, np.full_like(sel, n))}


def _driver(
    rates: Sequence[dict[str, tuple[np.ndarray, np.ndarray]]], kinds: Sequence[str], names: Sequence[str]
) -> dict[str, Any] | None:
    """The largest (max - min over groups) of a per-class rate, and what drove it.

    Returns:
        ``{value, class_index, rate, groups: [low, high], n: [low, high]}`` or None when no class
        has the rate defined in two groups. Ties go to the lower class, then TPR before FPR.
    """
    best: dict[str, Any] | None = None
    for kind in kinds:
        per_group = np.stack([r[kind][0] for r in rates])  # (G, K)
        denominators = np.stack([r[kind][1] for r in rates])
        for c in range(per_group.shape[1]):
            column = per_group[:, c]
            defined = np.flatnonzero(~np.isnan(column))
            if defined.size < 2:
                continue
            lo = int(defined[np.argmin(column[defined])])
            hi = int(defined[np.argmax(column[defined])])
            value = float(column[hi] - column[lo])
            if best is None or value > best["value"] or (value == best["value"] and c < best["class_index"]):
                best = {
                    "value": value,
                    "class_index": c,
                    "rate": kind,
                    "groups": [str(names[lo]), str(names[hi])],
                    "n": [int(denominators[lo, c]), int(denominators[hi, c])],
                }
    return best


def equalized_odds_difference(confusions: Sequence[Any], *, min_positives: int = 0) -> float | None:
    """Equalized-odds difference, max over one-vs-rest classes (see the module docstring).

    Args:
        confusions: one confusion matrix per group (rows = true, cols = predicted).
        min_positives: rates with a smaller denominator are left out (0: fairlearn's convention).

    Returns:
        The difference, or None when no class has a rate in two groups.

    Shape:
        each confusion: (K, K)
    """
    detail = equalized_odds_driver(confusions, [str(i) for i in range(len(confusions))], min_positives=min_positives)
    return None if detail is None else detail["value"]


def equalized_odds_driver(
    confusions: Sequence[Any], names: Sequence[str], *, min_positives: int = 0
) -> dict[str, Any] | None:
    """The equalized-odds difference with the class, rate, groups and counts that produced it.

    Returns:
        ``{value, class_index, rate ("tpr" | "fpr"), groups: [low, high], n: [low, high]}`` or None.
    """
    if len(confusions) < 2:
        return None
    return _driver([_rates(cm, min_positives) for cm in confusions], ("tpr", "fpr"), names)


def demographic_parity_difference(confusions: Sequence[Any]) -> float | None:
    """Demographic-parity difference: max over classes of the selection-rate gap.

    Args:
        confusions: one confusion matrix per (non-empty) group.

    Returns:
        The difference, or None with fewer than two groups.

    Shape:
        each confusion: (K, K)
    """
    detail = demographic_parity_driver(confusions, [str(i) for i in range(len(confusions))])
    return None if detail is None else detail["value"]


def demographic_parity_driver(confusions: Sequence[Any], names: Sequence[str]) -> dict[str, Any] | None:
    """The demographic-parity difference with the class, groups and group sizes that produced it.

    Returns:
        ``{value, class_index, rate: "selection", groups: [low, high], n: [low, high]}`` or None.
    """
    if len(confusions) < 2:
        return None
    return _driver([_rates(cm) for cm in confusions], ("selection",), names)


def _spread(groups: Sequence[Mapping[str, Any]], metric: str) -> tuple[float | None, float | None]:
    values = [v for g in groups if (v := _number(g.get(metric))) is not None]
    if len(values) < 2:
        return None, None
    lo, hi = min(values), max(values)
    return hi - lo, (lo / hi if hi > 0 else None)


def fairness_summary(
    groups: Sequence[Mapping[str, Any]], *, min_group_size: int, min_positives: int = 0, level: float | None = None
) -> dict[str, Any]:
    """Every group statistic of one condition and one grouping (see the module docstring).

    Args:
        groups: one dict per group value with ``value``, ``n``, ``confusion``
            and the group metrics (None where undefined) with their ``<metric>_ci``.
        min_group_size: groups with fewer samples take no part.
        min_positives: per-class rates of equalized odds with a smaller denominator are
            left out (0: undefined rates count as 0, as in fairlearn).
        level: when given, add ``tests`` (see the module docstring) at this confidence.

    Returns:
        ``{min_group_size, min_positives, groups_compared, worst_group, best_group,
        equalized_odds_difference, equalized_odds_driver, demographic_parity_difference,
        demographic_parity_driver, excluded, exclusions, <m>_gap for m in GAP_METRICS,
        <m>_ratio for m in RATIO_METRICS[, tests]}``; ``excluded`` lists the values left
        out and ``exclusions`` gives ``{value, n, reason}`` for each.

    Raises:
        ValueError: ``min_group_size`` or ``min_positives`` is negative.

    Example:
        >>> g = [{"value": "a", "n": 2, "confusion": [[1, 0], [1, 0]], "accuracy": 0.5, "ece": 0.1},
        ...      {"value": "b", "n": 2, "confusion": [[1, 0], [0, 1]], "accuracy": 1.0, "ece": 0.2}]
        >>> s = fairness_summary(g, min_group_size=1)
        >>> s["worst_group"], s["accuracy_gap"], s["demographic_parity_difference"]
        ('a', 0.5, 0.5)
    """
    if min_group_size < 0:
        raise ValueError(f"min_group_size must be >= 0; got {min_group_size}")
    if min_positives < 0:
        raise ValueError(f"min_positives must be >= 0; got {min_positives}")
    taking_part = [g for g in groups if takes_part(g.get("n"), min_group_size)]
    exclusions = [
        {"value": g.get("value"), "n": g.get("n"), "reason": "empty" if not g.get("n") else "below min_group_size"}
        for g in groups
        if not takes_part(g.get("n"), min_group_size)
    ]
    summary: dict[str, Any] = {
        "min_group_size": min_group_size,
        "min_positives": min_positives,
        "groups_compared": len(taking_part),
        "worst_group": None,
        "best_group": None,
        _EQUALIZED_ODDS: None,
        "equalized_odds_driver": None,
        _DEMOGRAPHIC_PARITY: None,
        "demographic_parity_driver": None,
        "excluded": [e["value"] for e in exclusions],
        "exclusions": exclusions,
    }
    for metric in GAP_METRICS:
        summary[f"{metric}_gap"] = None
    for metric in RATIO_METRICS:
        summary[f"{metric}_ratio"] = None
    if level is not None:
        summary["tests"] = {}
    if len(taking_part) < 2:
        return summary
    scored = [(a, i) for i, g in enumerate(taking_part) if (a := _number(g.get(ACCURACY.name))) is not None]
    if scored:
        summary["worst_group"] = taking_part[min(scored, key=lambda s: (s[0], s[1]))[1]].get("value")
        summary["best_group"] = taking_part[max(scored, key=lambda s: (s[0], -s[1]))[1]].get("value")
    confusions = [g["confusion"] for g in taking_part if g.get("confusion") is not None]
    if len(confusions) == len(taking_part):
        names = [str(g.get("value")) for g in taking_part]
        eo = equalized_odds_driver(confusions, names, min_positives=min_positives)
        dp = demographic_parity_driver(confusions, names)
        summary[_EQUALIZED_ODDS] = None if eo is None else eo.pop("value")
        summary["equalized_odds_driver"] = eo
        summary[_DEMOGRAPHIC_PARITY] = None if dp is None else dp.pop("value")
        summary["demographic_parity_driver"] = dp
    for metric in GAP_METRICS:
        gap, ratio = _spread(taking_part, metric)
        summary[f"{metric}_gap"] = gap
        if metric in RATIO_METRICS:
            summary[f"{metric}_ratio"] = ratio
    if level is not None:
        summary["tests"] = entry_tests(
            taking_part, statistics=(*GAP_METRICS, *RATE_DIFFERENCES), min_group_size=min_group_size, level=level
        )
    return summary
