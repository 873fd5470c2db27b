"""The report's line charts over severity: accuracy per stressor, robust accuracy per attack (and per group)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from audit.contract.results import AttackReference, ConditionResult
from reports import plots
from reports.html.charts import ChartView, DataTable, accuracy_of
from reports.html.formatting import finite, fmt_pct

__all__ = ["ATTACK_GROUP_LINES", "adversarial_chart", "severity_chart", "strongest"]

#: Groups drawn as their own lines in the attack chart (beyond: the lowest and highest three).
ATTACK_GROUP_LINES = 6

Base = ConditionResult | AttackReference | None


def _curves(conditions: Sequence[ConditionResult], base: Base, names: set[str]) -> dict[str, list[tuple[float, float]]]:
    """Per stressor in ``names``: (severity, accuracy) of its conditions, after (0, the base's accuracy)."""
    curves: dict[str, list[tuple[float, float]]] = {}
    for c in conditions:
        sev, acc = finite(c.severity), accuracy_of(c)
        if c is base or c.stressor is None or sev is None or acc is None:
            continue
        if str(c.stressor) in names:
            curves.setdefault(str(c.stressor), []).append((sev, acc))
    start = accuracy_of(base)
    if start is not None:
        for points in curves.values():
            points.insert(0, (0.0, start))
    return curves


def _tick(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:.4g}"


def _series_table(
    series: Sequence[plots.Series], *, caption: str, corner: str, x_header: Callable[[float], str]
) -> DataTable:
    """The points of line-chart series as a table: one row per series, one column per x."""
    xs = sorted({float(x) for s in series for x, _ in s.points})
    rows = []
    for s in series:
        by_x = {float(x): y for x, y in s.points}
        rows.append((s.label, [fmt_pct(by_x.get(x)) for x in xs]))
    return DataTable(caption, corner, [x_header(x) for x in xs], rows)


def severity_chart(
    conditions: Sequence[ConditionResult], clean: ConditionResult | None, adversarial: set[str]
) -> ChartView | None:
    """Accuracy against severity, one line per natural stressor; None without stressed conditions."""
    names = {str(c.stressor) for c in conditions if c.stressor is not None} - adversarial
    curves = _curves(conditions, clean, names)
    if not curves:
        return None
    series = [plots.Series(name, pts) for name, pts in sorted(curves.items())]
    title = "Accuracy against stressor severity"
    svg = plots.line_chart(
        series,
        title=title,
        x_label="severity (0 = unaltered images)",
        x_names={0.0: "0 clean"},
        x_words={0.0: "clean"},
        x_prefix="at severity",
    )
    table = _series_table(
        series,
        caption="Accuracy in % per stressor (rows) and severity (columns); severity 0 is the unaltered images.",
        corner="stressor",
        x_header=lambda x: "0 (clean)" if x == 0 else f"severity {_tick(x)}",
    )
    caption = "Accuracy against severity, one line per stressor; 0 is the unaltered images."
    return ChartView(title, svg, caption, table)


def _group_lines(
    conditions: Sequence[ConditionResult], base: Base, attack: str, attribute: str
) -> tuple[dict[str, list[tuple[float, float]]], str]:
    """Robust accuracy per group of ``attribute`` under ``attack``, and a note when some groups are left out."""
    by_group: dict[str, list[tuple[float, float]]] = {}
    for c in [base] + [c for c in conditions if c.stressor == attack]:
        eps = 0.0 if c is base else finite(c.severity)
        if c is not base and eps == 0.0:
            continue  # the clean point is already there
        for g in c.groups if c is not None else []:
            acc = finite(g.metrics.accuracy)
            if g.attribute == attribute and eps is not None and acc is not None:
                by_group.setdefault(str(g.value), []).append((eps, acc))
    if len(by_group) <= ATTACK_GROUP_LINES:
        return by_group, ""
    ranked = sorted(by_group, key=lambda v: max(by_group[v])[1])  # the lowest and highest three at the largest ε
    half = ATTACK_GROUP_LINES // 2
    kept = set(ranked[:half] + ranked[-half:])
    extra = (
        f" (the {half} lowest and {half} highest of {len(by_group)} groups at the largest ε; the"
        f" {len(by_group) - len(kept)} others are in groups.csv)"
    )
    return {v: pts for v, pts in by_group.items() if v in kept}, extra


def strongest(curves: dict[str, list[tuple[float, float]]]) -> str:
    """The attack drawn per group: the lowest mean robust accuracy over the ε that every attack ran
    (when they share one above 0), else over each attack's own points; ties go to the first name.

    Comparing at shared budgets keeps an attack run to a larger ε (PGD to 0.1) from looking stronger
    than an ensemble run only to small ones.
    """
    shared = set.intersection(*({x for x, _ in pts} for pts in curves.values()))
    use = shared if any(x > 0 for x in shared) else None

    def mean(name: str) -> float:
        points = [a for x, a in curves[name] if use is None or x in use]
        return sum(points) / len(points)

    return min(sorted(curves), key=mean)


def adversarial_chart(conditions: Sequence[ConditionResult], base: Base, adversarial: set[str]) -> ChartView | None:
    """Robust accuracy against ε for every attack, and per group of the first attribute for the strongest.

    Args:
        conditions: Every condition.
        base: The clean point: the attacked subset's clean images (``attack_reference``) or the clean condition.
        adversarial: The attack labels.
    """
    curves = _curves(conditions, base, adversarial)
    if not curves:
        return None
    series = [plots.Series(f"{name} (all)", pts) for name, pts in sorted(curves.items())]
    attack = strongest(curves)
    attribute = next((g.attribute for g in base.groups), None) if base is not None else None
    extra = ""
    if attribute is not None:
        by_group, extra = _group_lines(conditions, base, attack, attribute)
        series += [plots.Series(f"{attack}: {attribute} = {v}", pts) for v, pts in by_group.items()]
    title = "Robust accuracy against attack budget epsilon"
    svg = plots.line_chart(
        series,
        title=title,
        x_label="\u03b5 (L\u221e budget in pixel units of [0, 1]; 8/255 \u2248 0.031)",
        x_names={0.0: "0 clean"},
        x_words={0.0: "unattacked"},
        x_prefix="at \u03b5 =",
        y_label="robust accuracy",
    )
    table = _series_table(
        series,
        caption="Robust accuracy in % per attack and group (rows) and attack budget \u03b5 in pixel units of"
        " [0, 1] (columns); \u03b5 = 0 is the attacked images unaltered.",
        corner="attack (group)",
        x_header=lambda x: "\u03b5 = 0 (unattacked)" if x == 0 else f"\u03b5 = {_tick(x)}",
    )
    caption = (
        "Robust accuracy against \u03b5 for every attack, and per group of the first attribute for the strongest"
        f" attack ({attack}: lowest mean robust accuracy at the budgets every attack ran){extra}; \u03b5 = 0 is"
        " the attacked images unaltered."
    )
    return ChartView(title, svg, caption, table)
