"""The terminal summary of ``cvaudit run``: one table, every blocking failure by name, the verdict last.

It only selects and formats what results.json holds: the counts printed are
``policy.counts`` (rules) and ``policy.governance_counts`` (governance
checks), and the failures are ``policy.failures``, so the terminal, the JSON
output, the JUnit file, the pytest plugin and the report tell the same story.
The verdict line and the failure lines are :mod:`audit.contract.fmt`'s (the
pytest plugin prints them too, without click).
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from audit.contract.fmt import failure_lines, interval, power_lines, pp, rate, verdict_line
from audit.contract.metric_specs import ACCURACY
from audit.contract.results import FairnessEntry, PolicyOutcome, Results
from audit.contract.text import neutralise

__all__ = [
    "chance_bound",
    "failure_lines",
    "label_mapping_hint",
    "print_summary",
    "summary_json",
    "verdict_line",
    "verdict_word",
]


def verdict_word(policy: PolicyOutcome | Mapping[str, Any]) -> str:
    """``PASS``, ``FAIL``, or ``REPORT ONLY`` for a policy that gates nothing (``report_only``)."""
    if isinstance(policy, Mapping):  # the section policies.check_policy returns
        policy = PolicyOutcome.model_validate(policy)
    return "REPORT ONLY" if policy.report_only else str(policy.verdict).upper()


def _policy(results: Results) -> PolicyOutcome:
    if results.policy is None:
        raise ValueError("these results were not judged by a policy (no 'policy' section)")
    return results.policy


def summary_json(results: Results, out_dir: Path) -> dict[str, Any]:
    """What ``--format json`` prints: the verdict, the counts, every failure and every rule."""
    policy = _policy(results)
    return {
        "verdict": policy.verdict,
        "report_only": bool(policy.report_only),
        "policy": policy.name,
        "out": str(out_dir),
        "counts": policy.counts,
        "governance_counts": policy.governance_counts or {},
        "blocking_failures": policy.blocking_failures,
        "failures": [f.model_dump(mode="json", exclude_unset=True) for f in policy.failures or []],
        "rules": [
            {k: getattr(r, k) for k in ("id", "status", "blocking", "observed", "threshold", "op")}
            for r in policy.rules
        ],
        "skipped_images": results.dataset.num_skipped,
    }


def _largest_gaps(results: Results) -> dict[str, FairnessEntry]:
    gaps: dict[str, FairnessEntry] = {}
    for f in results.fairness or []:
        gap = f.accuracy_gap
        if gap is None or gap <= 0:  # no group differs: nothing to name
            continue
        if f.condition not in gaps or gap > (gaps[f.condition].accuracy_gap or 0.0):
            gaps[f.condition] = f
    return gaps


#: Clean accuracy within this many binomial standard errors of chance (or below it) gets the label-mapping hint.
CHANCE_SE = 3.0


def chance_bound(num_classes: int, n: int) -> float:
    """The highest clean accuracy that still looks like guessing: 1/K + 3 binomial SE of 1/K at n samples.

    A model whose outputs do not line up with the labels (class folders in another order than
    the model was trained with) scores about 1/K on class-balanced data, or less. Under that
    null, accuracy above 1/K + 3·√(p(1−p)/n), p = 1/K, has probability about 0.1 % (normal
    approximation), so a hint below the bound is rarely wrong about "near chance"; a real but
    weak model can fall under it too, which is why it is a hint and not an error.

    Example:
        >>> round(chance_bound(10, 100), 3)
        0.19
    """
    p = 1.0 / num_classes
    return p + CHANCE_SE * math.sqrt(p * (1.0 - p) / n)


def label_mapping_hint(results: Results, *, from_folders: bool) -> str | None:
    """A hint when the clean accuracy is near chance (:func:`chance_bound`): the label mapping may be wrong.

    Args:
        from_folders: the labels came from the sorted folder names of an image folder
            (``model.class_names`` was not given).
    """
    if results.conditions is None:  # a detection audit: no accuracy to compare with chance
        return None
    clean = next((c for c in results.conditions if c.id == "clean"), None)
    num_classes = results.model.num_classes or 0
    if clean is None or num_classes < 2:
        return None
    n, accuracy = clean.metrics.n or 0, clean.metrics.accuracy
    if not n or accuracy is None or accuracy > chance_bound(num_classes, n):
        return None
    where = (
        "labels come from the class folder names in sorted order; if the model was trained with another "
        "order, list its classes in model.class_names in the order of its outputs"
        if from_folders
        else "check that label k means the model's output k (model.class_names in the order of the outputs)"
    )
    return (
        f"hint: clean accuracy {accuracy:.3f} is near chance for {num_classes} classes (1/{num_classes} = "
        f"{1 / num_classes:.3f}, n = {n}): the label mapping may be wrong; {where}"
    )


def print_summary(results: Results, out_dir: Path, *, fmt: str = "text") -> None:
    """The summary on stdout: a table, the failures, the report path, and the verdict as the last line."""
    if fmt == "json":
        click.echo(json.dumps(summary_json(results, out_dir), indent=2))
        return
    from rich.console import Console
    from rich.text import Text

    def plain(text: str) -> Text:  # users' strings: escapes visible, never read as rich markup
        return Text(neutralise(str(text)))

    console = Console(width=None if sys.stdout.isatty() else 120, highlight=False)
    table = _detection_table(results, plain) if results.detection is not None else _accuracy_table(results, plain)
    console.print(table)
    for line in failure_lines(results):
        console.print(plain(line))
    for line in power_lines(results):
        console.print(plain(line))
    report = out_dir / "report.html"
    console.print(plain(f"report: {report if report.exists() else out_dir}"))
    policy = _policy(results)
    for rule in policy.rules:  # a rule the run gave nothing to judge, said once
        if rule.status == "not_applicable":
            why = rule.message.removeprefix("not applicable: ")
            console.print(plain(f"  NOT APPLICABLE {rule.id}: {why}"))
    colour = "green" if policy.verdict == "pass" else "red"
    colour = "yellow" if policy.report_only else colour
    console.print(Text(neutralise(verdict_line(results)), style=f"bold {colour}"))


def _detection_table(results: Results, plain: Any) -> Any:
    """A detection audit's table: mAP, AP50, the operating point and the group of lowest recall per condition."""
    from rich.table import Table

    section = results.detection
    assert section is not None
    table = Table(title="cvaudit: detection per condition")
    for col in (
        "condition",
        "images",
        "objects",
        "mAP",
        "AP50",
        "Recall",
        "95% CI",
        "Precision",
        "FP/image",
        "lowest recall",
    ):
        table.add_column(col, justify="left" if col in ("condition", "lowest recall") else "right")
    for c in section.conditions:
        m = c.metrics
        eligible = [g for g in c.groups if not g.insufficient_data and g.metrics.recall is not None]
        worst = min(eligible, key=lambda g: (g.metrics.recall, g.attribute, g.value), default=None)
        table.add_row(
            plain(c.id),
            str(m.n_images),
            str(m.n_objects),
            rate(m.map),
            rate(m.map_50),
            rate(m.recall),
            interval(m.recall_ci),
            rate(m.precision),
            "—" if m.fp_per_image is None else f"{m.fp_per_image:.2f}",
            plain("" if worst is None else f"{worst.attribute}={worst.value} ({rate(worst.metrics.recall)})"),
        )
    return table


def _accuracy_table(results: Results, plain: Any) -> Any:
    """A classification audit's table: accuracy with its interval, ECE and the largest gap per condition."""
    from rich.table import Table

    assert results.conditions is not None
    table = Table(title="cvaudit: accuracy per condition")
    for col in ("condition", "n", ACCURACY.phrase, "95% CI", "ECE", "worst group (gap)"):
        table.add_column(col, justify="right" if col not in ("condition", "worst group (gap)") else "left")
    gaps = _largest_gaps(results)
    for c in results.conditions:
        m = c.metrics
        g = gaps.get(c.id)
        label = c.id + (" (probe)" if c.probe else "")
        worst = "" if g is None else f"{g.attribute}={g.worst_group} ({pp(g.accuracy_gap)})"
        table.add_row(
            plain(label),
            str(m.n),
            rate(m.accuracy),
            interval(m.accuracy_ci),
            rate(m.ece),
            plain(worst),
        )
    return table
