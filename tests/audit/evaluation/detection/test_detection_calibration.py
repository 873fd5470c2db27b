"""D-ECE and the reliability diagram against netcal's detection ECE, on random data, edge cases and scenes."""

from __future__ import annotations

import numpy as np
import pytest
from detection_scenes import random_scene
from netcal.metrics import ECE

from audit.contract.errors import AuditError
from audit.evaluation.detection.calibration import (
    DEFAULT_BINS,
    CalibrationSamples,
    assign_bins,
    calibration_counts,
    calibration_samples,
    detection_ece,
    summarize,
)
from audit.evaluation.detection.coco_metrics import ImageDetections, ImageTruth
from audit.evaluation.detection.operating_point import match_image


def netcal_ece(confidence: np.ndarray, matched: np.ndarray, bins: int) -> float:
    return ECE(bins=bins, detection=True).measure(np.asarray(confidence, float), np.asarray(matched, int))


def netcal_bins(confidence: np.ndarray, matched: np.ndarray, bins: int) -> tuple[np.ndarray, ...]:
    """netcal's own per-bin count, precision and mean confidence (empty bins: 0)."""
    ece = ECE(bins=bins, detection=True)
    x, hit, _, bounds, _ = ece.prepare(np.asarray(confidence, float), np.asarray(matched, int))
    (precision, mean_conf), count, _, _ = ece.binning(bounds[0], x[0], hit[0], x[0][:, 0])
    return count, precision, mean_conf


@pytest.mark.parametrize("bins", [1, 2, 5, DEFAULT_BINS, 15, 20, 37])
@pytest.mark.parametrize("seed", range(4))
def test_random_arrays_equal_netcal(seed: int, bins: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 500))
    conf = rng.beta(2, 1.5, n)
    conf = np.where(rng.random(n) < 0.2, np.round(conf, 1), conf)  # many on the bin edges
    matched = (rng.random(n) < conf**1.5).astype(int)
    assert detection_ece(conf, matched, bins=bins) == pytest.approx(netcal_ece(conf, matched, bins), abs=1e-9)


EDGES = np.linspace(0, 1, DEFAULT_BINS + 1)
EDGE_CASES = {
    "all matched": (np.linspace(0.05, 0.95, 40), np.ones(40, int)),
    "none matched": (np.linspace(0.05, 0.95, 40), np.zeros(40, int)),
    "exactly 0 and 1": (np.array([0.0, 0.0, 1.0, 1.0, 1.0, 0.5]), np.array([0, 1, 1, 1, 0, 1])),
    "on every bin edge": (EDGES, np.arange(len(EDGES)) % 2),
    "next to every bin edge": (
        np.clip(np.r_[np.nextafter(EDGES, -1), np.nextafter(EDGES, 2)], 0, 1),
        np.arange(2 * len(EDGES)) % 3 == 0,
    ),
    "decimal edges 0.1 .. 0.9": (np.round(np.arange(1, 10) / 10, 1), np.ones(9, int)),
    "one bin used, others empty": (np.full(7, 0.73), np.array([1, 0, 1, 1, 0, 1, 1])),
    "two far bins": (np.array([0.01, 0.02, 0.98, 0.99]), np.array([0, 0, 1, 0])),
    "a single detection": (np.array([0.42]), np.array([1])),
    "perfect calibration in a bin": (np.full(4, 0.75), np.array([1, 1, 1, 0])),
}


@pytest.mark.parametrize("case", sorted(EDGE_CASES))
@pytest.mark.parametrize("bins", [1, 3, DEFAULT_BINS, 20])
def test_edge_cases_equal_netcal(case: str, bins: int) -> None:
    conf, matched = EDGE_CASES[case]
    ours = detection_ece(conf, matched, bins=bins)
    assert ours == pytest.approx(netcal_ece(conf, matched, bins), abs=1e-9)
    counts, precision, mean_conf = netcal_bins(conf, matched, bins)
    samples_counts = _one_image_counts(conf, matched, bins)
    diagram = summarize(samples_counts)
    np.testing.assert_array_equal(diagram.count, counts)
    np.testing.assert_allclose(np.nan_to_num(diagram.precision), precision, atol=1e-12)
    np.testing.assert_allclose(np.nan_to_num(diagram.mean_confidence), mean_conf, atol=1e-12)


def test_hand_values() -> None:
    # bin 9: two at 0.9, one matched -> |0.5 - 0.9| * 2/3; bin 2: one at 0.2, unmatched -> 0.2 * 1/3
    assert detection_ece(np.array([0.9, 0.9, 0.2]), np.array([1, 0, 0])) == pytest.approx(1 / 3, abs=1e-15)
    assert detection_ece(np.full(4, 0.75), np.array([1, 1, 1, 0])) == pytest.approx(0.0, abs=1e-15)
    assert detection_ece(np.array([1.0]), np.array([1])) == pytest.approx(0.0, abs=1e-15)
    assert detection_ece(np.array([0.0]), np.array([0])) == pytest.approx(0.0, abs=1e-15)
    assert detection_ece(np.zeros(0), np.zeros(0)) is None


