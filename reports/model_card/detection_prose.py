"""The cards' sentences for an object detector (``task: detection``), from :class:`CardFacts` only.

The same functions as :mod:`reports.model_card.prose` (``overview``, ``intended_use``, ``limitations``,
``bias``, ``risks``, ``verification``), so a renderer picks the module by the task
(:func:`sentences_for`) and calls the same names. ``esc`` is applied to every string from the user's
data. Shares (mAP, recall, precision, D-ECE) are printed with three decimals, differences of shares in
percentage points with one, as for classifiers.
"""

from __future__ import annotations

import sys
from types import ModuleType

from audit.contract.results.detection import DetectionGroup
from reports.model_card import prose
from reports.model_card.detection_facts import DetectionConditionFacts, DetectionFacts
from reports.model_card.facts import CardFacts
from reports.model_card.prose import Esc, _date, _file_name, _names, interval, points, risks, share, verification

__all__ = ["bias", "intended_use", "limitations", "overview", "risks", "sentences_for", "verification"]

_TIDE_WORDS = {
    "classification": "right place, wrong class",
    "localisation": "right class, box off (0.1 ≤ IoU < the match IoU)",
    "both": "wrong class and box off",
    "duplicate": "a second detection of an object already found",
    "background": "a detection where there is no object",
    "missed": "objects never detected",
}


def sentences_for(f: CardFacts) -> ModuleType:
    """The module whose functions write ``f``'s sentences: this one for a detector, :mod:`prose` otherwise."""
    return sys.modules[__name__] if f.task == "detection" else prose


def _det(f: CardFacts) -> DetectionFacts:
    if f.detection is None:
        raise ValueError("detection sentences need detection facts")
    return f.detection


def overview(f: CardFacts, esc: Esc) -> str:
    """One line: what the model is, the verdict, the clean mAP and the operating point."""
    d = _det(f)
    m = d.clean.metrics
    head = f"Object detector ({len(d.class_names)} classes) audited by cvaudit {esc(f.tool_version)}"
    if f.policy is None:
        return head + "."
    verdict = f.policy.verdict.upper()
    verdict = "REPORT ONLY (the policy gates nothing)" if f.policy.report_only else verdict
    return (
        f"{head}: clean mAP@[.5:.95] {share(m.map)} and AP50 {share(m.map_50)} on "
        f"{m.n_images} images with {m.n_objects} objects; at the operating point ({d.operating_point}) recall "
        f"{share(m.recall)}{interval(m.recall_ci)}, precision {share(m.precision)}; policy "
        f"{esc(str(f.policy.name))} verdict {verdict}."
    )


def intended_use(f: CardFacts, esc: Esc) -> list[str]:
    """What the audit supports using the detector for, and the policy's verdict."""
    d = _det(f)
    dataset = esc(_file_name(f.dataset.path))
    out = [
        f"{esc(f.model_name)} detects objects of {len(d.class_names)} classes: {_names(d.class_names, esc)}. "
        f"A detection counts when its score is at least {d.settings.score_threshold:g}; it finds an object when "
        f"its box overlaps the object's with IoU at least {d.settings.iou_threshold:g} (the operating point).",
        f"The audit (cvaudit {esc(f.tool_version)}, {_date(f.finished)}) evaluated it on {f.dataset.num_samples} "
        f"images of {dataset} with {d.ground_truth.num_objects} annotated objects under {len(d.conditions)} "
        "conditions (clean and stressed, listed under Evaluation). It supports use on images like these, for "
        "objects like these and under these conditions only; other images, objects, populations and conditions "
        "were not audited.",
    ]
    return out + prose.policy_use(f, esc)


def _hardest(conditions: list[DetectionConditionFacts]) -> dict[str, DetectionConditionFacts]:
    """Per stressor, the condition with the lowest mAP (the highest severity on ties)."""
    out: dict[str, DetectionConditionFacts] = {}
    for c in conditions:
        if c.metrics.map is None or c.stressor is None:
            continue
        best = out.get(c.stressor)
        if best is None or best.metrics.map is None or c.metrics.map <= best.metrics.map:
            out[c.stressor] = c
    return out


