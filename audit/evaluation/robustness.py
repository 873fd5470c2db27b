"""Robustness summaries over condition results: drops, corruption errors, regressions, disparity.

Pure functions over the ``conditions`` of results.json (each a dict with
``id``, ``stressor`` (None for clean), ``severity``, ``metrics`` (``n``,
``accuracy``, ...), optionally ``confusion``, and ``groups``: a list of
``{attribute, value, metrics}``). Adversarial conditions (``pgd@0.004``) are
stressors like any other, with ε as the severity.

Definitions (error E = 1 - accuracy):

- drop = clean accuracy - condition accuracy (positive = worse).
- corruption error of a stressor: CE = mean over its severities of E_s;
  relative CE = mean over severities of (E_s - E_clean). mCE and relative mCE
  are the means over stressors.
- With a reference model's conditions (ImageNet-C style, where AlexNet is the
  reference): normalized CE = sum_s E_s / sum_s E_s^ref and normalized relative
  CE = sum_s (E_s - E_clean) / sum_s (E_s^ref - E_clean^ref), over the
  severities both have (None where the denominator is 0).
- robustness disparity: per condition and attribute, each eligible group's
  drop from its OWN clean accuracy; disparity = max drop - min drop.
- error shift: per condition, the off-diagonal confusion cells whose share of
  all errors grows most from clean to that condition.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

from audit.contract.metric_specs import ACCURACY
from audit.contract.results import BaselineRow, ConditionResult, Metrics

Conditions = Sequence[Mapping]


def _conditions(results) -> list[Mapping]:
    return list(results["conditions"] if isinstance(results, Mapping) else results)


def _clean(conditions: Conditions) -> Mapping:
    for cond in conditions:
        if cond.get("stressor") is None:
            return cond
    raise ValueError("no clean condition (stressor null) among the conditions")


def _accuracy(metrics: Mapping, min_n: int = 0) -> float | None:
    if metrics.get(ACCURACY.name) is None or metrics.get("n", 0) < max(min_n, 1):
        return None
    return float(metrics[ACCURACY.name])


def _typed_accuracy(metrics: Metrics, min_n: int = 0) -> float | None:
    if metrics.accuracy is None or metrics.n < max(min_n, 1):
        return None
    return float(metrics.accuracy)


def _sub(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def accuracy_drops(conditions: Conditions) -> list[dict]:
    """Accuracy drop from clean for every stressed condition.

    Args:
        conditions: condition summaries including exactly one clean condition.

    Returns:
        ``[{condition, stressor, severity, accuracy, clean_accuracy, drop}]``
        in input order (drop None when an accuracy is undefined).

    Raises:
        ValueError: if there is no clean condition.
    """
    clean_acc = _accuracy(_clean(conditions)["metrics"])
    rows = []
    for cond in conditions:
        if cond.get("stressor") is None:
            continue
        acc = _accuracy(cond["metrics"])
        rows.append(
            {
                "condition": cond["id"],
                "stressor": cond["stressor"],
                "severity": cond.get("severity"),
                ACCURACY.name: acc,
                "clean_accuracy": clean_acc,
                "drop": _sub(clean_acc, acc),
            }
        )
    return rows


def _errors_by_stressor(conditions: Conditions) -> tuple[float | None, dict[str, dict]]:
    clean = _accuracy(_clean(conditions)["metrics"])
    table: dict[str, dict] = defaultdict(dict)
    for cond in conditions:
        acc = _accuracy(cond["metrics"])
        if cond.get("stressor") is not None and acc is not None:
            table[cond["stressor"]][cond.get("severity")] = 1.0 - acc
    return (None if clean is None else 1.0 - clean), table


def _ratio(num: float, den: float) -> float | None:
    return num / den if den != 0 else None


def corruption_errors(conditions: Conditions, *, reference: Conditions | Mapping | None = None) -> dict:
    """Corruption error per stressor and its mean over stressors (mCE style).

    Args:
        conditions: condition summaries (or a results dict) of the audited model.
        reference: optional conditions (or results) of a reference model for
            ImageNet-C style normalisation.

    Returns:
        ``{stressors: [{stressor, severities, ce, relative_ce, normalized_ce,
        normalized_relative_ce}], mce, relative_mce, normalized_mce,
        normalized_relative_mce}``; normalised values are None without a
        reference (or where it lacks the stressor).

    Raises:
        ValueError: if a clean condition is missing.
    """
    e_clean, table = _errors_by_stressor(_conditions(conditions))
    ref_clean, ref_table = _errors_by_stressor(_conditions(reference)) if reference is not None else (None, {})
    rows = []
    for stressor, errs in table.items():
        severities = sorted(errs, key=lambda s: (s is None, s))
        row = {
            "stressor": stressor,
            "severities": severities,
            "ce": _mean(errs.values()),
            "relative_ce": _mean(_sub(e, e_clean) for e in errs.values()),
            "normalized_ce": None,
            "normalized_relative_ce": None,
        }
        shared = [s for s in severities if s in ref_table.get(stressor, {})]
        if shared:
            ref = ref_table[stressor]
            row["normalized_ce"] = _ratio(sum(errs[s] for s in shared), sum(ref[s] for s in shared))
            if e_clean is not None and ref_clean is not None:
                row["normalized_relative_ce"] = _ratio(
                    sum(errs[s] - e_clean for s in shared), sum(ref[s] - ref_clean for s in shared)
                )
        rows.append(row)
    return {
        "stressors": rows,
        "mce": _mean(r["ce"] for r in rows),
        "relative_mce": _mean(r["relative_ce"] for r in rows),
        "normalized_mce": _mean(r["normalized_ce"] for r in rows),
        "normalized_relative_mce": _mean(r["normalized_relative_ce"] for r in rows),
    }


def _slices(cond: Mapping):
    """(attribute, value, metrics) for the overall row (attribute None) and every group."""
    yield None, None, cond["metrics"]
    for group in cond.get("groups", []):
        yield group["attribute"], group["value"], group["metrics"]


def compare_to_baseline(
    results: Sequence[ConditionResult],
    baseline: Sequence[ConditionResult],
    *,
    tolerance: float = 0.01,
    min_group_size: int = 0,
) -> list[BaselineRow]:
    """Did we regress, and where? Candidate vs baseline accuracy per condition and group.

    Args:
        results: the candidate's conditions (``Results.conditions``).
        baseline: the baseline's conditions.
        tolerance: an accuracy drop larger than this is a regression.
        min_group_size: rows where either side has fewer samples are
            ``insufficient_data`` rather than judged.

    Returns:
        One :class:`BaselineRow` per (condition, attribute, value) in either input
        (results.json ``baseline_comparison``), where delta = candidate
        - baseline, and status is ``regressed``, ``ok``,
        ``insufficient_data``, ``missing_in_baseline`` or ``missing_in_candidate``.
    """

    def index(conds: Sequence[ConditionResult]) -> dict[tuple[str, str | None, str | None], Metrics]:
        table: dict[tuple[str, str | None, str | None], Metrics] = {}
        for cond in conds:
            table[(cond.id, None, None)] = cond.metrics
            for group in cond.groups:
                table[(cond.id, group.attribute, group.value)] = group.metrics
        return table

    cand, base = index(results), index(baseline)
    rows = []
    for key in list(cand) + [k for k in base if k not in cand]:
        c, b = cand.get(key), base.get(key)
        acc_c = None if c is None else _typed_accuracy(c, min_group_size)
        acc_b = None if b is None else _typed_accuracy(b, min_group_size)
        delta = _sub(acc_c, acc_b)
        if b is None or c is None:
            status = "missing_in_baseline" if b is None else "missing_in_candidate"
        elif delta is None:
            status = "insufficient_data"
        else:
            status = "regressed" if delta < -tolerance else "ok"
        rows.append(
            BaselineRow(
                condition=key[0],
                attribute=key[1],
                value=key[2],
                n=None if c is None else c.n,
                baseline_n=None if b is None else b.n,
                accuracy=acc_c,
                baseline_accuracy=acc_b,
                delta=delta,
                regressed=status == "regressed",
                status=status,
            )
        )
    return rows


def robustness_disparity(conditions: Conditions, *, min_group_size: int) -> list[dict]:
    """Which group loses most accuracy, from its own clean accuracy, under each condition.

    Args:
        conditions: condition summaries with ``groups`` (or a results dict).
        min_group_size: a group needs at least this many samples in both the
            clean and the stressed condition to take part.

    Returns:
        ``[{condition, stressor, severity, attribute, worst_group, drops:
        {value: drop}, disparity, excluded: [values]}]`` per stressed condition
        and attribute; worst_group and disparity are None with fewer than
        two eligible groups.

    Raises:
        ValueError: if a clean condition is missing.
    """
    conditions = _conditions(conditions)
    clean = {(a, v): m for a, v, m in _slices(_clean(conditions)) if a is not None}
    rows = []
    for cond in conditions:
        if cond.get("stressor") is None:
            continue
        by_attribute: dict[str, list] = defaultdict(list)
        for attribute, value, metrics in _slices(cond):
            if attribute is not None:
                by_attribute[attribute].append((value, metrics))
        for attribute, members in by_attribute.items():
            drops, excluded = {}, []
            for value, metrics in members:
                base = clean.get((attribute, value))
                drop = (
                    None if base is None else _sub(_accuracy(base, min_group_size), _accuracy(metrics, min_group_size))
                )
                if drop is None:
                    excluded.append(value)
                else:
                    drops[value] = drop
            enough = len(drops) >= 2
            rows.append(
                {
                    "condition": cond["id"],
                    "stressor": cond["stressor"],
                    "severity": cond.get("severity"),
                    "attribute": attribute,
                    "worst_group": max(drops, key=drops.get) if enough else None,
                    "drops": drops,
                    "disparity": max(drops.values()) - min(drops.values()) if enough else None,
                    "excluded": excluded,
                }
            )
    return rows


def error_shift(conditions: Conditions, *, top: int = 5) -> list[dict]:
    """How the error pattern moves from clean to each stressed condition.

    For each off-diagonal cell (true t, predicted p): share = count / all
    errors of that condition, rate = count / n. Cells are ranked by the growth
    of their share of errors (clean -> condition).

    Args:
        conditions: condition summaries with ``confusion`` (or a results dict).
        top: how many cells to keep per condition.

    Returns:
        ``[{condition, pairs: [{true, predicted, clean_share, share,
        share_change, clean_rate, rate}]}]`` per stressed condition; shares
        are None when a condition has no errors.
    """
    conditions = _conditions(conditions)

    def shares(confusion):
        n = sum(map(sum, confusion))
        errors = n - sum(confusion[i][i] for i in range(len(confusion)))
        cells = {(t, p): c for t, row in enumerate(confusion) for p, c in enumerate(row) if t != p}
        return (
            {k: c / errors if errors else None for k, c in cells.items()},
            {k: c / n if n else None for k, c in cells.items()},
        )

    clean_share, clean_rate = shares(_clean(conditions)["confusion"])
    rows = []
    for cond in conditions:
        if cond.get("stressor") is None:
            continue
        share, rate = shares(cond["confusion"])
        pairs = [
            {
                "true": t,
                "predicted": p,
                "clean_share": clean_share[(t, p)],
                "share": share[(t, p)],
                "share_change": _sub(share[(t, p)], clean_share[(t, p)] if clean_share[(t, p)] is not None else 0.0),
                "clean_rate": clean_rate[(t, p)],
                "rate": rate[(t, p)],
            }
            for t, p in share
        ]
        pairs.sort(
            key=lambda r: (
                -(r["share_change"] if r["share_change"] is not None else -float("inf")),
                r["true"],
                r["predicted"],
            )
        )
        rows.append({"condition": cond["id"], "pairs": pairs[:top]})
    return rows
