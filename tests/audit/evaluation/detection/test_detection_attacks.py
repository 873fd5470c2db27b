"""Detection attacks (PGD with vanishing / mislabel objectives, L∞ and L2) at the API level.

The reference numbers come from the hand-made detectors of attack_nets.py: a score is a sigmoid
of one region mean, so the best perturbation within ε is known in closed form.
"""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pytest
import torch
from attack_nets import ANCHORS, GAIN, SIZE, LinearBoxes, LinearYolo

from audit.contract.config import ModelConfig
from audit.evaluation.detection.attack_target import attack_target
from audit.evaluation.detection.model import DetectorModel, _decode_boxes, _decode_yolo, load_detector
from stressors.attacks.detection import DetectionPGD, DetectionPGDL2, box_iou
from stressors.base import StressorError

CPU = torch.device("cpu")


def sig(v: float) -> float:
    return 1 / (1 + math.exp(-v))


def wrap(net: torch.nn.Module, output: str = "yolo", num_classes: int = 2) -> DetectorModel:
    if output == "yolo":
        decode = partial(
            _decode_yolo,
            num_classes=num_classes,
            score_threshold=0.001,
            iou_threshold=0.5,
            max_detections=100,
            multi_label=False,
        )
    else:
        decode = partial(_decode_boxes, num_classes=num_classes)
    return DetectorModel(
        net,
        mean=(0, 0, 0),
        std=(1, 1, 1),
        input_size=SIZE,
        num_classes=num_classes,
        decode=decode,
        has_gradients=True,
    ).eval()


def scene(m0: float = 0.7, m1: float = 0.2, n: int = 1) -> torch.Tensor:
    """Images whose channel 0 is ``m0`` inside anchor 0 and ``m1`` inside anchor 1; elsewhere seeded noise."""
    x = torch.rand(n, 3, *SIZE, generator=torch.Generator().manual_seed(3)) * 0.8 + 0.1
    for (x1, y1, x2, y2), m in zip(ANCHORS, (m0, m1)):
        x[:, 0, int(y1) : int(y2), int(x1) : int(x2)] = m
    return x


def truth(n: int = 1, objects=((0, 0), (1, 1))):
    """Per image: boxes = the anchors named in ``objects`` (anchor, class)."""
    boxes = [torch.tensor([ANCHORS[a] for a, _ in objects], dtype=torch.float32) for _ in range(n)]
    labels = [torch.tensor([c for _, c in objects], dtype=torch.int64) for _ in range(n)]
    return boxes, labels


def region(x: torch.Tensor, a: int) -> torch.Tensor:
    x1, y1, x2, y2 = (int(v) for v in ANCHORS[a])
    return x[:, 0, y1:y2, x1:x2]


IDS1 = torch.tensor([11], dtype=torch.int64)


def test_linf_vanishing_reaches_the_hand_optimum():
    """Vanishing lowers class 0 on anchor 0 (m0 - ε) and class 1 on anchor 1 (m1 + ε): the exact optimum."""
    eps = 0.05
    x = scene()
    boxes, labels = truth()
    attack = DetectionPGD(epsilons=[0, eps], objective="vanishing")
    res = attack.attack_boxes(
        attack_target(wrap(LinearYolo())), x, boxes, labels, severity=eps, sample_ids=IDS1, seed=0
    )
    assert torch.allclose(region(res.images, 0), torch.full_like(region(x, 0), 0.7 - eps), atol=1e-6)
    assert torch.allclose(region(res.images, 1), torch.full_like(region(x, 1), 0.2 + eps), atol=1e-6)
    clean = sig(GAIN * 0.2) + sig(-GAIN * (0.2 - 0.5))
    best = sig(GAIN * (0.2 - eps)) + sig(-GAIN * (0.2 + eps - 0.5))
    assert float(res.loss_clean[0]) == pytest.approx(clean, abs=1e-5)
    assert float(res.loss_final[0]) == pytest.approx(best, abs=1e-5)
    assert float((res.images - x).abs().amax()) <= eps + 1e-6
    assert float(res.images.min()) >= 0 and float(res.images.max()) <= 1


