"""Sanity checks of detection attacks: synthetic curves for every verdict, the demo detector's real
curve (every check passes) and a shattered-gradient detector (the masking flags fire)."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch
from attack_nets import ANCHORS, SIZE, LinearYolo, ShatteredYolo

from audit.evaluation.detection.attack_checks import (
    CHECKS,
    LARGE_EPSILON,
    LOSS_DECREASES,
    MONOTONE,
    STRONGER_THAN_NOISE,
    ZERO_EPSILON,
    AttackCurve,
    CurvePoint,
    attack_sanity_checks,
    robust_map_curve,
    truth_from_xyxy,
)
from audit.evaluation.detection.attack_target import attack_target
from audit.evaluation.detection.model import DetectorModel, _decode_yolo
from stressors.attacks.detection import DetectionPGD, DetectionPGDL2


def point(eps, m, recall=0.5, noise=0.6, share=1.0) -> CurvePoint:
    return CurvePoint(eps, m, recall, noise, 0.6, 1.0, 0.5, share)


def curve(points, clean=0.6) -> AttackCurve:
    return AttackCurve("detection_pgd", "linf", "vanishing", 0.3, clean, 0.7, points)


def statuses(c: AttackCurve) -> dict[str, str]:
    findings = attack_sanity_checks(c)
    assert [f["check"] for f in findings] == list(CHECKS)
    return {f["check"]: f["status"] for f in findings}


def test_a_sound_curve_passes_every_check():
    c = curve([point(0, 0.6, 0.7, 0.6, None), point(0.01, 0.3), point(0.1, 0.05), point(0.3, 0.0, recall=0.01)])
    assert set(statuses(c).values()) == {"pass"}


def test_each_check_fails_on_its_own_defect():
    base = [point(0, 0.6, 0.7, 0.6, None), point(0.01, 0.3), point(0.1, 0.05), point(0.3, 0.0, recall=0.01)]
    assert statuses(curve([point(0, 0.55, 0.7, 0.6, None), *base[1:]]))[ZERO_EPSILON] == "fail"
    assert statuses(curve([*base[:2], point(0.1, 0.4), base[3]]))[MONOTONE] == "fail"
    assert statuses(curve([*base[:2], point(0.1, 0.05, noise=0.01), base[3]]))[STRONGER_THAN_NOISE] == "fail"
    assert statuses(curve([*base[:3], point(0.3, 0.0, recall=0.2)]))[LARGE_EPSILON] == "fail"
    assert statuses(curve([*base[:2], point(0.1, 0.05, share=0.5), base[3]]))[LOSS_DECREASES] == "fail"
    # within the tolerance (0.02 mAP) a rise is not a failure
    assert statuses(curve([*base[:2], point(0.1, 0.31), base[3]]))[MONOTONE] == "pass"


def test_missing_probes_are_insufficient_data():
    s = statuses(curve([point(0.01, 0.3)]))
    assert s[ZERO_EPSILON] == "insufficient_data" and s[LARGE_EPSILON] == "insufficient_data"
    assert s[MONOTONE] == "pass"  # clean counts as eps = 0
    s = statuses(curve([]))
    assert s[MONOTONE] == s[STRONGER_THAN_NOISE] == s[LOSS_DECREASES] == "insufficient_data"


def _model(net, num_classes):
    decode = partial(
        _decode_yolo,
        num_classes=num_classes,
        score_threshold=0.001,
        iou_threshold=0.5,
        max_detections=100,
        multi_label=False,
    )
    mean, std = (0, 0, 0), (1, 1, 1)
    size = SIZE if isinstance(net, LinearYolo) else (128, 128)
    return DetectorModel(
        net, mean=mean, std=std, input_size=size, num_classes=num_classes, decode=decode, has_gradients=True
    ).eval()


def _curve(attack, model, images, boxes, labels, categories, batch=4):
    ids = torch.arange(100, 100 + images.shape[0], dtype=torch.int64)
    batches = [
        (images[i : i + batch], boxes[i : i + batch], labels[i : i + batch], ids[i : i + batch])
        for i in range(0, images.shape[0], batch)
    ]
    truths = truth_from_xyxy([b.numpy() for b in boxes], [lab.numpy() for lab in labels], tuple(images.shape[2:]))
    names = [f"image-{i}" for i in range(batch)]
    return robust_map_curve(
        attack,
        attack_target(model),
        lambda x: model(x, image_ids=names[: x.shape[0]]),
        batches,
        truths=truths,
        categories=categories,
        seed=0,
        score_threshold=0.5,
        iou_threshold=0.5,
    )


@pytest.mark.parametrize(
    ("cls", "epsilons", "objective"),
    [
        (DetectionPGD, [0, 2 / 255, 8 / 255, 0.3], "vanishing"),
        (DetectionPGD, [0, 4 / 255], "mislabel"),
        (DetectionPGDL2, [0, 1.0, 10.0], "vanishing"),
    ],
)
def test_demo_detector_curve_passes_the_checks(cls, epsilons, objective):
    from audit.demo_detection import CLASS_NAMES, build_scenes, load_detection_demo_weights

    torch.set_num_threads(1)
    scenes = build_scenes(0, 8)
    images = torch.from_numpy(np.stack([s.image for s in scenes])).permute(0, 3, 1, 2).float() / 255
    boxes = [
        torch.from_numpy(np.concatenate([s.boxes[:, :2], s.boxes[:, :2] + s.boxes[:, 2:]], 1)).float() for s in scenes
    ]
    labels = [torch.from_numpy(s.labels) for s in scenes]
    model = _model(load_detection_demo_weights(), len(CLASS_NAMES))
    cats = {k + 1: n for k, n in enumerate(CLASS_NAMES)}
    c = _curve(cls(epsilons=epsilons, objective=objective, steps=5), model, images, boxes, labels, cats)
    assert c.clean_map > 0.4
    assert c.points[0].map == c.clean_map
    assert c.points[-1].map < 0.5 * c.clean_map  # the attack bites
    s = statuses(c)
    expected = "insufficient_data" if epsilons[-1] < cls.zero_recall_epsilon else "pass"
    assert s == {ZERO_EPSILON: "pass", MONOTONE: "pass", STRONGER_THAN_NOISE: "pass", LARGE_EPSILON: expected,
                 LOSS_DECREASES: "pass"}  # fmt: skip


def test_shattered_gradients_raise_the_masking_flags():
    """A sign-gradient attack through x + 0.002 sin(4000 x) is no better than noise; the plain net is beaten."""
    n = 8
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(n, 3, *SIZE, generator=gen) * 0.8 + 0.1
    (x1, y1, x2, y2) = (int(v) for v in ANCHORS[0])
    images[:, 0, y1:y2, x1:x2] = torch.linspace(0.56, 0.62, n).view(n, 1, 1)  # class 0 at anchor 0, score > 0.5
    images[:, 0, 16:28, 16:28] = 0.5
    boxes = [torch.tensor([ANCHORS[0]]) for _ in range(n)]
    labels = [torch.tensor([0]) for _ in range(n)]
    cats = {1: "a", 2: "b"}
    attack = DetectionPGD(epsilons=[0, 0.02, 0.3], steps=10)
    sound = statuses(_curve(attack, _model(LinearYolo(), 2), images, boxes, labels, cats))
    assert set(sound.values()) == {"pass"}
    masked = statuses(_curve(attack, _model(ShatteredYolo(), 2), images, boxes, labels, cats))
    assert masked[LOSS_DECREASES] == "fail"
    assert masked[LARGE_EPSILON] == "fail" or masked[STRONGER_THAN_NOISE] == "fail"
