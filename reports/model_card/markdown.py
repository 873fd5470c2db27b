"""The model card's Markdown: the plain card, and the body of the Hugging Face card.

Every string from the user's data is escaped (Markdown markup, pipes, angle
brackets) and flattened to one line, so it cannot break a table or inject HTML
into a rendered card. Numbers come from :class:`~reports.model_card.facts.CardFacts`.
"""

from __future__ import annotations

import re

from reports.model_card import prose
from reports.model_card.facts import CardFacts, ConditionFacts, SliceFacts

__all__ = ["escape", "render_body", "render_markdown"]

_ESCAPE = re.compile(r"([\\`*_\[\]<>|#])")


#: The words for results.json evaluation.interval (absent in results before 1.1: the percentile bootstrap).
_INTERVALS = {
    "wilson": "Wilson score intervals",
    "clopper-pearson": "Clopper-Pearson intervals",
    "bootstrap": "percentile bootstrap intervals",
}


def escape(text: str) -> str:
    """One line of user text, safe inside Markdown prose and table cells."""
    return _ESCAPE.sub(r"\\\1", " ".join(str(text).split()))


def _code(text: str) -> str:
    return f"`{str(text).replace('`', '')}`"


def _ci(ci: tuple[float, float] | None) -> str:
    return "—" if ci is None else f"{ci[0]:.3f}–{ci[1]:.3f}"


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _bullets(items: list[str]) -> list[str]:
    return [f"- {item}" for item in items] + [""]


def _condition_rows(conditions: list[ConditionFacts]) -> list[str]:
    rows = [
        "| condition | severity meaning | n | accuracy | 95 % CI | balanced accuracy | macro F1 | ECE | drop from clean |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in conditions:
        m: SliceFacts = c.overall
        drop = "—" if c.drop is None else f"{100 * c.drop:.1f} pt"
        meaning = escape(c.meaning) if c.meaning else ("probe" if c.probe else "")
        rows.append(
            f"| {escape(c.id)} | {meaning} | {m.n} | {_num(m.accuracy)} | {_ci(m.accuracy_ci)} | "
            f"{_num(m.balanced_accuracy)} | {_num(m.macro_f1)} | {_num(m.ece)} | {drop} |"
        )
    return rows + [""]


def _group_rows(c: ConditionFacts, min_size: int) -> list[str]:
    rows = ["| attribute | group | n | accuracy | 95 % CI | |", "|---|---|---:|---:|---:|---|"]
    for g in c.groups:
        note = f"n < {min_size}: not judged" if g.insufficient_data else ""
        rows.append(
            f"| {escape(g.attribute or '')} | {escape(g.value or '')} | {g.n} | {_num(g.accuracy)} | "
            f"{_ci(g.accuracy_ci)} | {note} |"
        )
    return rows + [""]


def _gap_rows(f: CardFacts) -> list[str]:
    judged = {c.id for c in f.conditions if not c.probe}
    entries = [e for e in f.fairness if e.condition in judged and e.accuracy_gap is not None]
    if not entries:
        return []
    rows = [
        "| condition | attribute | worst group | best group | accuracy gap |",
        "|---|---|---|---|---:|",
    ]
    for e in entries:
        rows.append(
            f"| {escape(e.condition)} | {escape(e.attribute)} | {escape(str(e.worst_group))} | "
            f"{escape(str(e.best_group or '—'))} | {100 * e.accuracy_gap:.1f} pt |"
        )
    return rows + [""]


def render_body(f: CardFacts) -> str:
    """The card's sections, from the first heading to the end (Markdown, ends with a newline)."""
    lines = [f"# Model card: {escape(f.model_name)}", "", prose.overview(f, escape), ""]
    lines += ["## Intended use", ""]
    for paragraph in prose.intended_use(f, escape):
        lines += [paragraph, ""]
    lines += ["## Limitations", ""] + _bullets(prose.limitations(f, escape))
    lines += ["## Bias", ""] + _bullets(prose.bias(f, escape))
    lines += ["## Risks", ""] + _bullets(prose.risks(f, escape))
    lines += ["## Evaluation", ""]
    lines += [
        f"Audit set: {escape(f.dataset.path)}: {f.dataset.num_samples} images evaluated, "
        f"{f.dataset.num_skipped} skipped. Intervals are two-sided 95 %: "
        f"{_INTERVALS.get(str(f.evaluation.interval), _INTERVALS['bootstrap'])} for accuracies, "
        f"a Poisson bootstrap ({f.evaluation.n_bootstrap} replicates) for the other metrics; groups with fewer "
        f"than {f.evaluation.min_group_size} samples take no part in gaps. Shares are in [0, 1]; drops and gaps "
        "in percentage points.",
        "",
    ]
    attributes = f.dataset.attributes
    if attributes:
        parts = [
            f"{escape(a)} ({', '.join(f'{escape(v)}: {n}' for v, n in counts.items())})"
            for a, counts in attributes.items()
        ]
        lines += ["Groups in the audit set: " + "; ".join(parts) + ".", ""]
    lines += ["### Accuracy per condition", ""] + _condition_rows(f.conditions)
    if f.clean.groups:
        lines += ["### Accuracy per group, clean images", ""] + _group_rows(f.clean, f.evaluation.min_group_size)
    gaps = _gap_rows(f)
    if gaps:
        lines += ["### Accuracy gaps between groups", ""] + gaps
    lines += ["## Verification", ""] + _bullets(prose.verification(f, escape, _code))
    lines += [
        f"Generated by cvaudit {escape(f.tool_version)} from the audit of {f.finished} (seed {f.seed}).",
        "",
    ]
    return "\n".join(lines).rstrip() + "\n"


def render_markdown(f: CardFacts) -> str:
    """The plain Markdown card (no front matter)."""
    return render_body(f)
