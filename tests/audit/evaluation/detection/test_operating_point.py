"""The operating point against a brute-force reference and hand-worked cases."""

from __future__ import annotations

import contextlib
import io
from collections import Counter

import numpy as np
import pytest
from detection_scenes import random_scene
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from audit.contract.errors import AuditError
from audit.evaluation.detection.coco_metrics import (
    ImageDetections,
    ImageTruth,
    coco_ground_truth,
    write_detections_json,
)
from audit.evaluation.detection.operating_point import (
    OperatingPointMetrics,
    count_matches,
    match_image,
    match_images,
    object_group_counts,
    size_class,
    summarize,
    summarize_per_class,
)

CATS = (1, 2, 3)


def _iou(det_xyxy, gt_xywh, crowd):
    """Plain IoU of one detection (x1, y1, x2, y2) and one object (x, y, w, h); crowd: over the detection's area."""
    gx1, gy1, gx2, gy2 = gt_xywh[0], gt_xywh[1], gt_xywh[0] + gt_xywh[2], gt_xywh[1] + gt_xywh[3]
    iw = min(det_xyxy[2], gx2) - max(det_xyxy[0], gx1)
    ih = min(det_xyxy[3], gy2) - max(det_xyxy[1], gy1)
    if iw <= 0 or ih <= 0:
        return 0.0
    det_area = (det_xyxy[2] - det_xyxy[0]) * (det_xyxy[3] - det_xyxy[1])
    denom = det_area if crowd else det_area + gt_xywh[2] * gt_xywh[3] - iw * ih
    return iw * ih / denom


def _brute_force(truth, dets, score_thr, iou_thr):
    """Per category: (tp, fp, fn) and the set of matched objects, by the module's rules written out in loops."""
    tp, fp, fn = Counter(), Counter(), Counter()
    taken = set()
    if dets is not None:
        kept = [i for i in range(len(dets.scores)) if dets.scores[i] >= score_thr]
        kept.sort(key=lambda i: -dets.scores[i])  # Python's sort is stable: equal scores keep their order
        for i in kept:
            cat = int(dets.category_ids[i])
            best, best_iou = None, -1.0
            for g in range(len(truth.category_ids)):
                if truth.iscrowd[g] or g in taken or int(truth.category_ids[g]) != cat:
                    continue
                v = _iou(dets.boxes[i], truth.boxes[g], False)
                if v >= iou_thr and v >= best_iou:  # equal IoU: the later object, as COCO
                    best, best_iou = g, v
            if best is not None:
                taken.add(best)
                tp[cat] += 1
            elif not any(
                truth.iscrowd[g]
                and int(truth.category_ids[g]) == cat
                and _iou(dets.boxes[i], truth.boxes[g], True) >= iou_thr
                for g in range(len(truth.category_ids))
            ):
                fp[cat] += 1
    for g in range(len(truth.category_ids)):
        if not truth.iscrowd[g] and g not in taken:
            fn[int(truth.category_ids[g])] += 1
    return tp, fp, fn, taken


@pytest.mark.parametrize(("seed", "max_objects"), [(0, 8), (1, 8), (2, 40)])  # 40: crowded, overlapping objects
@pytest.mark.parametrize(("score_thr", "iou_thr"), [(0.0, 0.5), (0.3, 0.3), (0.7, 0.75), (0.5, 0.1)])
def test_counts_equal_a_brute_force_reference_on_random_scenes(seed, max_objects, score_thr, iou_thr):
    truths, dets = random_scene(
        seed, n_images=40, crowd_rate=0.2, empty_gt_rate=0.15, empty_det_rate=0.15, max_objects=max_objects
    )
    matches = match_images(truths, dets, score_threshold=score_thr, iou_threshold=iou_thr)
    counts = count_matches(matches, CATS)
    by_id = {d.image_id: d for d in dets}
    totals = np.zeros(3, dtype=np.int64)
    for row, truth in enumerate(truths):
        tp, fp, fn, taken = _brute_force(truth, by_id.get(truth.image_id), score_thr, iou_thr)
        for k, cat in enumerate(CATS):
            assert (counts.tp[row, k], counts.fp[row, k], counts.fn[row, k]) == (tp[cat], fp[cat], fn[cat])
        assert set(np.flatnonzero(matches[row].matched_detection >= 0).tolist()) == taken
        totals += [sum(tp.values()), sum(fp.values()), sum(fn.values())]
    assert totals[0] > 0 and totals[1] > 0 and totals[2] > 0  # the scenes exercise every outcome
    assert summarize(counts) == OperatingPointMetrics.from_counts(*totals.tolist(), n_images=len(truths))