def test_linf_mislabel_pushes_to_the_other_class():
    eps = 0.05
    x = scene()
    boxes, labels = truth(objects=((0, 0),))
    attack = DetectionPGD(epsilons=[eps], objective="mislabel")
    res = attack.attack_boxes(
        attack_target(wrap(LinearYolo())), x, boxes, labels, severity=eps, sample_ids=IDS1, seed=0
    )
    assert torch.allclose(region(res.images, 0), torch.full_like(region(x, 0), 0.7 - eps), atol=1e-6)
    best = sig(GAIN * (0.2 - eps)) - sig(-GAIN * (0.2 - eps))
    assert float(res.loss_final[0]) == pytest.approx(best, abs=1e-5)


def test_l2_vanishing_is_close_to_the_hand_optimum_and_never_beyond_it():
    """One object on anchor 0 (64 pixels): the L2 optimum moves each of them by -ε/8, the mean by ε/8."""
    eps = 0.4
    x = scene()
    boxes, labels = truth(objects=((0, 0),))
    attack = DetectionPGDL2(epsilons=[eps], objective="vanishing", steps=40)
    res = attack.attack_boxes(
        attack_target(wrap(LinearYolo())), x, boxes, labels, severity=eps, sample_ids=IDS1, seed=0
    )
    optimum = sig(GAIN * (0.2 - eps / 8))
    assert float((res.images - x).flatten(1).norm(dim=1).max()) <= eps + 1e-5
    assert float(res.loss_final[0]) >= optimum - 1e-6
    assert float(res.loss_final[0]) <= optimum + 0.002
    assert float(res.loss_final[0]) < sig(GAIN * 0.2) - 0.05


def test_epsilon_zero_returns_the_clean_pixels():
    x = scene(n=2)
    boxes, labels = truth(n=2)
    for cls in (DetectionPGD, DetectionPGDL2):
        attack = cls(epsilons=[0, 0.1])
        res = attack.attack_boxes(
            attack_target(wrap(LinearYolo())), x, boxes, labels, severity=0, sample_ids=torch.tensor([1, 2]), seed=0
        )
        assert torch.equal(res.images, x)
        assert torch.equal(res.loss_final, res.loss_clean)


def test_mislabel_target_is_the_most_likely_wrong_class_lowest_index_on_ties_next_class_without_candidates():
    attack = DetectionPGD(objective="mislabel")
    cand = torch.tensor([[[0.0, 0, 10, 10], [0, 0, 10, 9], [50, 50, 60, 60]]])
    scores = torch.tensor([[[0.9, 0.2, 0.3, 0.3], [0.8, 0.3, 0.1, 0.4], [0.0, 0.0, 0.0, 0.9]]])
    gt = [torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10], [100, 100, 110, 110]])]
    labels = [torch.tensor([0, 3, 2])]
    # object 0 (class 0): wrong classes summed over anchors 0, 1: [., 0.5, 0.4, 0.7] -> 3
    # object 1 (class 3): [1.7, 0.5, 0.4, .] -> 0; object 2: no candidate -> (2 + 1) % 4 = 3
    assert attack._targets(cand, scores, gt, labels)[0].tolist() == [3, 0, 3]
    tie = torch.tensor([[[0.9, 0.4, 0.4, 0.1]]])
    assert attack._targets(cand[:, :1], tie, [gt[0][:1]], [torch.tensor([0])])[0].tolist() == [1]


