"""TIDE error decomposition of a detector: classification, localisation, both, duplicate, background, missed.

Bolya et al. 2020, "TIDE: A General Toolbox for Identifying Object Detection
Errors" (ECCV), as its reference implementation ``tidecv`` 1.0.1
(``tidecv/quantify.py``, ``errors/``, ``ap.py``) computes it; the test requires
equality with ``tidecv`` on the same detections. Definitions, per image:

- **Matching.** Detections are sorted by descending score (a stable sort: equal
  scores keep the detector's order) and cut to the ``max_dets`` highest; the rest
  count nowhere. Each in turn takes the still-unmatched non-crowd object of its
  own category with the highest IoU (equal IoU: the *first* object in
  ground-truth order, numpy's ``argmax``) if that IoU is ``>= t_f`` (foreground
  threshold, default 0.5): a true positive.
- **Crowd regions** (``iscrowd``, TIDE's ignore regions): an unmatched detection
  of the region's category whose overlap with it, intersection over the
  *detection's* area, is ``> t_f`` (strictly) is ignored: it is left out of AP.
  It still gets an error type below (TIDE does so), and its fix may count.
  Crowd regions are never positives nor missed.
- **Error of each unmatched detection**, the first that applies, in TIDE's order
  (IoU with the non-crowd objects, ``t_b`` the background threshold, default 0.1):

  1. the image has no non-crowd object: *background*;
  2. ``t_b <= `` max IoU with an object of its category ``<= t_f`` (matched or
     not): *localisation* (that object; ``t_f`` itself is included, as in tidecv);
  3. max IoU with an object of another category ``>= t_f``: *classification*;
  4. max IoU with an already matched object of its category ``>= t_f``: *duplicate*;
  5. max IoU with any object ``<= t_b``: *background*;
  6. otherwise *both* (classification and localisation; tidecv's ``OtherError``).

- **Missed**: a non-crowd object no detection matched and no localisation or
  classification error points at while it is unmatched (those errors' fixes
  would recover it).

AP is tidecv's own: per category, detections by descending score (stable),
precision made monotone, read at 101 recall points by ``searchsorted(...,
"left")``; a category with detections but no objects has AP 0 and counts in the
mean; mAP is the mean over categories with an object or a detection. Values
here are fractions (tidecv prints percent).

**Fixing** (oracle, one error type at a time, each from the original result):
``dAP = max(AP_fixed - AP, 0)`` (tidecv clips). Fixing localisation or
classification turns, per unmatched object, the highest-scoring such error
pointing at it (the first in score order) into a true positive (of the object's
category for classification, of the detection's for localisation) and removes
the other such errors, and those pointing at a matched object. Fixing duplicate,
background or both removes those detections. Fixing missed removes the missed
objects from the positives. tidecv rebuilds the AP data with the error points
first and the true positives after them, so among equal scores that order
decides, here too.

Everything is per image then summed, so any image subgroup is a call on its
images (:func:`tide_errors` with ``image_ids``). Deterministic; numpy only.
Performance: an IoU matrix per image and a Python loop over each image's
detections for the greedy match (as COCO's matching); AP is vectorised.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from audit.contract.errors import AuditError
from audit.evaluation.detection.coco_metrics import ImageDetections, ImageTruth
from audit.evaluation.detection.operating_point import coco_box_iou

__all__ = ["ERROR_TYPES", "TideErrors", "tide_errors"]

#: The error types, in TIDE's order (tidecv's ``Cls, Loc, Both, Dupe, Bkg, Miss``).
ERROR_TYPES = ("classification", "localisation", "both", "duplicate", "background", "missed")
_CLS, _LOC, _BOTH, _DUPE, _BKG, _MISS = range(6)
_RECALLS = np.arange(101) / 100


@dataclass(frozen=True)
class TideErrors:
    """TIDE's errors over a set of images.

    Attributes:
        ap: tidecv's mAP at ``pos_threshold`` (a fraction), ``None`` when there is no
            object and no detection.
        counts: error type -> number of errors (missed: objects; others: detections).
        dap: error type -> AP gained by fixing that type alone (fraction, ``>= 0``);
            ``None`` where ``ap`` is.
        n_images: the images evaluated.
        pos_threshold, background_threshold: ``t_f`` and ``t_b``.
    """

    ap: float | None
    counts: Mapping[str, int]
    dap: Mapping[str, float | None]
    n_images: int
    pos_threshold: float
    background_threshold: float


@dataclass
class _Points:
    """AP data points in push order: category, score, true positive."""

    cats: list[int]
    scores: list[float]
    tps: list[bool]


def _ap_of(points: _Points, n_gt: Mapping[int, int]) -> float | None:
    """tidecv's ``ClassedAPDataObject.get_mAP`` (as a fraction)."""
    cats = np.asarray(points.cats, dtype=np.int64)
    scores = np.asarray(points.scores, dtype=np.float64)
    tps = np.asarray(points.tps, dtype=bool)
    aps = []
    for cat in sorted(set(n_gt) | set(points.cats)):
        sel = cats == cat
        n = n_gt.get(cat, 0)
        if not sel.any() and n == 0:
            continue
        if n == 0 or not sel.any():
            aps.append(0.0)
            continue
        order = np.argsort(-scores[sel], kind="stable")
        tp = tps[sel][order]
        n_true = np.cumsum(tp)
        precision = n_true / np.arange(1, len(tp) + 1)
        recall = n_true / n
        precision = np.maximum.accumulate(precision[::-1])[::-1]
        idx = np.searchsorted(recall, _RECALLS, side="left")
        y = np.where(idx < len(precision), precision[np.minimum(idx, len(precision) - 1)], 0.0)
        aps.append(float(y.sum()) / len(y))
    return sum(aps) / len(aps) if aps else None


