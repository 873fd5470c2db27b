"""Group fairness of one condition and one attribute (or intersection of attributes).

Pure functions over per-group statistics (a confusion matrix and a few
metrics per group, as ``AuditStats.compute()`` gives them per slot).
Definitions (DESIGN.md, "Metric definitions"), over the *eligible* groups
(n >= min_group_size and n > 0):

- worst_group: the value with the lowest accuracy (first in input order on ties).
- accuracy_gap = max - min accuracy; accuracy_ratio = min / max (None if max = 0).
- equalized_odds_difference: for each class c, binarise (label == c,
  prediction == c); per group TPR_c = TP / (TP + FN) and FPR_c = FP / (FP + TN);
  the class's value is max(TPR gap, FPR gap), each gap being max - min over
  groups; the result is the maximum over classes. This is
  ``fairlearn.metrics.equalized_odds_difference`` per binarised class. A
  group where a rate is undefined (no positives, or no negatives, for that
  class) is left out of that rate's gap — fairlearn would count it as 0.
- demographic_parity_difference: for each class c, max - min over groups of
  the rate of prediction == c; maximum over classes.
- ece_gap = max - min ECE.

Groups below the minimum size are reported in ``excluded`` and take no part
in any gap. With fewer than two eligible groups every value is None.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

_F64 = torch.float64


def _gap(values: Sequence[float | None]) -> float | None:
    defined = [v for v in values if v is not None]
    return max(defined) - min(defined) if len(defined) >= 2 else None


def _rates(confusion) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-class TPR, FPR (NaN where undefined) and selection rate of one group."""
    cm = torch.as_tensor(confusion, dtype=_F64)
    n = cm.sum()
    tp, pos, sel = cm.diag(), cm.sum(dim=1), cm.sum(dim=0)
    fp = sel - tp
    neg = n - pos
    nan = torch.full_like(tp, float("nan"))
    tpr = torch.where(pos > 0, tp / pos.clamp(min=1), nan)
    fpr = torch.where(neg > 0, fp / neg.clamp(min=1), nan)
    return tpr, fpr, sel / n


def _max_class_gap(per_group: torch.Tensor) -> float | None:
    """Max over classes of (max - min over groups), ignoring NaN; (G, K) -> float."""
    defined = ~torch.isnan(per_group)
    counts = defined.sum(dim=0)
    hi = torch.where(defined, per_group, torch.full_like(per_group, -torch.inf)).max(dim=0).values
    lo = torch.where(defined, per_group, torch.full_like(per_group, torch.inf)).min(dim=0).values
    gaps = (hi - lo)[counts >= 2]
    return float(gaps.max()) if gaps.numel() else None


def equalized_odds_difference(confusions: Sequence) -> float | None:
    """Equalized-odds difference, max over one-vs-rest classes (see module docstring).

    Args:
        confusions: one confusion matrix per group (rows = true, cols = predicted).

    Returns:
        The difference, or None when no class has a defined rate in two groups.

    Shape:
        each confusion: (K, K)
    """
    rates = [_rates(cm) for cm in confusions]
    if len(rates) < 2:
        return None
    gaps = [_max_class_gap(torch.stack([r[i] for r in rates])) for i in (0, 1)]
    defined = [g for g in gaps if g is not None]
    return max(defined) if defined else None


def demographic_parity_difference(confusions: Sequence) -> float | None:
    """Demographic-parity difference, max over classes of the selection-rate gap.

    Args:
        confusions: one confusion matrix per (non-empty) group.

    Returns:
        The difference, or None with fewer than two groups.

    Shape:
        each confusion: (K, K)
    """
    if len(confusions) < 2:
        return None
    return _max_class_gap(torch.stack([_rates(cm)[2] for cm in confusions]))


def fairness_summary(groups: Sequence[dict], *, min_group_size: int) -> dict:
    """Fairness gaps between the groups of one attribute under one condition.

    Args:
        groups: one dict per group value with keys ``value``, ``n``,
            ``confusion`` (K x K counts), ``accuracy`` and ``ece`` (None when n = 0).
        min_group_size: groups with fewer samples are excluded from the gaps.

    Returns:
        ``{worst_group, accuracy_gap, accuracy_ratio, equalized_odds_difference,
        demographic_parity_difference, ece_gap, excluded}``; ``excluded`` lists
        the values below the minimum size (empty groups included), and the
        other values are None when fewer than two groups are eligible.

    Raises:
        ValueError: if min_group_size is negative.

    Example:
        >>> g = [{"value": "a", "n": 2, "confusion": [[1, 0], [1, 0]], "accuracy": 0.5, "ece": 0.1},
        ...      {"value": "b", "n": 2, "confusion": [[1, 0], [0, 1]], "accuracy": 1.0, "ece": 0.2}]
        >>> s = fairness_summary(g, min_group_size=1)
        >>> s["worst_group"], s["accuracy_gap"], s["demographic_parity_difference"]
        ('a', 0.5, 0.5)
    """
    if min_group_size < 0:
        raise ValueError(f"min_group_size must be >= 0; got {min_group_size}")
    eligible = [g for g in groups if g["n"] > 0 and g["n"] >= min_group_size]
    excluded = [g["value"] for g in groups if not (g["n"] > 0 and g["n"] >= min_group_size)]
    summary = {
        "worst_group": None,
        "accuracy_gap": None,
        "accuracy_ratio": None,
        "equalized_odds_difference": None,
        "demographic_parity_difference": None,
        "ece_gap": None,
        "excluded": excluded,
    }
    if len(eligible) < 2:
        return summary
    accuracies = [g["accuracy"] for g in eligible]
    worst = min(range(len(eligible)), key=lambda i: accuracies[i])
    lo, hi = min(accuracies), max(accuracies)
    confusions = [g["confusion"] for g in eligible]
    summary.update(
        worst_group=eligible[worst]["value"],
        accuracy_gap=hi - lo,
        accuracy_ratio=lo / hi if hi > 0 else None,
        equalized_odds_difference=equalized_odds_difference(confusions),
        demographic_parity_difference=demographic_parity_difference(confusions),
        ece_gap=_gap([g.get("ece") for g in eligible]),
    )
    return summary
