"""The report's sentences on a detector's audit (``task: detection``): its summary and its limitations.

Selected and formatted from results.json ``detection``, never computed; user values are marked with
:func:`reports.html.escaping.user`. :mod:`reports.html.prose` calls these for a detector's results and adds
the sentences every audit shares (policy rules, governance checks).
"""

from __future__ import annotations

from audit.contract.results import DetectionCondition, DetectionResults
from reports.group_view import name_some
from reports.html.escaping import user
from reports.html.formatting import finite, fmt_num, fmt_p, fmt_pct, fmt_pp

__all__ = ["attack_sentences", "detection_limitations", "detection_summary", "worst_condition"]

#: Too-small groups named in the limitations (all of them are marked in the tables and groups.csv).
SMALL_GROUPS_LIMIT = 20


def _versions(n: int) -> str:
    return f"{max(n, 0)} altered version{'' if n == 1 else 's'}"


def _p_words(p: object) -> str:
    """``"< 0.001"`` or ``"= 0.620"``."""
    text = fmt_p(p)
    return text if text.startswith("<") else f"= {text}"


def worst_condition(det: DetectionResults) -> DetectionCondition | None:
    """The condition other than the first (clean) with the lowest mAP; None when none has an mAP.

    Attack conditions (``detection.attacks``) are left out: their large-ε probe drives mAP to about 0 by design,
    and the attacks have their own sentence (:func:`attack_sentences`)."""
    attacked = {a.attack for a in det.attacks or []}
    stressed = [c for c in det.conditions[1:] if finite(c.metrics.map) is not None and c.stressor not in attacked]
    return min(stressed, key=lambda c: finite(c.metrics.map), default=None)  # type: ignore[arg-type,return-value]


def attack_sentences(det: DetectionResults) -> list[str]:
    """One sentence per gradient attack: mAP at its smallest ε > 0 against random noise of that size, and its checks."""
    out = []
    for a in det.attacks or []:
        first = next((p for p in a.points if p.epsilon > 0), None)
        if first is None:
            continue
        failed = [f.check for f in a.checks if f.status == "fail"]
        checks = (
            f"{len(failed)} of its {len(a.checks)} sanity checks failed ({', '.join(user(c) for c in failed)})"
            if failed
            else f"no sanity check failed ({sum(f.status == 'pass' for f in a.checks)} of {len(a.checks)} passed)"
        )
        norm = "L\u221e" if a.norm == "linf" else "L2"
        out.append(
            f"Under the gradient attack {user(a.attack)} ({a.objective}, {norm}) mAP fell to {fmt_num(first.map)} at"
            f" \u03b5 = {first.epsilon:.4g} (random noise of that size: {fmt_num(first.map_noise)}); {checks}."
        )
    return out


def detection_summary(det: DetectionResults, *, model: str, num_skipped: int) -> list[str]:
    """Plain-language sentences on what the detector's audit found (``model``: the model file's name)."""
    conditions = det.conditions
    names = sorted({str(c.stressor) for c in conditions if c.stressor is not None})
    gt = det.ground_truth
    out = [
        f"The object detector {user(model)} was tested on {gt.num_images} images with {gt.num_objects} annotated"
        f" objects ({num_skipped} unreadable images skipped) under {len(conditions)} conditions: the unaltered"
        f" images and {_versions(len(conditions) - 1)}" + (f" ({', '.join(user(n) for n in names)})." if names else ".")
    ]
    clean = conditions[0] if conditions else None
    s = det.settings
    if clean is not None:
        m = clean.metrics
        out.append(
            f"On unaltered images its mAP (COCO AP averaged over IoU 0.50 to 0.95) is {fmt_num(m.map)} on a 0 to 1"
            f" scale. At its operating point (score ≥ {s.score_threshold:g}, IoU ≥ {s.iou_threshold:g}) it finds"
            f" {fmt_pct(m.recall)} of the objects (recall), {fmt_pct(m.precision)} of the detections it keeps are"
            f" right (precision), with {fmt_num(m.fp_per_image, 2)} false positives and"
            f" {fmt_num(m.missed_per_image, 2)} missed objects per image."
        )
    worst = worst_condition(det)
    if worst is not None and clean is not None:
        out.append(
            f"The hardest altered-image condition was {user(worst.id)}, where mAP fell to {fmt_num(worst.metrics.map)}"
            f" (unaltered: {fmt_num(clean.metrics.map)}) and recall to {fmt_pct(worst.metrics.recall)}."
        )
    out += attack_sentences(det)
    if det.robustness is not None and finite(det.robustness.rpc) is not None:
        out.append(
            f"Over all stressors it keeps {fmt_pct(det.robustness.rpc)} of its unaltered mAP"
            f" (relative corruption performance rPC; mPC = {fmt_num(det.robustness.mpc)})."
        )
    clean_gaps = [
        t for t in det.gap_tests if clean is not None and t.condition == clean.id and finite(t.gap) is not None
    ]
    if clean_gaps:
        top = max(clean_gaps, key=lambda t: t.gap)  # type: ignore[arg-type,return-value]
        out.append(
            f"Between subgroups of unaltered images, the largest recall gap is {fmt_pp(top.gap)}, for"
            f" {user(top.attribute)} (lowest: {user(top.worst_group)}; Holm-adjusted p {_p_words(top.p_holm)})."
        )
    cal = clean.calibration if clean is not None else None
    if cal is not None and finite(cal.dece) is not None:
        out.append(
            f"Its scores differ from the share of its detections that are right by {fmt_num(cal.dece)} on average"
            f" (detection calibration error D-ECE at IoU {cal.iou_threshold:g}, 0 to 1; 0 is perfect)."
        )
    if det.skipped_annotations:
        out.append(
            f"{len(det.skipped_annotations)} invalid annotations were skipped (listed in the detection section"
            " and skipped.csv)."
        )
    return out


def detection_limitations(det: DetectionResults) -> list[str]:
    """What a detector's numbers do not show, specific to these results where possible."""
    out = [
        "mAP, AP50 and AR follow the COCO definitions (faster-coco-eval): crowd regions are ignored, at most"
        f" {det.settings.max_detections} detections per image count. The operating-point metrics hold for score ≥"
        f" {det.settings.score_threshold:g} and IoU ≥ {det.settings.iou_threshold:g} only; another threshold gives"
        " other numbers.",
        "Intervals are 95% cluster-bootstrap intervals over images (the objects of one image are not independent):"
        " they express sampling uncertainty, not a shift in the population.",
        "The detection calibration error uses equal-width score bins over the detections kept at the operating"
        " point; with few detections per bin it is noisy.",
    ]
    clean = det.conditions[0] if det.conditions else None
    small = [f"{user(g.attribute)} = {user(g.value)}" for g in (clean.groups if clean else []) if g.insufficient_data]
    if small:
        names = name_some(small, limit=SMALL_GROUPS_LIMIT, rest="(marked in the tables and in groups.csv)")
        out.append("Groups with too few objects are shown but left out of the recall gaps: " + names + ".")
    if det.skipped_annotations:
        out.append(
            f"{len(det.skipped_annotations)} invalid annotations were dropped: the metrics do not count those"
            " objects (see skipped.csv)."
        )
    return out
