"""TIDE error decomposition: equal to tidecv (the paper's reference implementation) and hand-worked cases."""

from __future__ import annotations

import numpy as np
import pytest

from audit.contract.errors import AuditError
from audit.evaluation.detection.coco_metrics import ImageDetections, ImageTruth
from audit.evaluation.detection.tide import ERROR_TYPES, tide_errors
from tests.audit.evaluation.detection.detection_scenes import random_scene

tidecv = pytest.importorskip("tidecv")

#: tidecv's short names of the error types, in ERROR_TYPES order.
TIDECV_NAMES = ("Cls", "Loc", "Both", "Dupe", "Bkg", "Miss")


def reference(truths, detections, *, image_ids=None, pos=0.5, bg=0.1, max_dets=100):
    """tidecv on the same objects: crowd regions as ignore regions (as tidecv's COCO reader does)."""
    ids = None if image_ids is None else set(image_ids)
    gt, preds = tidecv.Data("gt", max_dets=max_dets), tidecv.Data("preds", max_dets=max_dets)
    for truth in truths:
        if ids is not None and truth.image_id not in ids:
            continue
        gt.add_image(truth.image_id, str(truth.image_id))
        for box, cat, crowd in zip(truth.boxes.tolist(), truth.category_ids.tolist(), truth.iscrowd.tolist()):
            if crowd:
                gt.add_ignore_region(truth.image_id, cat, box)
            else:
                gt.add_ground_truth(truth.image_id, cat, box)
    for dets in detections:
        if ids is not None and dets.image_id not in ids:
            continue
        for box, score, cat in zip(dets.boxes_xywh.tolist(), dets.scores.tolist(), dets.category_ids.tolist()):
            preds.add_detection(dets.image_id, cat, score, box)
    run = tidecv.TIDE(pos_threshold=pos, background_threshold=bg, mode=tidecv.TIDE.BOX).evaluate(gt, preds)
    dap = {e.short_name: v / 100 for e, v in run.fix_main_errors().items()}
    counts = {e.short_name: v for e, v in run.count_errors().items()}
    return run.ap / 100, counts, dap


def assert_equal_to_tidecv(truths, detections, **kwargs):
    ours = tide_errors(
        truths=truths,
        detections=detections,
        image_ids=kwargs.get("image_ids"),
        pos_threshold=kwargs.get("pos", 0.5),
        background_threshold=kwargs.get("bg", 0.1),
        max_dets=kwargs.get("max_dets", 100),
    )
    ap, counts, dap = reference(truths, detections, **kwargs)
    assert ours.ap == pytest.approx(ap, abs=1e-6)
    for name, short in zip(ERROR_TYPES, TIDECV_NAMES):
        assert ours.counts[name] == counts[short], name
        assert ours.dap[name] == pytest.approx(dap[short], abs=1e-6), name
    return ours


@pytest.mark.parametrize("seed", range(8))
def test_random_scenes_equal_tidecv(seed):
    truths, dets = random_scene(seed, crowd_rate=0.1 if seed % 2 else 0.0, grid_boxes=seed % 3 == 0)
    ours = assert_equal_to_tidecv(truths, dets)
    assert min(ours.counts.values()) > 0 and min(ours.dap.values()) > 0


@pytest.mark.parametrize("seed", range(3))
def test_other_thresholds_and_max_dets_equal_tidecv(seed):
    truths, dets = random_scene(100 + seed, extra_dets=(5, 20), max_objects=12)
    assert_equal_to_tidecv(truths, dets, pos=0.7, bg=0.2, max_dets=10)


def test_image_subgroup_equals_tidecv_on_those_images():
    truths, dets = random_scene(7, n_images=40)
    subset = [t.image_id for t in truths if t.image_id % 3 == 0]
    ours = assert_equal_to_tidecv(truths, dets, image_ids=subset)
    assert ours.n_images == len(subset)


def _truth(boxes, cats, crowd=None):
    return ImageTruth(1, 200, 200, np.array(boxes, float).reshape(-1, 4), np.array(cats), np.array(crowd or []))


def _dets(boxes_xyxy, scores, cats, image_id=1):
    return ImageDetections(image_id, np.array(boxes_xyxy, float).reshape(-1, 4), np.array(scores), np.array(cats))


def test_mislabelled_and_mislocalised_is_both():
    # object 0..100 of class 1; a class-2 detection shifted so IoU is 0.33: neither cls (IoU < 0.5) nor loc
    truth = _truth([[0, 0, 100, 100]], [1])
    ours = assert_equal_to_tidecv([truth], [_dets([[50, 0, 150, 100]], [0.9], [2])])
    assert ours.counts == {**dict.fromkeys(ERROR_TYPES, 0), "both": 1, "missed": 1}
    assert ours.ap == 0.0 and ours.dap["both"] == 0.0


def test_localisation_classification_and_their_fix():
    truth = _truth([[0, 0, 100, 100], [120, 120, 50, 50]], [1, 2])
    dets = _dets([[30, 0, 130, 100], [120, 120, 170, 170], [0, 0, 100, 100]], [0.9, 0.8, 0.7], [1, 1, 3])
    ours = assert_equal_to_tidecv([truth], [dets])
    # IoU 70/130 = 0.54 with its own object: a true positive. Det 2 (class 1 on a class-2
    # object, IoU 1): classification. Det 3 (class 3, IoU 1 with class-1 object, already matched): cls.
    assert ours.counts["classification"] == 2 and ours.counts["missed"] == 0
    assert ours.dap["classification"] > 0