def test_equal_scores_and_equal_ious_on_a_grid_equal_the_reference():
    truths, dets = random_scene(9, n_images=40, grid_boxes=True, segment_area=False, crowd_rate=0.2)
    counts = count_matches(match_images(truths, dets, score_threshold=0.2, iou_threshold=0.5), CATS)
    by_id = {d.image_id: d for d in dets}
    for row, truth in enumerate(truths):
        tp, fp, fn, _ = _brute_force(truth, by_id.get(truth.image_id), 0.2, 0.5)
        assert counts.tp[row].tolist() == [tp[c] for c in CATS]
        assert counts.fp[row].tolist() == [fp[c] for c in CATS]
        assert counts.fn[row].tolist() == [fn[c] for c in CATS]


def _truth(boxes, cats, crowd=None, image_id=1):
    return ImageTruth(image_id, 100, 100, np.array(boxes, dtype=float).reshape(-1, 4), cats, crowd or [])


def _dets(boxes, scores, cats, image_id=1):
    return ImageDetections(image_id, np.array(boxes, dtype=float).reshape(-1, 4), scores, cats)


def _outcome(truth, dets, score=0.0, iou=0.5):
    return match_image(truth, dets, score_threshold=score, iou_threshold=iou)


def test_equal_scores_go_in_the_detectors_order():
    truth = _truth([[0, 0, 10, 10]], [1])
    dets = _dets([[1, 0, 11, 10], [0, 0, 10, 10]], [0.8, 0.8], [1, 1])  # the second fits better but comes later
    m = _outcome(truth, dets)
    assert m.detection_outcome.tolist() == [1, 0] and m.matched_detection.tolist() == [0]


def test_two_detections_on_one_object_give_one_tp_and_one_fp():
    truth = _truth([[0, 0, 10, 10]], [1])
    m = _outcome(truth, _dets([[2, 0, 12, 10], [0, 0, 10, 10]], [0.9, 0.6], [1, 1]))
    assert m.detection_outcome.tolist() == [1, 0]  # the higher score wins, not the better box
    counts = count_matches([m], [1])
    assert (counts.tp.item(), counts.fp.item(), counts.fn.item()) == (1, 1, 0)


def test_a_detection_takes_the_object_it_overlaps_most():
    truth = _truth([[0, 0, 10, 10], [4, 0, 10, 10]], [1, 1])
    m = _outcome(truth, _dets([[4, 0, 14, 10], [0, 0, 10, 10]], [0.9, 0.8], [1, 1]), iou=0.3)
    assert m.matched_detection.tolist() == [1, 0]


def test_equal_ious_go_to_the_later_object_as_in_coco():
    truth = _truth([[0, 0, 10, 10], [10, 0, 10, 10]], [1, 1])
    dets = _dets([[5, 0, 15, 10], [0, 0, 10, 10]], [0.9, 0.8], [1, 1])  # the first overlaps both by 1/3
    m = _outcome(truth, dets, iou=0.3)
    assert m.matched_detection.tolist() == [1, 0] and m.detection_outcome.tolist() == [1, 1]
    tp, fp, fn, taken = _brute_force(truth, dets, 0.0, 0.3)
    assert (tp[1], fp[1], fn[1], taken) == (2, 0, 0, {0, 1})