def test_bins_are_half_open_with_the_last_closed() -> None:
    conf = np.array([0.0, 0.1, np.nextafter(0.1, 0), 0.5, 0.9, np.nextafter(1.0, 0), 1.0])
    np.testing.assert_array_equal(assign_bins(conf, bins=10), [0, 1, 0, 5, 9, 9, 9])
    np.testing.assert_array_equal(assign_bins(conf, bins=1), np.zeros(7, int))


def _one_image_counts(conf: np.ndarray, matched: np.ndarray, bins: int):
    samples = CalibrationSamples(
        image_ids=(1,),
        image_row=np.zeros(len(conf), dtype=np.int64),
        confidence=np.asarray(conf, float),
        matched=np.asarray(matched, int),
        ignored=np.zeros(1, dtype=np.int64),
        score_floor=0.0,
        iou_threshold=0.5,
    )
    return calibration_counts(samples, bins=bins)


def _brute_force_samples(truths, dets, score_floor, iou_threshold):
    """Confidences and matched flags by pairing each kept detection with its own match, image by image."""
    by_id = {d.image_id: d for d in dets}
    conf, hit, rows = [], [], []
    for row, t in enumerate(truths):
        d = by_id.get(t.image_id)
        if d is None:
            continue
        m = match_image(t, d, score_threshold=score_floor, iou_threshold=iou_threshold)
        for k, outcome in enumerate(m.detection_outcome):
            if outcome in (0, 1):
                conf.append(float(d.scores[k]))
                hit.append(int(outcome == 1))
                rows.append(row)
    return np.array(conf), np.array(hit, int), np.array(rows, int)


@pytest.mark.parametrize(
    ("seed", "score_floor", "iou_threshold", "bins", "crowd_rate"),
    [
        (0, 0.0, 0.5, 10, 0.0),
        (1, 0.05, 0.5, 10, 0.1),
        (2, 0.3, 0.75, 15, 0.0),
        (3, 0.0, 0.95, 20, 0.2),
        (4, 0.5, 0.1, 5, 0.05),
    ],
)
def test_scenes_equal_netcal(seed: int, score_floor: float, iou_threshold: float, bins: int, crowd_rate: float) -> None:
    truths, dets = random_scene(seed, n_images=60, crowd_rate=crowd_rate)
    samples = calibration_samples(truths, dets, score_floor=score_floor, iou_threshold=iou_threshold)
    conf, hit, rows = _brute_force_samples(truths, dets, score_floor, iou_threshold)
    # the samples are the matching's kept, not-ignored detections, image by image
    np.testing.assert_array_equal(samples.confidence, conf)
    np.testing.assert_array_equal(samples.matched, hit)
    np.testing.assert_array_equal(samples.image_row, rows)
    assert 0 < hit.sum() < len(hit)
    assert (samples.confidence >= score_floor).all()
    counts = calibration_counts(samples, bins=bins)
    expected = netcal_ece(conf, hit, bins)
    assert summarize(counts).d_ece == pytest.approx(expected, abs=1e-9)
    assert detection_ece(samples.confidence, samples.matched, bins=bins) == pytest.approx(expected, abs=1e-9)
    ref_count, ref_precision, ref_conf = netcal_bins(conf, hit, bins)
    diagram = summarize(counts)
    np.testing.assert_array_equal(diagram.count, ref_count)
    np.testing.assert_allclose(np.nan_to_num(diagram.precision), ref_precision, atol=1e-12)
    np.testing.assert_allclose(np.nan_to_num(diagram.mean_confidence), ref_conf, atol=1e-12)
    assert diagram.n_detections == len(conf) and diagram.n_images == len(truths)


def test_image_resample_equals_netcal_on_the_repeated_detections() -> None:
    truths, dets = random_scene(7, n_images=50, crowd_rate=0.1)
    samples = calibration_samples(truths, dets, score_floor=0.1, iou_threshold=0.5)
    counts = calibration_counts(samples)
    assert counts.count.shape == (50, DEFAULT_BINS)
    rng = np.random.default_rng(0)
    for _ in range(5):
        draw = rng.integers(0, 50, 50)
        pick = np.concatenate([np.flatnonzero(samples.image_row == r) for r in draw])
        expected = netcal_ece(samples.confidence[pick], samples.matched[pick], DEFAULT_BINS)
        assert summarize(counts, image_index=draw).d_ece == pytest.approx(expected, abs=1e-9)
    # a subgroup of images is a subset of rows
    subset = np.arange(0, 50, 3)
    pick = np.isin(samples.image_row, subset)
    expected = netcal_ece(samples.confidence[pick], samples.matched[pick], DEFAULT_BINS)
    assert summarize(counts, image_index=subset).d_ece == pytest.approx(expected, abs=1e-9)
    # the per-image sums add up to the whole
    assert counts.count.sum() == len(samples.confidence) and counts.matched.sum() == samples.matched.sum()