def limitations(f: CardFacts, esc: Esc) -> list[str]:
    """Where the detector is weaker: each stressor's hardest severity, robustness, calibration, error types."""
    d = _det(f)
    clean = d.clean.metrics
    out = []
    for stressor, c in _hardest(d.stressed).items():
        meaning = f" ({esc(c.meaning)})" if c.meaning else ""
        out.append(
            f"{esc(stressor)}: mAP {share(c.metrics.map)} at severity {c.severity}{meaning}, against "
            f"{share(clean.map)} on clean images (a drop of {points(c.map_drop)}); recall at the operating point "
            f"{share(c.metrics.recall)} against {share(clean.recall)}."
        )
    r = d.robustness
    if r is not None and r.mpc is not None:
        out.append(
            f"Corruption robustness (Michaelis et al. 2019): mPC {share(r.mpc)} (mean mAP over the stressors' "
            f"severities), rPC {share(r.rpc)} of the clean mAP {share(r.clean_map)}."
        )
    calibration = d.clean.calibration
    if calibration is not None and calibration.dece is not None:
        out.append(
            f"Calibration on clean images: detection calibration error (D-ECE, IoU ≥ {calibration.iou_threshold:g}, "
            f"{calibration.bins} bins) {share(calibration.dece)} over "
            f"{calibration.detections} detections."
        )
    costly = max(d.clean.tide or [], key=lambda t: t.dap, default=None)
    if costly is not None and costly.dap > 0:
        out.append(
            f"The error type that costs the most AP50 on clean images (TIDE, Bolya et al. 2020) is {costly.error} "
            f"({_TIDE_WORDS.get(costly.error, costly.error)}): {costly.count} occurrences, dAP {share(costly.dap)}."
        )
    small = [g for g in d.clean.groups if g.insufficient_data]
    if small:
        out.append(
            f"{len(small)} group(s) had fewer than {f.evaluation.min_group_size} objects and were not judged: "
            + _names([f"{g.attribute}={g.value} (n = {g.metrics.n_objects})" for g in small], esc)
            + "."
        )
    if f.dataset.num_skipped:
        out.append(f"{f.dataset.num_skipped} image(s) could not be decoded and were left out.")
    if d.num_skipped_annotations:
        out.append(f"{d.num_skipped_annotations} bad annotation(s) were skipped (listed in skipped.csv).")
    out += [esc(n) for n in f.notes]
    if not d.stressed:
        out.append("No stressor was evaluated: robustness is unknown.")
    return out


def _recall_span(c: DetectionConditionFacts, attribute: str) -> tuple[DetectionGroup, DetectionGroup] | None:
    """The judged groups of ``attribute`` under ``c`` with the lowest and the highest recall."""
    judged = [
        g for g in c.groups if g.attribute == attribute and not g.insufficient_data and g.metrics.recall is not None
    ]
    if len(judged) < 2:
        return None
    ranked = sorted(judged, key=lambda g: (g.metrics.recall, g.value))
    return ranked[0], ranked[-1]


def bias(f: CardFacts, esc: Esc) -> list[str]:
    """Recall differences between groups of images and of objects, on clean images and under stress."""
    d = _det(f)
    attributes = list(dict.fromkeys(g.attribute for g in d.clean.groups))
    if not attributes:
        return ["The audit set names no subgroup attributes: differences between groups were not examined."]
    tests = {(t.condition, t.attribute): t for t in d.gap_tests}
    out = []
    for attribute in attributes:
        span = _recall_span(d.clean, attribute)
        if span is None:
            out.append(
                f"{esc(attribute)}: fewer than two groups with at least {f.evaluation.min_group_size} objects; "
                "not compared."
            )
            continue
        worst, best = span
        gap = best.metrics.recall - worst.metrics.recall
        test = tests.get(("clean", attribute))
        p = f" (Holm-adjusted p {_p(test.p_holm)})" if test is not None and test.p_holm is not None else ""
        out.append(
            f"{esc(attribute)}: clean recall at the operating point ranges from {share(worst.metrics.recall)} "
            f"({esc(worst.value)}) to {share(best.metrics.recall)} ({esc(best.value)}), a gap of {points(gap)}{p}."
        )
    stressed = []
    for c in d.stressed:
        for attribute in attributes:
            span = _recall_span(c, attribute)
            if span is not None and span[1].metrics.recall > span[0].metrics.recall:
                stressed.append((span[1].metrics.recall - span[0].metrics.recall, c, attribute, span[0]))
    if stressed:
        gap, c, attribute, worst = max(stressed, key=lambda x: x[0])
        out.append(
            f"The largest recall gap under stress is {points(gap)} for {esc(attribute)} under {esc(c.id)} "
            f"(worst group {esc(worst.value)})."
        )
    image = [a for a in attributes if not a.startswith("object.")]
    objects = [a for a in attributes if a.startswith("object.")]
    kinds = []
    if image:
        kinds.append(f"the image attributes {_names(image, esc)}")
    if objects:
        kinds.append(f"the object groupings {_names(objects, esc)}")
    out.append(f"Groups are those of {' and '.join(kinds)}; characteristics not recorded were not examined.")
    return out


def _p(value: float) -> str:
    """A p-value as a sentence gives it: ``< 0.001`` (a p of exactly 0 is a rounding, not a certainty) or ``= 0.04``."""
    return "< 0.001" if value < 0.001 else f"= {value:.3g}"