def _check(pos_threshold: float, background_threshold: float, max_dets: int) -> None:
    if not 0.0 < pos_threshold <= 1.0:
        raise AuditError(f"TIDE pos_threshold: expected a number in (0, 1], got {pos_threshold}")
    if not 0.0 < background_threshold <= pos_threshold:
        raise AuditError(
            f"TIDE background_threshold: expected a number in (0, pos_threshold], got {background_threshold}"
        )
    if max_dets < 1:
        raise AuditError(f"TIDE max_dets: expected a positive integer, got {max_dets}")


def tide_errors(
    *,
    truths: Iterable[ImageTruth],
    detections: Iterable[ImageDetections],
    image_ids: Iterable[int] | None = None,
    pos_threshold: float = 0.5,
    background_threshold: float = 0.1,
    max_dets: int = 100,
) -> TideErrors:
    """TIDE's error counts and dAP of ``detections`` against ``truths`` (definitions: module docstring).

    Args:
        truths: the ground truth of every image (images without objects included).
        detections: the detections per image; an image left out has none.
        image_ids: the images to evaluate (an image-level subgroup), in the order of
            ``truths``; default every image. Duplicates count once.
        pos_threshold: ``t_f``, the foreground IoU (AP50 by default).
        background_threshold: ``t_b``, the background IoU.
        max_dets: the detections kept per image, highest scores first (COCO's 100).

    Returns:
        A :class:`TideErrors`.

    Raises:
        AuditError: a threshold out of range, a duplicate image id, detections for an
            image without ground truth, or an unknown id in ``image_ids``.
    """
    _check(pos_threshold, background_threshold, max_dets)
    by_id: dict[int, ImageTruth] = {}
    for truth in truths:
        if int(truth.image_id) in by_id:
            raise AuditError(f"ground truth: image id {int(truth.image_id)} appears twice")
        by_id[int(truth.image_id)] = truth
    dets_by_id: dict[int, ImageDetections] = {}
    for dets in detections:
        image_id = int(dets.image_id)
        if image_id not in by_id:
            raise AuditError(f"detections: image id {image_id} has no ground truth")
        if image_id in dets_by_id:
            raise AuditError(f"detections: image id {image_id} given twice")
        dets_by_id[image_id] = dets
    if image_ids is None:
        ids = list(by_id)
    else:
        wanted = {int(i) for i in image_ids}
        unknown = wanted - set(by_id)
        if unknown:
            raise AuditError(f"image subset: image id {min(unknown)} has no ground truth")
        ids = [i for i in by_id if i in wanted]

    base = _Points([], [], [])  # the original AP data, in tidecv's push order
    true_pos = _Points([], [], [])
    n_gt: dict[int, int] = {}
    # one row per detection error: type, category, score, ignored, (image, object) it points at
    err_type: list[int] = []
    err_cat: list[int] = []
    err_score: list[float] = []
    err_ignored: list[bool] = []
    err_fix_cat: list[int] = []
    err_best: list[bool] = []
    counts = np.zeros(len(ERROR_TYPES), dtype=np.int64)
    missed_per_cat: dict[int, int] = {}
    for image_id in ids:
        truth = by_id[image_id]
        keep = ~truth.iscrowd
        gt_boxes, gt_cats = truth.boxes[keep], truth.category_ids[keep]
        crowd_boxes, crowd_cats = truth.boxes[~keep], truth.category_ids[~keep]
        for cat in gt_cats.tolist():
            n_gt[cat] = n_gt.get(cat, 0) + 1
        dets = dets_by_id.get(image_id)
        gt_used = np.zeros(len(gt_boxes), dtype=bool)
        gt_usable = np.zeros(len(gt_boxes), dtype=bool)
        if dets is not None and len(dets.scores):
            order = np.argsort(-dets.scores, kind="stable")[:max_dets]
            boxes, scores, cats = dets.boxes_xywh[order], dets.scores[order], dets.category_ids[order]
            m = len(order)
            iou = coco_box_iou(boxes, gt_boxes, np.zeros(len(gt_boxes), dtype=bool))
            same = cats[:, None] == gt_cats[None, :]
            cls_iou = iou * same
            used = np.zeros(m, dtype=bool)
            if len(gt_boxes):
                buffer = cls_iou.copy()
                for p in range(m):
                    g = int(np.argmax(buffer[p]))
                    if buffer[p, g] >= pos_threshold:
                        used[p] = gt_used[g] = True
                        buffer[:, g] = 0.0
            ignored = np.zeros(m, dtype=bool)
            if len(crowd_boxes):
                crowd_iou = coco_box_iou(boxes, crowd_boxes, np.ones(len(crowd_boxes), dtype=bool))
                hit = (crowd_iou > pos_threshold) & (cats[:, None] == crowd_cats[None, :])
                ignored = ~used & hit.any(axis=1)
            best_for_gt: dict[int, bool] = {}
            noncls_iou = iou * ~same
            used_cls_iou = cls_iou * gt_used[None, :]
            for p in range(m):
                if not ignored[p]:
                    for pts in (base, true_pos) if used[p] else (base,):
                        pts.cats.append(int(cats[p]))
                        pts.scores.append(float(scores[p]))
                        pts.tps.append(bool(used[p]))
                if used[p]:
                    continue
                target = -1
                if len(gt_boxes) == 0:
                    kind = _BKG
                elif background_threshold <= cls_iou[p].max() <= pos_threshold:
                    kind, target = _LOC, int(np.argmax(cls_iou[p]))
                elif noncls_iou[p].max() >= pos_threshold:
                    kind, target = _CLS, int(np.argmax(noncls_iou[p]))
                elif used_cls_iou[p].max() >= pos_threshold:
                    kind = _DUPE
                elif iou[p].max() <= background_threshold:
                    kind = _BKG
                else:
                    kind = _BOTH
                best = False
                if target >= 0 and not gt_used[target]:
                    gt_usable[target] = True
                    best = target not in best_for_gt  # tidecv: strictly higher score replaces
                    best_for_gt.setdefault(target, True)
                counts[kind] += 1
                err_type.append(kind)
                err_cat.append(int(cats[p]))
                err_score.append(float(scores[p]))
                err_ignored.append(bool(ignored[p]))
                err_fix_cat.append(int(gt_cats[target]) if kind == _CLS else int(cats[p]))
                err_best.append(best)
        missed = ~gt_used & ~gt_usable
        counts[_MISS] += int(missed.sum())
        for cat in gt_cats[missed].tolist():
            missed_per_cat[cat] = missed_per_cat.get(cat, 0) + 1

    ap = _ap_of(base, n_gt)
    dap: dict[str, float | None] = {}
    for kind, name in enumerate(ERROR_TYPES):
        if ap is None:
            dap[name] = None
            continue
        fixed = _Points([], [], [])
        for t, cat, score, ign, fix_cat, best in zip(err_type, err_cat, err_score, err_ignored, err_fix_cat, err_best):
            if t == kind:
                if t in (_CLS, _LOC) and best:
                    fixed.cats.append(fix_cat)
                    fixed.scores.append(score)
                    fixed.tps.append(True)
            elif not ign:
                fixed.cats.append(cat)
                fixed.scores.append(score)
                fixed.tps.append(False)
        fixed.cats += true_pos.cats
        fixed.scores += true_pos.scores
        fixed.tps += true_pos.tps
        positives = dict(n_gt)
        if kind == _MISS:
            for cat, n in missed_per_cat.items():
                positives[cat] -= n
        # tidecv's fixed AP data knows every category of the original one
        for cat in base.cats:
            positives.setdefault(cat, 0)
        new_ap = _ap_of(fixed, positives)
        dap[name] = max((new_ap or 0.0) - ap, 0.0)
    return TideErrors(
        ap=ap,
        counts=dict(zip(ERROR_TYPES, counts.tolist())),
        dap=dap,
        n_images=len(ids),
        pos_threshold=pos_threshold,
        background_threshold=background_threshold,
    )