def test_deterministic_keyed_per_sample_and_batch_invariant():
    x = torch.cat([scene(0.7, 0.2), scene(0.6, 0.3)])
    boxes, labels = truth(n=2)
    ids = torch.tensor([5, 9], dtype=torch.int64)
    attack = DetectionPGD(epsilons=[0.03], steps=3)
    target = attack_target(wrap(LinearYolo()))
    both = attack.attack_boxes(target, x, boxes, labels, severity=0.03, sample_ids=ids, seed=4)
    again = attack.attack_boxes(target, x, boxes, labels, severity=0.03, sample_ids=ids, seed=4)
    assert torch.equal(both.images, again.images)
    for i in range(2):
        one = attack.attack_boxes(
            target, x[i : i + 1], boxes[i : i + 1], labels[i : i + 1], severity=0.03, sample_ids=ids[i : i + 1], seed=4
        )
        assert torch.allclose(one.images, both.images[i : i + 1], atol=1e-6)
    other = attack.attack_boxes(target, x, boxes, labels, severity=0.03, sample_ids=ids + 1, seed=4)
    outside = torch.ones(SIZE, dtype=torch.bool)
    for x1, y1, x2, y2 in ANCHORS:
        outside[int(y1) : int(y2), int(x1) : int(x2)] = False
    # pixels no gradient reaches keep their random start: keyed by the sample id
    assert not torch.equal(other.images[:, 0][:, outside], both.images[:, 0][:, outside])


def test_boxes_output_vanishing_runs_and_mislabel_is_refused():
    eps = 0.05
    x = scene()
    boxes, labels = truth()
    model = wrap(LinearBoxes(), output="boxes")
    target = attack_target(model)
    assert target.output == "boxes" and not target.class_scores
    res = DetectionPGD(epsilons=[eps]).attack_boxes(target, x, boxes, labels, severity=eps, sample_ids=IDS1, seed=0)
    # each anchor's returned score is its best class, here its true class: the same optimum as the yolo head
    best = sig(GAIN * (0.2 - eps)) + sig(-GAIN * (0.2 + eps - 0.5))
    assert float(res.loss_final[0]) == pytest.approx(best, abs=1e-5)
    with pytest.raises(StressorError, match=r"^detection_pgd: objective 'mislabel' needs every class's score") as err:
        DetectionPGD(epsilons=[eps], objective="mislabel").attack_boxes(
            target, x, boxes, labels, severity=eps, sample_ids=IDS1, seed=0
        )
    assert "\n" not in str(err.value)


def test_onnx_detector_is_refused_with_one_line(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    path = tmp_path / "det.onnx"
    torch.onnx.export(LinearYolo().eval(), (torch.rand(2, 3, *SIZE),), str(path), dynamo=True)
    cfg = ModelConfig(path=path, input_size=SIZE, mean=(0, 0, 0), std=(1, 1, 1))
    model, info = load_detector(cfg, output="yolo", num_classes=2, device=CPU, base_dir=tmp_path)
    assert info["format"] == "onnx"
    boxes, labels = truth()
    for cls in (DetectionPGD, DetectionPGDL2):
        with pytest.raises(StressorError) as err:
            cls().attack_boxes(attack_target(model), scene(), boxes, labels, severity=0.0, sample_ids=IDS1, seed=0)
        assert str(err.value) == (
            f"{cls.name}: the detector has no gradients (an ONNX model runs in onnxruntime, which gives no gradient); "
            "gradient attacks cannot run on it"
        )


def test_detached_or_zero_gradient_detectors_are_refused():
    class Detached(LinearYolo):
        def forward(self, x):
            with torch.no_grad():
                return super().forward(x)

    class Rounded(LinearYolo):
        def forward(self, x):
            return super().forward(torch.round(x * 255) / 255)

    boxes, labels = truth()
    with pytest.raises(StressorError, match="detached from the input"):
        DetectionPGD().attack_boxes(
            attack_target(wrap(Detached())), scene(), boxes, labels, severity=0.0, sample_ids=IDS1, seed=0
        )
    with pytest.raises(StressorError, match="gradient of the detector's scores is all zero"):
        DetectionPGD().attack_boxes(
            attack_target(wrap(Rounded())), scene(), boxes, labels, severity=0.0, sample_ids=IDS1, seed=0
        )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"objective": "hide"},
            "detection_pgd: option 'objective' must be one of ['vanishing', 'mislabel'], got 'hide'",
        ),
        ({"epsilons": [-0.1]}, "detection_pgd: option 'epsilons': epsilon -0.1 outside [0, 1] (pixel units of [0, 1])"),
        ({"steps": 0}, "detection_pgd: option 'steps' must be an integer >= 1, got 0"),
        ({"iou": 1.5}, "detection_pgd: option 'iou' must be a number (0, 1], got 1.5"),
        ({"restarts": 2}, "detection_pgd: unknown option 'restarts'; expected one of"),
    ],
)
def test_bad_options_are_one_line(options, message):
    with pytest.raises(StressorError) as err:
        DetectionPGD(**options)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_bad_batches_are_one_line():
    attack = DetectionPGD(epsilons=[0.01])
    target = attack_target(wrap(LinearYolo()))
    boxes, labels = truth()
    with pytest.raises(StressorError, match=r"severity 0.02 out of range"):
        attack.attack_boxes(target, scene(), boxes, labels, severity=0.02, sample_ids=IDS1, seed=0)
    with pytest.raises(StressorError, match=r"boxes must be a list of 1 tensors"):
        attack.attack_boxes(target, scene(), boxes * 2, labels, severity=0.01, sample_ids=IDS1, seed=0)
    with pytest.raises(StressorError, match=r"labels of image 0 must be an integer tensor \(2,\)"):
        attack.attack_boxes(target, scene(), boxes, [labels[0].float()], severity=0.01, sample_ids=IDS1, seed=0)
    with pytest.raises(StressorError, match=r"a label of image 0 is not a class index in \[0, 2\)"):
        attack.attack_boxes(target, scene(), boxes, [labels[0] + 1], severity=0.01, sample_ids=IDS1, seed=0)