def test_crowd_regions_absorb_detections_without_tp_or_fp():
    truth = _truth([[0, 0, 50, 50], [60, 60, 20, 20]], [1, 1], crowd=[True, False])
    dets = _dets(
        [[10, 10, 15, 15], [20, 20, 30, 30], [60, 60, 80, 80], [90, 0, 99, 9]],
        [0.9, 0.8, 0.7, 0.6],
        [1, 1, 1, 1],
    )
    m = _outcome(truth, dets)
    # small boxes inside the crowd: IoU over their own area is 1 -> absorbed, both of them
    assert m.detection_outcome.tolist() == [-1, -1, 1, 0]
    assert m.missed.tolist() == [False, False]
    counts = count_matches([m], [1])
    assert (counts.tp.item(), counts.fp.item(), counts.fn.item()) == (1, 1, 0)
    # a crowd region of another class absorbs nothing; an object is preferred to a crowd region
    assert _outcome(truth, _dets([[10, 10, 15, 15]], [0.9], [2])).detection_outcome.tolist() == [0]
    both = _truth([[0, 0, 20, 20], [0, 0, 20, 20]], [1, 1], crowd=[True, False])
    assert _outcome(both, _dets([[0, 0, 20, 20]], [0.9], [1])).detection_outcome.tolist() == [1]


def test_empty_images():
    nothing = _outcome(_truth([], []), _dets([], [], []))
    only_dets = _outcome(_truth([], [], image_id=2), _dets([[0, 0, 5, 5], [1, 1, 6, 6]], [0.9, 0.1], [1, 2], 2))
    only_truth = _outcome(_truth([[0, 0, 5, 5]], [2], image_id=3), _dets([], [], [], 3))
    counts = count_matches([nothing, only_dets, only_truth], CATS)
    assert counts.tp.sum() == 0
    assert counts.fp.tolist() == [[0, 0, 0], [1, 1, 0], [0, 0, 0]]
    assert counts.fn.tolist() == [[0, 0, 0], [0, 0, 0], [0, 1, 0]]
    overall = summarize(counts)
    assert (overall.precision, overall.recall, overall.f1) == (0.0, 0.0, 0.0)
    assert overall.fp_per_image == pytest.approx(2 / 3) and overall.missed_per_image == pytest.approx(1 / 3)
    assert summarize(counts, image_index=[0]) == OperatingPointMetrics(0, 0, 0, 1, None, None, None, 0.0, 0.0)
    assert summarize(counts, image_index=[]).fp_per_image is None
    # an image missing from the detections has none
    matches = match_images([_truth([[0, 0, 5, 5]], [1])], [], score_threshold=0.5, iou_threshold=0.5)
    assert matches[0].missed.tolist() == [True]


def test_a_class_mismatch_is_one_fp_and_one_miss():
    m = _outcome(_truth([[0, 0, 10, 10]], [1]), _dets([[0, 0, 10, 10]], [0.9], [2]))
    counts = count_matches([m], CATS)
    assert counts.tp.sum() == 0 and counts.fp[0].tolist() == [0, 1, 0] and counts.fn[0].tolist() == [1, 0, 0]
    per_class = summarize_per_class(counts)
    assert per_class[1].recall == 0.0 and per_class[1].precision is None
    assert per_class[2].precision == 0.0 and per_class[2].recall is None and per_class[3].f1 is None


