"""The model card's Markdown: the plain card, and the body of the Hugging Face card.

Every string from the user's data is escaped (Markdown markup, pipes, angle
brackets, control and bidi characters) and flattened to one line, so it cannot break a table or inject HTML
into a rendered card. Numbers come from :class:`~reports.model_card.facts.CardFacts`.
An object detector's card (``task: detection``) has the same sections; its Evaluation holds
the detection tables (:func:`_detection_evaluation`): mAP, AP50, AP75 and the operating point per
condition, per group on clean images, the TIDE error types, the recall gap tests and mPC / rPC.
"""

from __future__ import annotations

from audit.contract.text import markdown_text
from reports.model_card.detection_facts import DetectionFacts
from reports.model_card.detection_prose import sentences_for
from reports.model_card.facts import CardFacts, ConditionFacts, SliceFacts

__all__ = ["escape", "render_body", "render_markdown"]


#: The words for results.json evaluation.interval (absent in results before 1.1: the percentile bootstrap).
_INTERVALS = {
    "wilson": "Wilson score intervals",
    "clopper-pearson": "Clopper-Pearson intervals",
    "bootstrap": "percentile bootstrap intervals",
}


def escape(text: str) -> str:
    """One line of user text, safe inside Markdown prose and table cells (:func:`audit.contract.text.markdown_text`:
    control characters escaped visibly, Markdown markup backslash-escaped)."""
    return markdown_text(text)


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


def _cells(values: list[object]) -> str:
    return "| " + " | ".join(str(v) for v in values) + " |"