def test_a_classifier_audit_cannot_run_it():
    with pytest.raises(StressorError, match=r"^detection_pgd_l2: attacks object detectors \(task: detection\)"):
        DetectionPGDL2().perturb(None, scene(), torch.zeros(1, dtype=torch.int64), severity=0.0)


def test_noise_baseline_has_the_norm_and_is_keyed():
    x = scene(n=2)
    ids = torch.tensor([1, 2])
    linf = DetectionPGD(epsilons=[0.1]).noise(x, severity=0.1, sample_ids=ids, seed=0)
    assert float((linf - x).abs().amax()) <= 0.1 + 1e-6
    mid = torch.full((1, 3, *SIZE), 0.5)
    l2 = DetectionPGDL2(epsilons=[2.0]).noise(mid, severity=2.0, sample_ids=ids[:1], seed=0)
    assert float((l2 - mid).flatten(1).norm()) == pytest.approx(2.0, abs=1e-4)  # no clipping at 0.5 +- small
    again = DetectionPGD(epsilons=[0.1]).noise(x[1:], severity=0.1, sample_ids=ids[1:], seed=0)
    assert torch.equal(again, linf[1:])


def test_box_iou_against_hand_values():
    a = torch.tensor([[0.0, 0, 4, 4], [2, 2, 6, 6], [0, 0, 0, 0]])
    b = torch.tensor([[0.0, 0, 4, 4], [4, 4, 8, 8]])
    expected = np.array([[1, 0], [4 / 28, 4 / 28], [0, 0]])
    assert np.allclose(box_iou(a, b).numpy(), expected)


