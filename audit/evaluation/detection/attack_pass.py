"""Detection attacks inside the detection pass: refusals before any image is read, one attacked batch, and
the robust-mAP curves built from the pass's conditions.

- :func:`check_attacks`: every model-aware condition must be an attack on detectors (trait
  ``attacks_detector``; a classifier attack is refused) that can run on the loaded detector
  (gradients; class scores for ``mislabel``), else one :class:`AuditError` line naming the config and
  the condition (exit 2) before any image is read.
- :func:`attack_batch`: one batch at the model input under an attack condition: the ground-truth boxes of
  every object (crowd regions included, file order) brought to the model input's frame, the attacked images,
  the random-noise baseline of the same norm and ε, and the per-image objective before and after.
- :func:`attack_curves`: per attack label, the :class:`~audit.evaluation.detection.attack_checks.AttackCurve`
  from the conditions' own mAP and recall (the pass's metrics), the noise baseline's (evaluated here against
  the clean truth: an attack moves no box) and the objective, then the checks, as ``detection.attacks``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from audit.contract.errors import AuditError, CvauditError
from audit.contract.results import DetectionAttack
from audit.evaluation.conditions import Condition
from audit.evaluation.detection.attack_checks import (
    AttackCurve,
    CurvePoint,
    attack_result,
    attack_sanity_checks,
    map_and_recall,
)
from audit.evaluation.detection.attack_target import DetectorTarget, attack_target
from audit.evaluation.detection.coco_metrics import ImageDetections, ImageTruth
from audit.evaluation.detection.letterbox import ResizeParams, boxes_to_input

__all__ = [
    "AttackBatch",
    "attack_batch",
    "attack_curves",
    "attacks_section",
    "check_attacks",
    "check_classifier_attacks",
    "detector_attacks",
    "is_detection_attack",
]


def is_detection_attack(cond: Condition) -> bool:
    """The condition is an attack on detectors (its stressor declares ``attacks_detector``)."""
    return cond.model_aware and bool(getattr(cond.stressor, "attacks_detector", False))


def detector_attacks() -> list[str]:
    """The registered stressors that attack detectors (trait ``attacks_detector``), sorted."""
    import stressors

    return sorted(n for n in stressors.available() if getattr(stressors.factory(n), "attacks_detector", False))


def check_classifier_attacks(conditions: Sequence[Condition], *, source: str = "config") -> None:
    """Refuse a classifier attack in a detection audit (one line), before the data or the detector is read."""
    for cond in conditions:
        if cond.model_aware and not is_detection_attack(cond):
            raise AuditError(
                f"{source}: stressor condition {cond.id!r} is an attack on classifiers; a detection audit takes "
                f"image stressors and the attacks on detectors ({', '.join(detector_attacks()) or 'none installed'})"
            )


def check_attacks(
    conditions: Sequence[Condition], detector: Any, *, source: str = "config"
) -> dict[str, DetectorTarget]:
    """Refuse what cannot run before any image is read; condition id -> the detector as the attack sees it.

    Raises:
        AuditError: one line: a classifier attack in a detection audit, or a detection attack the detector
            cannot take (no gradients: ONNX; mislabel without class scores: ``output: boxes``).
    """
    targets: dict[str, DetectorTarget] = {}
    target: DetectorTarget | None = None
    for cond in conditions:
        if not cond.model_aware:
            continue
        if not is_detection_attack(cond):
            check_classifier_attacks([cond], source=source)
        target = target or attack_target(detector)
        try:
            cond.stressor.check_target(target)
        except CvauditError as err:
            raise AuditError(f"{source}: stressor condition {cond.id!r}: {err}") from None
        targets[cond.id] = target
    return targets


@dataclass(frozen=True)
class AttackBatch:
    """One batch under an attack condition.

    Attributes:
        images: the attacked images (B, C, H, W) at the model input.
        noise: the random-noise baseline of the same norm and ε (B, C, H, W).
        loss_clean, loss_final: (B,) float64 numpy: the attack's objective on the clean and attacked images.
    """

    images: torch.Tensor
    noise: torch.Tensor
    loss_clean: np.ndarray
    loss_final: np.ndarray


def attack_batch(
    cond: Condition,
    target: DetectorTarget,
    images: torch.Tensor,
    keys: torch.Tensor,
    *,
    objects: Sequence[Sequence[Any]],
    params: ResizeParams,
    seed: int,
) -> AttackBatch:
    """Attack one batch (see the module docstring).

    Args:
        cond: an attack condition (:func:`is_detection_attack`).
        target: its detector (:func:`check_attacks`).
        images: (B, C, H, W) at the model input; keys: their sample keys (B,) int64.
        objects: per image, its annotation objects (``box`` xyxy original pixels, ``category`` class index).
        params: the batch's resize parameters (:func:`~audit.evaluation.detection.letterbox.plan_resize`).
        seed: the audit seed.

    Raises:
        AuditError: the attack's own one-line refusal (a StressorError), naming the condition.
    """
    boxes, labels = [], []
    for k, objs in enumerate(objects):
        b = torch.tensor([o.box for o in objs], dtype=torch.float64).reshape(-1, 4)
        boxes.append(boxes_to_input(b, params[k]).to(torch.float32))
        labels.append(torch.tensor([o.category for o in objs], dtype=torch.int64))
    attack = cond.stressor
    try:
        res = attack.attack_boxes(target, images, boxes, labels, severity=cond.severity, sample_ids=keys, seed=seed)
    except CvauditError as err:
        raise AuditError(f"stressor condition {cond.id!r}: {err}") from None
    with torch.no_grad():
        noise = attack.noise(images, severity=cond.severity, sample_ids=keys, seed=seed)
    return AttackBatch(res.images, noise, res.loss_clean.numpy(), res.loss_final.numpy())


def attack_curves(
    conditions: Sequence[Condition],
    metrics: Mapping[str, tuple[float | None, float | None]],
    noise: Mapping[str, Sequence[ImageDetections]],
    losses: Mapping[str, tuple[np.ndarray, np.ndarray]],
    *,
    truths: Sequence[ImageTruth],
    categories: dict[int, str],
    score_threshold: float,
    iou_threshold: float,
) -> list[DetectionAttack]:
    """``detection.attacks``: per attack label (config order), its curve and checks.

    Args:
        conditions: every condition (clean first).
        metrics: condition id -> (mAP, recall at the operating point) as the pass measured them.
        noise: attack condition id -> the detections on its noise baseline, every evaluated image.
        losses: attack condition id -> (objective on the clean images, on the attacked ones), per image.
        truths: the clean truth of the evaluated images; categories: category id -> name.
        score_threshold, iou_threshold: the operating point.
    """
    clean_map, clean_recall = metrics["clean"]
    out: list[DetectionAttack] = []
    labels: dict[str, list[Condition]] = {}
    for cond in conditions:
        if is_detection_attack(cond):
            labels.setdefault(str(cond.label), []).append(cond)
    for label, conds in labels.items():
        points = []
        for cond in sorted(conds, key=lambda c: float(c.severity)):
            m, r = metrics[cond.id]
            mn, rn = map_and_recall(
                truths, noise[cond.id], categories, score_threshold=score_threshold, iou_threshold=iou_threshold
            )
            before, after = losses[cond.id]
            attacked = before > 0
            share = float((after[attacked] < before[attacked]).mean()) if attacked.any() else None
            points.append(
                CurvePoint(
                    epsilon=float(cond.severity),
                    map=float(m or 0.0),
                    recall=r,
                    map_noise=mn,
                    recall_noise=rn,
                    loss_clean=float(before.mean()) if before.size else 0.0,
                    loss_final=float(after.mean()) if after.size else 0.0,
                    loss_decrease_share=share if float(cond.severity) > 0 else None,
                )
            )
        stressor = conds[0].stressor
        curve = AttackCurve(
            attack=label,
            norm=stressor.norm,
            objective=stressor.objective,
            zero_recall_epsilon=float(stressor.zero_recall_epsilon),
            clean_map=float(clean_map or 0.0),
            clean_recall=clean_recall,
            points=points,
        )
        out.append(attack_result(curve, attack_sanity_checks(curve), label=label))
    return out


def attacks_section(
    *, conditions: Sequence[Condition], passed: Any, data: Any, section: Any, cfg: Any
) -> list[DetectionAttack] | None:
    """``detection.attacks`` of a finished pass (None without attack conditions).

    Args:
        conditions: every condition; passed: the merged :class:`~audit.evaluation.detection.evaluate.DetectionPass`;
        data: the :class:`~audit.evaluation.detection.evaluate.DetectionData`; section: the detection results
            with every condition's metrics (``summarize_detection``); cfg: the run's config (operating point).
    """
    if not any(is_detection_attack(c) for c in conditions):
        return None
    metrics = {c.id: (c.metrics.map, c.metrics.recall) for c in section.conditions}
    row_of = {image.image_id: r for r, image in enumerate(data.truth.images)}
    evaluated = sorted(int(r) for r in passed.evaluated)
    truths = [data.truths[r] for r in evaluated]
    noise, losses = {}, {}
    for cond in conditions:
        if is_detection_attack(cond):
            noise[cond.id] = passed.noise_detections(cond.id, data)
            losses[cond.id] = passed.attack_losses(cond.id)
    assert all(int(d.image_id) in row_of for dets in noise.values() for d in dets)
    return attack_curves(
        conditions,
        metrics,
        noise,
        losses,
        truths=truths,
        categories=data.categories,
        score_threshold=cfg.detection.score_threshold,
        iou_threshold=cfg.detection.iou_threshold,
    )