def test_hand_worked_scene() -> None:
    # objects: class 1 at (0,0,10,10), a crowd region of class 2 at (50,50,40,40), class 1 at (100,100,10,10)
    truth = ImageTruth(
        1,
        200,
        200,
        np.array([[0, 0, 10, 10], [50, 50, 40, 40], [100, 100, 10, 10]], float),
        np.array([1, 2, 1]),
        np.array([False, True, False]),
    )
    dets = ImageDetections(
        1,
        np.array(
            [
                [0, 0, 10, 10],  # 0.9 class 1: matches object 0
                [0, 0, 10, 9],  # 0.8 class 1: duplicate of object 0 -> unmatched
                [100, 100, 110, 110],  # 0.7 class 2: wrong class -> unmatched
                [55, 55, 65, 65],  # 0.6 class 2: inside the crowd region -> ignored
                [100, 100, 110, 110],  # 0.05 class 1: below the floor -> not a sample
            ],
            float,
        ),
        np.array([0.9, 0.8, 0.7, 0.6, 0.05]),
        np.array([1, 1, 2, 2, 1]),
    )
    empty = ImageTruth(2, 200, 200, np.zeros((0, 4)), np.zeros(0, int))
    samples = calibration_samples([truth, empty], [dets], score_floor=0.1, iou_threshold=0.5)
    np.testing.assert_array_equal(samples.confidence, [0.9, 0.8, 0.7])
    np.testing.assert_array_equal(samples.matched, [1, 0, 0])
    np.testing.assert_array_equal(samples.ignored, [1, 0])
    counts = calibration_counts(samples, bins=10)
    np.testing.assert_array_equal(counts.count[1], np.zeros(10))
    diagram = summarize(counts)
    assert diagram.d_ece == pytest.approx((0.1 + 0.8 + 0.7) / 3, abs=1e-12)
    assert np.isnan(diagram.precision[0]) and diagram.count[0] == 0
    assert diagram.precision[9] == 1.0 and diagram.mean_confidence[8] == pytest.approx(0.8)
    assert summarize(counts, image_index=[1, 1]).d_ece is None


def test_deterministic_and_independent_of_detection_order() -> None:
    truths, dets = random_scene(11, n_images=40)
    a = summarize(calibration_counts(calibration_samples(truths, dets, score_floor=0.2, iou_threshold=0.5)))
    b = summarize(calibration_counts(calibration_samples(truths, dets[::-1], score_floor=0.2, iou_threshold=0.5)))
    assert a.d_ece == b.d_ece
    np.testing.assert_array_equal(a.count, b.count)


@pytest.mark.parametrize(
    ("conf", "matched", "bins", "message"),
    [
        ([0.5, 1.2], [1, 0], 10, "confidence 1.2"),
        ([0.5, -0.1], [1, 0], 10, "confidence -0.1"),
        ([0.5, np.nan], [1, 0], 10, "confidence nan"),
        ([0.5], [1, 0], 10, "1 confidences but 2"),
        ([0.5, 0.4], [1, 2], 10, "0 or 1"),
        ([0.5], [1], 0, "positive integer"),
        ([0.5], [1], 2.5, "positive integer"),
    ],
)
def test_bad_arrays(conf, matched, bins, message: str) -> None:
    with pytest.raises(AuditError, match=message):
        detection_ece(np.array(conf), np.array(matched), bins=bins)


def test_bad_scene_inputs() -> None:
    truth = ImageTruth(3, 10, 10, np.array([[0, 0, 5, 5]], float), np.array([1]))
    logits = ImageDetections(3, np.array([[0, 0, 5, 5]], float), np.array([4.2]), np.array([1]))
    with pytest.raises(AuditError, match="image 3: score 4.2"):
        calibration_samples([truth], [logits], score_floor=0.0, iou_threshold=0.5)
    with pytest.raises(AuditError, match="iou_threshold"):
        calibration_samples([truth], [], score_floor=0.0, iou_threshold=0.0)
    counts = calibration_counts(calibration_samples([truth], [], score_floor=0.0, iou_threshold=0.5))
    with pytest.raises(AuditError, match="image rows"):
        summarize(counts, image_index=[1])
