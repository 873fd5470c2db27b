"""Robust-mAP curves of a detection attack and their sanity checks (Carlini et al. 2019, Section 5,
carried over from :mod:`audit.evaluation.adversarial_checks` to detection).

A curve (:class:`AttackCurve`) holds, for one attack (its norm and objective) and every ε: the
COCO mAP@[.5:.95] and the recall at the operating point (``score_threshold``, ``iou_threshold``)
under the attack and under **random noise of the same norm and ε** (the attack's
:meth:`~stressors.attacks.detection.DetectionPGD.noise`), and the attack's per-image objective
on the clean image and at the returned image. :func:`robust_map_curve` measures it on a batch
list at the API level; the detection pass builds the same points from its conditions.

**Checks** (:func:`attack_sanity_checks`; the ids are stable, policy rules name them), findings
``{check, status, attack, observed, message}`` with status ``pass | fail | warn | insufficient_data``:

- ``detection_attack.zero_epsilon_matches_clean``: mAP at ε = 0 equals clean mAP (the ε = 0
  replay returns the clean pixels, so any difference is a bug of the attack path). Tolerance
  1e-9 (float slack). ``observed`` = the absolute difference.
- ``detection_attack.monotone_in_epsilon``: mAP does not rise with ε by more than ``tolerance``
  (default 0.02 mAP; the attack is deterministic per sample, the slack covers the different random
  starts of each ε). ``observed`` = the largest rise.
- ``detection_attack.stronger_than_noise``: at every ε > 0, the attack's mAP is not above the
  noise's mAP + ``tolerance``. ``observed`` = the largest excess (negative: how much stronger).
- ``detection_attack.large_epsilon_zero_recall`` (gradient masking): at the attack's largest ε,
  if it is at least the class's ``zero_recall_epsilon`` (0.3 L∞, 10 L2), recall at the
  operating point is <= ``max_large_epsilon_recall`` (default 0.05); below that ε the finding is
  ``insufficient_data``. ``observed`` = that recall.
- ``detection_attack.loss_decreases`` (gradient masking): at every ε > 0 the attack lowered its
  objective below the clean image's on at least ``min_loss_decrease_share`` (default 0.9) of the
  images whose clean objective is > 0. ``observed`` = the smallest share; below it: ``fail``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from audit.contract.results import DetectionAttack
from audit.evaluation.detection.coco_metrics import CocoEvaluator, ImageDetections, ImageTruth, write_detections_json
from audit.evaluation.detection.operating_point import count_matches, match_images, summarize

ZERO_EPSILON = "detection_attack.zero_epsilon_matches_clean"
MONOTONE = "detection_attack.monotone_in_epsilon"
STRONGER_THAN_NOISE = "detection_attack.stronger_than_noise"
LARGE_EPSILON = "detection_attack.large_epsilon_zero_recall"
LOSS_DECREASES = "detection_attack.loss_decreases"
CHECKS = (ZERO_EPSILON, MONOTONE, STRONGER_THAN_NOISE, LARGE_EPSILON, LOSS_DECREASES)

#: Default tolerance of the monotonicity and noise checks, in mAP (and recall) units.
DEFAULT_TOLERANCE = 0.02


@dataclass(frozen=True)
class CurvePoint:
    """One ε of a robust-mAP curve.

    Attributes:
        epsilon: the ε (the attack's norm, pixel units of [0, 1] at the model's input).
        map: COCO mAP@[.5:.95] under the attack.
        recall: recall at the operating point under the attack (None: no ground-truth object).
        map_noise, recall_noise: the same under random noise of the same norm and ε.
        loss_clean, loss_final: mean per-image objective on the clean and the attacked images.
        loss_decrease_share: share of images with a clean objective > 0 whose objective the attack
            lowered (None: no such image).
    """

    epsilon: float
    map: float
    recall: float | None
    map_noise: float
    recall_noise: float | None
    loss_clean: float
    loss_final: float
    loss_decrease_share: float | None


@dataclass(frozen=True)
class AttackCurve:
    """mAP versus ε of one attack (see the module docstring)."""

    attack: str
    norm: str
    objective: str
    zero_recall_epsilon: float
    clean_map: float
    clean_recall: float | None
    points: list[CurvePoint] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _finding(check: str, status: str, attack: str, observed: float | None, message: str) -> dict[str, Any]:
    return {"check": check, "status": status, "attack": attack, "observed": observed, "message": message}


def attack_sanity_checks(
    curve: AttackCurve,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    max_large_epsilon_recall: float = 0.05,
    min_loss_decrease_share: float = 0.9,
) -> list[dict[str, Any]]:
    """Run the five checks of the module docstring over one curve, in the order of :data:`CHECKS`."""
    label, points = curve.attack, sorted(curve.points, key=lambda p: p.epsilon)
    out: list[dict[str, Any]] = []
    zero = next((p for p in points if p.epsilon == 0.0), None)
    if zero is None:
        out.append(_finding(ZERO_EPSILON, "insufficient_data", label, None, f"{label}: no eps=0 condition"))
    else:
        diff = abs(zero.map - curve.clean_map)
        status = "pass" if diff <= 1e-9 else "fail"
        out.append(
            _finding(
                ZERO_EPSILON,
                status,
                label,
                diff,
                f"{label}: mAP at eps=0 {zero.map:.4f}, clean {curve.clean_map:.4f}"
                + ("" if status == "pass" else "; the attack changes images at eps=0 or its path differs"),
            )
        )
    series = [(0.0, curve.clean_map)] if not points or points[0].epsilon > 0 else []
    series += [(p.epsilon, p.map) for p in points]
    if len(series) < 2:
        out.append(_finding(MONOTONE, "insufficient_data", label, None, f"{label}: fewer than two epsilons"))
    else:
        worst, where = 0.0, None
        for i, (e1, m1) in enumerate(series):
            for e2, m2 in series[i + 1 :]:
                if m2 - m1 > worst:
                    worst, where = m2 - m1, (e1, m1, e2, m2)
        if worst <= tolerance:
            out.append(_finding(MONOTONE, "pass", label, worst, f"{label}: mAP does not rise with epsilon"))
        else:
            e1, m1, e2, m2 = where  # type: ignore[misc]
            out.append(
                _finding(
                    MONOTONE,
                    "fail",
                    label,
                    worst,
                    f"{label}: mAP rises from {m1:.4f} at eps={e1:.4g} to {m2:.4f} at eps={e2:.4g}; "
                    "the attack is not converging (steps, step size) or gradients are masked",
                )
            )
    positive = [p for p in points if p.epsilon > 0]
    if not positive:
        out.append(_finding(STRONGER_THAN_NOISE, "insufficient_data", label, None, f"{label}: no epsilon > 0"))
    else:
        excess = max(positive, key=lambda p: p.map - p.map_noise)
        gap = excess.map - excess.map_noise
        status = "pass" if gap <= tolerance else "fail"
        out.append(
            _finding(
                STRONGER_THAN_NOISE,
                status,
                label,
                gap,
                f"{label}: mAP {excess.map:.4f} under the attack vs {excess.map_noise:.4f} under random noise "
                f"at eps={excess.epsilon:.4g}"
                + ("" if status == "pass" else "; the attack is no stronger than noise (broken or masked gradients)"),
            )
        )
    if not points or points[-1].epsilon < curve.zero_recall_epsilon:
        largest = points[-1].epsilon if points else None
        out.append(
            _finding(
                LARGE_EPSILON,
                "insufficient_data",
                label,
                None,
                f"{label}: largest epsilon {largest} < {curve.zero_recall_epsilon:g}; add a probe condition at "
                f"eps >= {curve.zero_recall_epsilon:g} to test for gradient masking",
            )
        )
    else:
        top = points[-1]
        recall = top.recall
        if recall is None:
            out.append(_finding(LARGE_EPSILON, "insufficient_data", label, None, f"{label}: no ground-truth object"))
        else:
            status = "pass" if recall <= max_large_epsilon_recall else "fail"
            out.append(
                _finding(
                    LARGE_EPSILON,
                    status,
                    label,
                    recall,
                    f"{label}: recall {recall:.3f} at eps={top.epsilon:.4g}"
                    + (
                        ""
                        if status == "pass"
                        else f" (expected <= {max_large_epsilon_recall:g}); gradient masking or a broken attack"
                    ),
                )
            )
    shares = [(p.loss_decrease_share, p.epsilon) for p in positive if p.loss_decrease_share is not None]
    if not shares:
        out.append(_finding(LOSS_DECREASES, "insufficient_data", label, None, f"{label}: no attacked object"))
    else:
        share, eps = min(shares)
        status = "pass" if share >= min_loss_decrease_share else "fail"
        out.append(
            _finding(
                LOSS_DECREASES,
                status,
                label,
                share,
                f"{label}: the objective fell on {share:.1%} of the images at eps={eps:.4g}"
                + ("" if status == "pass" else " (gradient masking: the loss does not decrease)"),
            )
        )
    return out


def attack_result(
    curve: AttackCurve, findings: Sequence[dict[str, Any]], *, label: str | None = None
) -> DetectionAttack:
    """The results.json entry (``detection.attacks[]``) of a curve and its findings."""
    checks = [{k: f[k] for k in ("check", "status", "observed", "message")} for f in findings]
    return DetectionAttack.model_validate(
        {
            "attack": label or curve.attack,
            "norm": curve.norm,
            "objective": curve.objective,
            "clean_map": curve.clean_map,
            "clean_recall": curve.clean_recall,
            "points": [asdict(p) for p in sorted(curve.points, key=lambda p: p.epsilon)],
            "checks": checks,
        }
    )


# --------------------------------------------------------------------------- API-level curve


def map_and_recall(
    truths: Sequence[ImageTruth],
    detections: Sequence[ImageDetections],
    categories: dict[int, str],
    *,
    score_threshold: float,
    iou_threshold: float,
) -> tuple[float, float | None]:
    """COCO mAP@[.5:.95] (cvaudit's evaluator) and recall at the operating point."""
    evaluator = CocoEvaluator(truths=truths, categories=categories)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "detections.json"
        write_detections_json(path, detections, image_ids=evaluator.image_ids, categories=categories)
        coco = evaluator.evaluate(path)
    matches = match_images(truths, detections, score_threshold=score_threshold, iou_threshold=iou_threshold)
    overall = summarize(count_matches(matches, categories))
    m = coco.map if coco.map is not None else 0.0
    return float(max(m, 0.0)), overall.recall


def robust_map_curve(
    attack: Any,
    target: Any,
    detect: Callable[[Tensor], list[Any]],
    batches: Sequence[tuple[Tensor, list[Tensor], list[Tensor], Tensor]],
    *,
    truths: Sequence[ImageTruth],
    categories: dict[int, str],
    seed: int,
    score_threshold: float,
    iou_threshold: float,
) -> AttackCurve:
    """Measure an attack's robust-mAP curve (and the noise baseline) over ``batches``.

    Args:
        attack: a :class:`~stressors.attacks.detection.DetectionPGD` (or its L2 form).
        target: its :class:`~stressors.attacks.detection.DetectionTarget`.
        detect: images -> one :class:`~audit.evaluation.detection.outputs.Detections` per image
            (boxes in input pixels, which must be the ground truth's frame here).
        batches: ``(images, boxes, labels, sample_ids)``; boxes xyxy input pixels, labels in [0, C).
        truths: the :class:`ImageTruth` of every image, in batch order, image ids 1..N; category
            of class k is k + 1.
        categories: category id -> name.
        seed: the audit seed.
        score_threshold, iou_threshold: the operating point of the recall.
    """

    def evaluate(per_batch: Sequence[Tensor]) -> tuple[float, float | None]:
        dets: list[ImageDetections] = []
        for images in per_batch:
            with torch.no_grad():
                out = detect(images)
            for d in out:
                dets.append(
                    ImageDetections(
                        len(dets) + 1,
                        d.boxes.detach().double().cpu().numpy(),
                        d.scores.detach().double().cpu().numpy(),
                        d.labels.detach().cpu().numpy() + 1,
                    )
                )
        return map_and_recall(truths, dets, categories, score_threshold=score_threshold, iou_threshold=iou_threshold)

    clean_map, clean_recall = evaluate([batch[0] for batch in batches])
    points = []
    for eps in attack.severities:
        results = [
            attack.attack_boxes(target, x, bx, lab, severity=eps, sample_ids=ids, seed=seed)
            for x, bx, lab, ids in batches
        ]
        m, r = evaluate([res.images for res in results])
        mn, rn = evaluate([attack.noise(x, severity=eps, sample_ids=ids, seed=seed) for x, _, _, ids in batches])
        clean_loss = torch.cat([res.loss_clean for res in results])
        final_loss = torch.cat([res.loss_final for res in results])
        attacked = clean_loss > 0
        share = float((final_loss[attacked] < clean_loss[attacked]).double().mean()) if attacked.any() else None
        points.append(
            CurvePoint(
                epsilon=float(eps),
                map=m,
                recall=r,
                map_noise=mn,
                recall_noise=rn,
                loss_clean=float(clean_loss.mean()) if clean_loss.numel() else 0.0,
                loss_final=float(final_loss.mean()) if final_loss.numel() else 0.0,
                loss_decrease_share=share,
            )
        )
    return AttackCurve(
        attack=attack.name,
        norm=attack.norm,
        objective=attack.objective,
        zero_recall_epsilon=float(attack.zero_recall_epsilon),
        clean_map=clean_map,
        clean_recall=clean_recall,
        points=points,
    )


def truth_from_xyxy(
    boxes: Sequence[np.ndarray], labels: Sequence[np.ndarray], size: tuple[int, int]
) -> list[ImageTruth]:
    """ImageTruths (ids 1..N, category = class + 1) from per-image xyxy boxes in a (H, W) frame."""
    h, w = size
    out = []
    for i, (b, lab) in enumerate(zip(boxes, labels)):
        b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
        xywh = np.concatenate((b[:, :2], b[:, 2:] - b[:, :2]), axis=1)
        out.append(ImageTruth(i + 1, w, h, xywh, np.asarray(lab, dtype=np.int64) + 1))
    return out