def test_localisation_at_exactly_the_foreground_threshold():
    # The half box (IoU exactly 0.5) ranked first matches (IoU >= t_f), and the exact box after it is a
    # duplicate. Ranked second, the half box is localisation, not duplicate (t_b <= IoU <= t_f is
    # tested first), pointing at a matched object, so fixing it only removes it.
    truth = _truth([[0, 0, 100, 100]], [1])
    dets = _dets([[0, 0, 100, 100], [0, 0, 100, 50]], [0.9, 0.95], [1, 1])
    ours = assert_equal_to_tidecv([truth], [dets])
    assert ours.counts["localisation"] == 0 and ours.counts["duplicate"] == 1
    dets = _dets([[0, 0, 100, 100], [0, 0, 100, 50]], [0.95, 0.9], [1, 1])
    ours = assert_equal_to_tidecv([truth], [dets])
    assert ours.counts["localisation"] == 1 and ours.counts["duplicate"] == 0
    assert ours.ap == 1.0 and ours.dap["localisation"] == 0.0


def test_duplicate_of_a_matched_object():
    truth = _truth([[0, 0, 100, 100]], [1])
    dets = _dets([[0, 0, 100, 100], [0, 0, 100, 90], [200, 0, 300, 50]], [0.9, 0.8, 0.7], [1, 1, 1])
    ours = assert_equal_to_tidecv([truth], [dets])
    assert ours.counts["duplicate"] == 1 and ours.counts["background"] == 1
    # precision drops to 1/2 at recall 1 only after the TP: AP stays 1
    assert ours.ap == 1.0


def test_background_and_missed_with_their_fixes():
    truths = [_truth([[0, 0, 50, 50], [100, 100, 50, 50]], [1, 1])]
    dets = [_dets([[0, 0, 50, 50], [150, 0, 200, 40]], [0.5, 0.9], [1, 1])]
    ours = assert_equal_to_tidecv(truths, dets)
    assert ours.counts["background"] == 1 and ours.counts["missed"] == 1
    # by hand: points FP(0.9), TP(0.5) of 2 objects: precision 1/2 up to recall 1/2, then 0
    assert ours.ap == pytest.approx(51 / 101 * 0.5)
    # fixing background: precision 1 up to recall 0.5
    assert ours.dap["background"] == pytest.approx(51 / 101 - ours.ap)
    # fixing missed: one object, precision 1/2 up to recall 1
    assert ours.dap["missed"] == pytest.approx(0.5 - ours.ap)


def test_unmatched_object_pointed_at_by_an_error_is_not_missed():
    truth = _truth([[0, 0, 100, 100]], [1])
    ours = assert_equal_to_tidecv([truth], [_dets([[0, 0, 100, 40], [0, 0, 100, 30]], [0.9, 0.8], [1, 1])])
    assert ours.counts["localisation"] == 2 and ours.counts["missed"] == 0
    assert ours.ap == 0.0 and ours.dap["localisation"] == pytest.approx(1.0)


def test_crowd_region_ignores_detections_and_is_never_missed():
    truth = _truth([[0, 0, 100, 100], [150, 150, 40, 40]], [1, 1], [True, False])
    dets = _dets([[10, 10, 50, 50], [150, 150, 190, 190], [10, 10, 50, 50]], [0.9, 0.8, 0.7], [1, 1, 2])
    ours = assert_equal_to_tidecv([truth], [dets])
    # det 0 lies inside the crowd region (ignored but still typed background); det 2 has another class
    assert ours.counts["background"] == 2 and ours.counts["missed"] == 0
    # class 1: AP 1 (the crowd detection left out); class 2 has a detection but no object: AP 0,
    # and tidecv counts it in the mean. Fixing background removes that detection, and the class.
    assert ours.ap == 0.5 and ours.dap["background"] == 0.5


def test_images_without_objects_or_detections():
    truths = [_truth([[0, 0, 50, 50]], [1]), ImageTruth(2, 100, 100, np.zeros((0, 4)), np.zeros(0, int))]
    dets = [_dets([[0, 0, 50, 50]], [0.3], [1], image_id=2)]
    ours = assert_equal_to_tidecv(truths, dets)
    assert ours.counts["background"] == 1 and ours.counts["missed"] == 1
    empty = tide_errors(truths=truths[1:], detections=[])
    assert empty.ap is None and all(v is None for v in empty.dap.values())


def test_deterministic_and_order_of_detection_lists_irrelevant():
    truths, dets = random_scene(3)
    a = tide_errors(truths=truths, detections=dets)
    b = tide_errors(truths=truths, detections=list(reversed(dets)))
    assert a == b


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pos_threshold": 0.0}, "pos_threshold"),
        ({"background_threshold": 0.6}, "background_threshold"),
        ({"max_dets": 0}, "max_dets"),
        ({"image_ids": [99]}, "image id 99"),
    ],
)
def test_bad_input(kwargs, message):
    truths, dets = random_scene(0, n_images=3)
    with pytest.raises(AuditError, match=message):
        tide_errors(truths=truths, detections=dets, **kwargs)


def test_detections_of_unknown_or_repeated_image():
    truths, dets = random_scene(0, n_images=3, empty_det_rate=0.0)
    with pytest.raises(AuditError, match="image id 7 has no ground truth"):
        tide_errors(truths=truths, detections=[_dets([[0, 0, 1, 1]], [0.5], [1], image_id=7)])
    with pytest.raises(AuditError, match="given twice"):
        tide_errors(truths=truths, detections=[dets[0], dets[0]])