def test_hugging_face_detr_candidates_are_its_processors_scores_before_thresholding_and_attackable(tmp_path):
    """The candidates equal post_process_object_detection at threshold -1 (every query, best class), and the
    vanishing attack lowers its objective (both objectives run: every class's score is there)."""
    pytest.importorskip("transformers")
    from test_hf_detector import SIZE as HF_SIZE
    from test_hf_detector import save_tiny_detr

    folder = save_tiny_detr(tmp_path / "detr")
    cfg = ModelConfig(path=folder, format="huggingface", input_size=HF_SIZE)
    model, _ = load_detector(cfg, output="boxes", num_classes=3, device=CPU, base_dir=None, score_threshold=0.0)
    target = attack_target(model)
    assert target.has_gradients and target.class_scores
    x = torch.rand(2, 3, *HF_SIZE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        cand, scores = target.candidates(x)
        net = model.net
        outputs = net.model(pixel_values=(x - model.mean) / model.std, return_dict=True)
        ref = net.processor.post_process_object_detection(
            outputs, threshold=-1.0, target_sizes=torch.tensor([list(HF_SIZE)] * 2)
        )
    for b in range(2):
        assert torch.allclose(cand[b], ref[b]["boxes"], atol=1e-4)
        best, label = scores[b].max(dim=-1)
        assert torch.allclose(best, ref[b]["scores"], atol=1e-6) and torch.equal(label, ref[b]["labels"])
    # attack the best query's box as a ground-truth object of its class
    top = scores.max(dim=-1).values.argmax(dim=1)
    boxes = [cand[b, top[b]].unsqueeze(0) for b in range(2)]
    labels = [scores[b, top[b]].argmax().view(1) for b in range(2)]
    for objective in ("vanishing", "mislabel"):
        attack = DetectionPGD(epsilons=[8 / 255], steps=5, objective=objective)
        res = attack.attack_boxes(target, x, boxes, labels, severity=8 / 255, sample_ids=torch.tensor([1, 2]), seed=0)
        assert bool((res.loss_final < res.loss_clean).all())
    # a model type whose scoring cvaudit does not know is refused with one line
    model.net.model.config.model_type = "owlv2"
    with pytest.raises(StressorError) as err:
        DetectionPGD().attack_boxes(
            attack_target(model), x, boxes, labels, severity=0.0, sample_ids=IDS1.repeat(2), seed=0
        )
    assert str(err.value).startswith("detection_pgd: the detector has no gradients (a Hugging Face 'owlv2' detector")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("cls", [DetectionPGD, DetectionPGDL2])
def test_demo_detector_batch_invariance_within_the_classifier_attacks_tolerance(cls):
    """A scene attacked alone, in a reordered sub-batch and in the whole batch: within 1e-5 (stressors.testing)."""
    from audit.demo_detection import CLASS_NAMES, build_scenes, load_detection_demo_weights

    torch.set_num_threads(1)
    scenes = build_scenes(0, 5)
    x = torch.from_numpy(np.stack([s.image for s in scenes])).permute(0, 3, 1, 2).float() / 255
    boxes = [torch.tensor(np.c_[s.boxes[:, :2], s.boxes[:, :2] + s.boxes[:, 2:]], dtype=torch.float32) for s in scenes]
    labels = [torch.from_numpy(s.labels) for s in scenes]
    ids = torch.arange(40, 45, dtype=torch.int64)
    decode = partial(
        _decode_yolo, num_classes=3, score_threshold=0.001, iou_threshold=0.5, max_detections=100, multi_label=False
    )
    model = DetectorModel(
        load_detection_demo_weights(),
        mean=(0, 0, 0),
        std=(1, 1, 1),
        input_size=(128, 128),
        num_classes=len(CLASS_NAMES),
        decode=decode,
        has_gradients=True,
    ).eval()
    target = attack_target(model)
    eps = cls.default_epsilons[2]
    attack = cls(steps=3)
    full = attack.attack_boxes(target, x, boxes, labels, severity=eps, sample_ids=ids, seed=1).images
    order = [4, 1, 0]
    sub = attack.attack_boxes(
        target,
        x[order],
        [boxes[i] for i in order],
        [labels[i] for i in order],
        severity=eps,
        sample_ids=ids[order],
        seed=1,
    ).images
    assert torch.allclose(sub, full[order], rtol=0, atol=1e-5)
    alone = attack.attack_boxes(target, x[2:3], boxes[2:3], labels[2:3], severity=eps, sample_ids=ids[2:3], seed=1)
    assert torch.allclose(alone.images[0], full[2], rtol=0, atol=1e-5)
    assert float((full - x).abs().amax()) > 0  # the attack did move the pixels