def _detection_condition_rows(d: DetectionFacts) -> list[str]:
    rows = [
        "| condition | severity meaning | images | objects | mAP | AP50 | AP75 | precision | recall | recall 95 % CI "
        "| F1 | FP / image | missed / image | D-ECE | mAP drop from clean |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in d.conditions:
        m = c.metrics
        drop = "—" if c.map_drop is None else f"{100 * c.map_drop:.1f} pt"
        rows.append(
            _cells(
                [
                    escape(c.id),
                    escape(c.meaning) if c.meaning else "",
                    m.n_images,
                    m.n_objects,
                    *(_num(v) for v in (m.map, m.map_50, m.map_75, m.precision, m.recall)),
                    _ci(_pair(m.recall_ci)),
                    *(_num(v) for v in (m.f1, m.fp_per_image, m.missed_per_image, c.dece)),
                    drop,
                ]
            )
        )
    return rows + [""]


def _pair(ci: list[float] | None) -> tuple[float, float] | None:
    return None if ci is None else (ci[0], ci[1])


def _detection_group_rows(d: DetectionFacts, min_size: int) -> list[str]:
    rows = [
        "| attribute | level | group | images | objects | mAP | AP50 | recall | 95 % CI | precision | FP / image | |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for g in d.clean.groups:
        m = g.metrics
        note = f"< {min_size} objects: not judged" if g.insufficient_data else ""
        rows.append(
            _cells(
                [
                    escape(g.attribute),
                    g.level,
                    escape(g.value),
                    m.n_images,
                    m.n_objects,
                    *(_num(v) for v in (m.map, m.map_50, m.recall)),
                    _ci(_pair(m.recall_ci)),
                    *(_num(v) for v in (m.precision, m.fp_per_image)),
                    note,
                ]
            )
        )
    return rows + [""]


def _detection_evaluation(f: CardFacts, d: DetectionFacts) -> list[str]:
    """The Evaluation section's text and tables for a detector."""
    truth = d.ground_truth
    lines = [
        f"Audit set: {escape(f.dataset.path)}: {f.dataset.num_samples} images evaluated, {f.dataset.num_skipped} "
        f"skipped; ground truth: {truth.format} annotations {escape(truth.path)} with {truth.num_objects} objects "
        f"({truth.num_crowd} crowd regions), {d.num_skipped_annotations} bad annotation(s) skipped. mAP is COCO AP "
        "averaged over IoU 0.50:0.05:0.95, AP50 and AP75 at one IoU (faster-coco-eval). The operating point "
        f"({d.operating_point}) gives precision, recall, F1, false positives and missed objects per image. "
        f"Intervals are two-sided {round(100 * f.evaluation.confidence_level)} %, from a cluster bootstrap over "
        f"images ({f.evaluation.n_bootstrap} replicates); groups with fewer than {f.evaluation.min_group_size} "
        "objects take no part in gaps. Shares are in [0, 1]; drops and gaps in percentage points.",
        "",
    ]
    if f.dataset.attributes:
        parts = [
            f"{escape(a)} ({', '.join(f'{escape(v)}: {n}' for v, n in counts.items())})"
            for a, counts in f.dataset.attributes.items()
        ]
        lines += ["Image groups in the audit set: " + "; ".join(parts) + ".", ""]
    lines += ["### Detection per condition", ""] + _detection_condition_rows(d)
    if d.clean.groups:
        lines += ["### Per group, clean images", ""] + _detection_group_rows(d, f.evaluation.min_group_size)
    if d.clean.tide:
        lines += ["### Error types on clean images (TIDE)", "", "| error | count | dAP50 |", "|---|---:|---:|"]
        lines += [_cells([t.error, t.count, _num(t.dap)]) for t in d.clean.tide] + [""]
    tests = [t for t in d.gap_tests if t.gap is not None]
    if tests:
        lines += [
            "### Recall gaps between groups",
            "",
            "| condition | attribute | worst group | best group | recall gap | 95 % CI | p (Holm) |",
            "|---|---|---|---|---:|---:|---:|",
        ]
        for t in tests:
            p = "—" if t.p_holm is None else ("< 0.001" if t.p_holm < 0.001 else f"{t.p_holm:.3g}")
            lines.append(
                _cells(
                    [
                        escape(t.condition),
                        escape(t.attribute),
                        escape(str(t.worst_group)),
                        escape(str(t.best_group)),
                        f"{100 * (t.gap or 0.0):.1f} pt",
                        "—" if t.gap_ci is None else f"{100 * t.gap_ci[0]:.1f}–{100 * t.gap_ci[1]:.1f} pt",
                        p,
                    ]
                )
            )
        lines.append("")
    r = d.robustness
    if r is not None and r.mpc is not None:
        lines += [
            "### Corruption robustness",
            "",
            f"mPC {_num(r.mpc)}, rPC {_num(r.rpc)} (clean mAP {_num(r.clean_map)}; Michaelis et al. 2019).",
            "",
            "| stressor | mean mAP | relative to clean |",
            "|---|---:|---:|",
        ]
        lines += [_cells([escape(s.stressor), _num(s.mean_map), _num(s.relative)]) for s in r.stressors] + [""]
    return lines


def _classification_evaluation(f: CardFacts) -> list[str]:
    """The Evaluation section's text and tables for a classifier."""
    lines = [
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
    return lines


def render_body(f: CardFacts) -> str:
    """The card's sections, from the first heading to the end (Markdown, ends with a newline)."""
    prose = sentences_for(f)
    lines = [f"# Model card: {escape(f.model_name)}", "", prose.overview(f, escape), ""]
    lines += ["## Intended use", ""]
    for paragraph in prose.intended_use(f, escape):
        lines += [paragraph, ""]
    lines += ["## Limitations", ""] + _bullets(prose.limitations(f, escape))
    lines += ["## Bias", ""] + _bullets(prose.bias(f, escape))
    lines += ["## Risks", ""] + _bullets(prose.risks(f, escape))
    lines += ["## Evaluation", ""]
    lines += _detection_evaluation(f, f.detection) if f.detection is not None else _classification_evaluation(f)
    lines += ["## Verification", ""] + _bullets(prose.verification(f, escape, _code))
    lines += [
        f"Generated by cvaudit {escape(f.tool_version)} from the audit of {f.finished} (seed {f.seed}).",
        "",
    ]
    return "\n".join(lines).rstrip() + "\n"


def render_markdown(f: CardFacts) -> str:
    """The plain Markdown card (no front matter)."""
    return render_body(f)