def test_thresholds_are_inclusive_and_checked():
    truth = _truth([[0, 0, 10, 10]], [1])
    dets = _dets([[0, 0, 10, 20]], [0.5], [1])  # IoU exactly 0.5, score exactly the threshold
    assert _outcome(truth, dets, score=0.5, iou=0.5).detection_outcome.tolist() == [1]
    assert _outcome(truth, dets, score=0.51, iou=0.5).detection_outcome.tolist() == [-2]
    assert _outcome(truth, dets, score=0.5, iou=0.51).detection_outcome.tolist() == [0]
    rounded = ImageTruth(1, 10, 10, [[6.4, 2.7, 0.5, 0.3]], [1])
    same_box = _dets([[6.4, 2.7, 6.9, 3.0]], [0.5], [1])  # the same box, IoU 0.9999999999999992 by rounding
    assert _outcome(rounded, same_box, iou=1.0).detection_outcome.tolist() == [1]  # COCO's 1 - 1e-10 cap
    for score, iou in [(float("nan"), 0.5), (0.5, 0.0), (0.5, 1.5)]:
        with pytest.raises(AuditError, match="detection\\.(score|iou)_threshold"):
            _outcome(truth, dets, score=score, iou=iou)
    with pytest.raises(AuditError, match="detections of image 2 given for 1"):
        _outcome(truth, _dets([], [], [], image_id=2))
    with pytest.raises(AuditError, match="image 7, which has no ground truth"):
        match_images([truth], [_dets([], [], [], 7)], score_threshold=0.5, iou_threshold=0.5)
    with pytest.raises(AuditError, match="detection of unknown category 5"):
        count_matches([_outcome(truth, _dets([[0, 0, 1, 1]], [1], [5]))], CATS)


def test_rates_from_counts_and_resamples_with_repeats():
    truths, dets = random_scene(4, n_images=20, crowd_rate=0.1)
    counts = count_matches(match_images(truths, dets, score_threshold=0.3, iou_threshold=0.5), CATS)
    rows = [0, 0, 3, 5, 5, 5]
    got = summarize(counts, image_index=rows)
    tp, fp, fn = (int(sum(a[r].sum() for r in rows)) for a in (counts.tp, counts.fp, counts.fn))
    assert (got.tp, got.fp, got.fn, got.n_images) == (tp, fp, fn, 6)
    if tp + fp:
        assert got.precision == tp / (tp + fp)
    full = summarize(counts)
    assert full.f1 == pytest.approx(2 * full.precision * full.recall / (full.precision + full.recall))
    assert full.fp_per_image == full.fp / 20 and full.missed_per_image == full.fn / 20
    per_class = summarize_per_class(counts)
    assert sum(m.tp for m in per_class.values()) == full.tp


def test_size_class_boundaries():
    assert size_class(np.array([1.0, 1023.9, 1024.0, 9215.0, 9216.0])).tolist() == [
        "small",
        "small",
        "medium",
        "medium",
        "large",
    ]


def test_object_subgroup_recall_tallies_full_image_matches():
    truths, dets = random_scene(5, n_images=40, crowd_rate=0.15)
    matches = match_images(truths, dets, score_threshold=0.3, iou_threshold=0.5)
    rng = np.random.default_rng(0)
    occluded = {t.image_id: rng.choice(["occluded", "visible"], size=len(t.category_ids)).tolist() for t in truths}
    sizes = {t.image_id: size_class(t.area).tolist() for t in truths}
    by_id = {d.image_id: d for d in dets}
    for groups, names in [(occluded, ("occluded", "visible", "truncated")), (sizes, None)]:
        tally = object_group_counts(matches, groups, groups=names)
        hit, total = Counter(), Counter()
        for truth in truths:  # reference: brute-force match on the full image, then tally by the object's group
            _, _, _, taken = _brute_force(truth, by_id.get(truth.image_id), 0.3, 0.5)
            for g, name in enumerate(groups[truth.image_id]):
                if not truth.iscrowd[g]:
                    total[name] += 1
                    hit[name] += g in taken
        recall = tally.recall()
        for name in tally.groups:
            assert recall[name] == (hit[name] / total[name] if total[name] else None)
        assert sum(total.values()) == int(tally.total.sum())
    assert tally.groups == ("large", "medium", "small")
    assert (
        object_group_counts(matches, occluded, groups=("occluded", "visible", "truncated")).recall()["truncated"]
        is None
    )  # an empty subgroup is kept, not dropped
    rows = [1, 1, 2]
    assert tally.recall(image_index=rows)["small"] == (
        (tally.matched[rows, 2].sum() / tally.total[rows, 2].sum()) if tally.total[rows, 2].sum() else None
    )


