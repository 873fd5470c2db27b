"""Named examples of the model's mistakes: for each failing condition and subgroup, a few misclassified samples.

The examples are selected from the run's ``predictions.csv`` (the evaluator's per-sample record,
:mod:`audit.contract.predictions`), never computed: a *failing target* is the condition (and the
group) of a rule that failed or warned: its decisive target and every target of it whose own
status is ``fail``; for a gap, ratio or fairness rule over an attribute, the group is the lowest
group stored in ``fairness[]`` for that condition and attribute. Per target, up to
:data:`EXAMPLES_PER_TARGET` misclassified samples (``prediction != label``) are named: those the
model gave the lowest probability to the true class (``p_true``), ties broken by sample id, so the
choice is deterministic and shows the clearest mistakes first.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from audit.contract import csvfile
from audit.contract.load import ResultsError, parse_results
from audit.contract.results import Results

__all__ = ["EXAMPLES_PER_TARGET", "error_examples", "failing_targets"]

#: Misclassified samples named per failing condition or subgroup.
EXAMPLES_PER_TARGET = 5


def _fairness_worst(results: Results, condition: str, attribute: str) -> str | None:
    for f in results.fairness or []:
        if f.condition == condition and f.attribute == attribute:
            return f.worst_group
    return None


def _target(results: Results, condition: str | None, group: str | None) -> tuple[str, str | None, str | None] | None:
    """(condition, attribute, value) of one judged target; None when it names no condition of the run."""
    ids = {c.id for c in results.conditions or []}  # a detector's results name no misclassified sample
    if condition is None or condition not in ids:
        return None
    if group is None or group == "":
        return condition, None, None
    attribute, sep, value = group.partition("=")
    if sep:
        return condition, attribute, value
    worst = _fairness_worst(results, condition, attribute)  # a gap or ratio across the attribute's groups
    if worst is not None and "×" not in attribute:
        return condition, attribute, worst
    return condition, None, None


def _in_group(row: Mapping[str, Any], attribute: str, value: str | None) -> bool:
    """Whether a predictions.csv row belongs to the group; an intersection ``a×b = x×y`` is matched column by column."""
    attributes, values = attribute.split("×"), str(value).split("×")
    back = csvfile.read_back  # the file holds names and values with control characters escaped
    return len(attributes) == len(values) and all(row.get(back(a)) == back(v) for a, v in zip(attributes, values))


def failing_targets(results: Results) -> list[tuple[str, str | None, str | None]]:
    """The (condition, attribute, value) targets of the failed and warned rules, in rule order, each once."""
    out: list[tuple[str, str | None, str | None]] = []
    for rule in results.policy.rules if results.policy else []:
        if rule.kind == "finding" or rule.status not in ("fail", "warn"):
            continue
        found = [_target(results, rule.condition, rule.group)]
        for e in rule.evaluations or []:
            if e.status == "fail":
                found.append(_target(results, e.condition, e.group))
        for t in found:
            if t is not None and t not in out:
                out.append(t)
    return out


def _typed(results: Results | Mapping[str, Any]) -> Results:
    return results if isinstance(results, Results) else parse_results(dict(results), source="results")


def _float(text: str | None) -> float:
    try:
        value = float(text or "nan")
    except ValueError:
        return math.inf
    return value if math.isfinite(value) else math.inf


def error_examples(
    results: Results | Mapping[str, Any],
    predictions: str | os.PathLike[str] | None,
    *,
    limit: int = EXAMPLES_PER_TARGET,
) -> list[dict[str, Any]]:
    """Per failing target, its misclassified samples with the lowest ``p_true`` (see the module docstring).

    Args:
        results: The results (a mapping as in results.json is validated once).
        predictions: The run's predictions.csv; None (or a missing file) gives no examples.
        limit: Samples named per target.

    Returns:
        One dict per failing target: ``condition``, ``attribute``, ``value`` (None for a whole
        condition), ``errors`` (misclassified samples of the target in predictions.csv) and
        ``samples``: up to ``limit`` dicts with ``sample_id``, ``label``, ``prediction`` (class
        names where results.json names them) and ``p_true`` (a float).

    Raises:
        ResultsError: ``results`` is a mapping that is not valid results.
    """
    if predictions is None or not Path(predictions).is_file():
        return []
    if not isinstance(results, Results):
        results = parse_results(dict(results), source="results")
    targets = failing_targets(results)
    if not targets:
        return []
    names = list(results.model.class_names)
    kept: dict[tuple, list] = {t: [] for t in targets}
    errors = dict.fromkeys(targets, 0)
    by_condition: dict[str, list[tuple]] = {}
    for t in targets:
        by_condition.setdefault(t[0], []).append(t)
    for row in csvfile.DictReader(csvfile.lines(predictions, what="predictions.csv", error=ResultsError)):
        wanted = by_condition.get(row.get("condition") or "")
        if not wanted or row.get("label") == row.get("prediction"):
            continue
        key = (_float(row.get("p_true")), str(row.get("sample_id")))
        for t in wanted:
            if t[1] is not None and not _in_group(row, t[1], t[2]):
                continue
            errors[t] += 1
            kept[t].append((key, row))
            if len(kept[t]) > 8 * limit:  # bounded memory: keep only the best ``limit`` so far
                kept[t] = sorted(kept[t], key=lambda item: item[0])[:limit]
    out = []
    for t in targets:
        rows = [row for _, row in sorted(kept[t], key=lambda item: item[0])[:limit]]
        out.append(
            {
                "condition": t[0],
                "attribute": t[1],
                "value": t[2],
                "errors": errors[t],
                "samples": [
                    {
                        "sample_id": row.get("sample_id"),
                        "label": _class(row.get("label"), names),
                        "prediction": _class(row.get("prediction"), names),
                        "p_true": _float(row.get("p_true")),
                    }
                    for row in rows
                ],
            }
        )
    return out


def _class(index: str | None, names: list[str]) -> str:
    try:
        i = int(index or "")
    except ValueError:
        return str(index)
    return names[i] if 0 <= i < len(names) else str(i)