def test_object_subgroups_need_one_name_per_object():
    m = _outcome(_truth([[0, 0, 10, 10], [20, 20, 5, 5]], [1, 1]), _dets([], [], []))
    with pytest.raises(AuditError, match="image 1: 1 names for 2 objects"):
        object_group_counts([m], {1: ["a"]})
    with pytest.raises(AuditError, match="object 1: unknown subgroup 'b'"):
        object_group_counts([m], {1: ["a", "b"]}, groups=["a"])
    with pytest.raises(AuditError, match="0 names for 2 objects"):
        object_group_counts([m], {})


@pytest.mark.parametrize("grid", [False, True])  # on a grid: equal scores and equal IoUs
@pytest.mark.parametrize("iou_thr", [0.5, 0.75])
def test_counts_at_score_zero_equal_cocos_own_matching(tmp_path, iou_thr, grid):
    """With every detection kept, TP/FP/FN and crowd absorption are those of pycocotools' evaluateImg.

    COCO matches per image and category at each IoU threshold exactly as the operating point
    does (same IoU, score order, crowd rule); its ``evalImgs`` at area ``all`` give the reference.
    """
    truths, dets = random_scene(13, n_images=40, crowd_rate=0.2, max_objects=25, grid_boxes=grid)
    categories = {c: str(c) for c in CATS}
    path = tmp_path / "detections.json"
    write_detections_json(path, dets, image_ids=[t.image_id for t in truths], categories=categories)
    gt = COCO()
    gt.dataset = coco_ground_truth(truths, categories)
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(str(path)), "bbox")
        ev.params.iouThrs = np.array([iou_thr])
        ev.evaluate()
    n_img, n_area = len(ev.params.imgIds), len(ev.params.areaRng)
    counts = count_matches(match_images(truths, dets, score_threshold=0.0, iou_threshold=iou_thr), CATS)
    row = {image_id: k for k, image_id in enumerate(counts.image_ids)}
    expected = np.zeros((3, len(truths), len(CATS)), dtype=np.int64)
    for k, cat in enumerate(ev.params.catIds):
        for j, image_id in enumerate(ev.params.imgIds):
            e = ev.evalImgs[k * n_area * n_img + j]  # area range 0 is "all"
            col = CATS.index(cat)
            if e is None:
                continue
            matched, ignored = e["dtMatches"][0] > 0, e["dtIgnore"][0].astype(bool)
            expected[0, row[image_id], col] = np.sum(matched & ~ignored)
            expected[1, row[image_id], col] = np.sum(~matched & ~ignored)
            expected[2, row[image_id], col] = np.sum((e["gtMatches"][0] == 0) & ~e["gtIgnore"].astype(bool))
    assert expected[0].sum() > 0 and expected[1].sum() > 0 and expected[2].sum() > 0
    assert max(len(d.scores) for d in dets) < 100  # COCO's 100-detection cap does not bind
    np.testing.assert_array_equal(np.stack([counts.tp, counts.fp, counts.fn]), expected)
    matches = match_images(truths, dets, score_threshold=0.0, iou_threshold=iou_thr)
    for k, cat in enumerate(ev.params.catIds):  # and the very same objects are matched
        for j, image_id in enumerate(ev.params.imgIds):
            e = ev.evalImgs[k * n_area * n_img + j]
            if e is None:
                continue
            m = matches[row[image_id]]
            ours = [gt.anns[a]["id"] for a in np.asarray(e["gtIds"])]
            truth_ids = [ann["id"] for ann in gt.imgToAnns[image_id]]
            mine = {truth_ids[g] for g in np.flatnonzero(m.matched_detection >= 0)}
            theirs = {gt_id for gt_id, hit in zip(ours, e["gtMatches"][0]) if hit > 0 and not gt.anns[gt_id]["iscrowd"]}
            assert theirs == {i for i in mine if gt.anns[i]["category_id"] == cat}
