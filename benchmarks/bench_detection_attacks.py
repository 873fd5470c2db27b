"""cvaudit's vanishing PGD on a detector side by side with ART's PGD on the same detector and objective.

The reference is the Adversarial Robustness Toolbox (ART 1.20) ``ProjectedGradientDescent`` on a
``PyTorchYolo`` estimator. ART's object-detector estimators import torchvision for a version
check only (``PyTorchObjectDetector.__init__``: ``import torchvision``; its version is compared
with 0.9 / 0.10 and nothing else of it is used), and torchvision does not import beside this
torch; :func:`art_estimator` therefore puts a module named ``torchvision`` holding only a
``__version__`` into ``sys.modules`` while the estimator is built (and removes it after). The
detector is wrapped as ART's ``PyTorchYolo`` expects: in training mode with targets it returns a
loss dict, here ``{"loss_total": -vanishing}`` with cvaudit's vanishing objective
(:class:`stressors.attacks.detection.DetectionPGD`), so ART's untargeted PGD (which ascends the
loss) minimises the same objective. Both attacks: L∞, the same ε, steps and absolute step size
(2.5·ε/steps). ART's PGD for object detectors starts at the clean image only
(``num_random_init > 0`` raises "Random initialisation is only supported for classification"), so
the like-for-like column is cvaudit with ``random_start: false``; cvaudit's default (a random start)
is shown beside it. ART returns its last iterate, cvaudit the iterate with the lowest objective.

Reported per ε: mAP@[.5:.95] and recall at the operating point (score 0.5, IoU 0.5) on the demo
detector's audit scenes, the mean vanishing objective reached, and the wall time.

Usage:
    PYTHONPATH=. python benchmarks/bench_detection_attacks.py [--n 64] [--steps 10]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
import types
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from audit.evaluation.detection.attack_checks import map_and_recall, truth_from_xyxy
from audit.evaluation.detection.attack_target import attack_target
from audit.evaluation.detection.coco_metrics import ImageDetections
from audit.evaluation.detection.model import DetectorModel, _decode_yolo
from stressors.attacks.detection import DetectionPGD


class ArtVanishing(nn.Module):
    """A detector under ART's ``PyTorchYolo`` contract with cvaudit's vanishing objective.

    ``forward(x, targets)``: ``targets`` (M, 6) rows ``image, label, cx, cy, w, h`` with the box
    normalised by the input size (ART's translation of its ``y``) -> ``{"loss_total": -vanishing}``
    summed over the batch.
    """

    def __init__(self, model: DetectorModel, attack: DetectionPGD):
        super().__init__()
        self.model = model
        self.attack = attack
        self.target = attack_target(model)

    def forward(self, x: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        h, w = x.shape[2:]
        boxes, labels = [], []
        for i in range(x.shape[0]):
            rows = targets[targets[:, 0] == i]
            cx, cy, bw, bh = rows[:, 2] * w, rows[:, 3] * h, rows[:, 4] * w, rows[:, 5] * h
            boxes.append(torch.stack((cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2), dim=1))
            labels.append(rows[:, 1].long())
        cand, scores = self.target.candidates(x)
        empty = [lab.new_zeros(0) for lab in labels]
        loss = self.attack._loss(cand.detach(), scores, boxes, labels, empty)
        return {"loss_total": -loss.sum()}


@contextmanager
def version_only_torchvision():
    """A ``torchvision`` module holding only ``__version__`` while ART's estimator is built (see the docstring)."""
    stub = types.ModuleType("torchvision")
    stub.__version__ = "0.0.0+absent"
    saved = sys.modules.get("torchvision")
    sys.modules["torchvision"] = stub
    try:
        yield
    finally:
        if saved is None:
            sys.modules.pop("torchvision", None)
        else:
            sys.modules["torchvision"] = saved


def art_estimator(model: DetectorModel, attack: DetectionPGD):
    """ART's ``PyTorchYolo`` over :class:`ArtVanishing` (clip values (0, 1), CPU)."""
    from art.estimators.object_detection import PyTorchYolo

    size = model.input_size
    with version_only_torchvision():
        return PyTorchYolo(
            ArtVanishing(model, attack),
            input_shape=(3, *size),
            clip_values=(0.0, 1.0),
            attack_losses=("loss_total",),
            device_type="cpu",
        )


def art_pgd(estimator, images: torch.Tensor, boxes, labels, *, eps: float, steps: int, seed: int) -> torch.Tensor:
    """ART's PGD (L∞, no random start: ART allows none for detectors; absolute step 2.5·ε/steps)."""
    from art.attacks.evasion import ProjectedGradientDescent

    np.random.seed(seed)
    pgd = ProjectedGradientDescent(
        estimator,
        norm=np.inf,
        eps=eps,
        eps_step=2.5 * eps / steps,
        max_iter=steps,
        targeted=False,
        num_random_init=0,
        batch_size=images.shape[0],
        verbose=False,
    )
    y = [{"boxes": b.numpy(), "labels": lab.numpy()} for b, lab in zip(boxes, labels)]
    return torch.from_numpy(pgd.generate(x=images.numpy(), y=y))


def demo_setup(n: int):
    """The demo detector (score threshold 0.001 for AP) and ``n`` audit scenes: images, boxes, labels, truths."""
    from audit.demo_detection import CLASS_NAMES, build_scenes, load_detection_demo_weights

    scenes = build_scenes(0, n)
    images = torch.from_numpy(np.stack([s.image for s in scenes])).permute(0, 3, 1, 2).float() / 255
    boxes = [
        torch.from_numpy(np.concatenate([s.boxes[:, :2], s.boxes[:, :2] + s.boxes[:, 2:]], 1)).float() for s in scenes
    ]
    labels = [torch.from_numpy(s.labels) for s in scenes]
    c = len(CLASS_NAMES)
    decode = partial(
        _decode_yolo, num_classes=c, score_threshold=0.001, iou_threshold=0.5, max_detections=100, multi_label=False
    )
    model = DetectorModel(
        load_detection_demo_weights(),
        mean=(0, 0, 0),
        std=(1, 1, 1),
        input_size=(128, 128),
        num_classes=c,
        decode=decode,
        has_gradients=True,
    ).eval()
    truths = truth_from_xyxy([b.numpy() for b in boxes], [lab.numpy() for lab in labels], (128, 128))
    categories = {k + 1: name for k, name in enumerate(CLASS_NAMES)}
    return model, images, boxes, labels, truths, categories


def measure(model, images, boxes, labels, truths, categories, attack) -> tuple[float, float | None, float]:
    """(mAP, recall at score 0.5 / IoU 0.5, mean vanishing objective) of ``model`` on ``images``."""
    with torch.no_grad():
        out = model(images, image_ids=[str(i) for i in range(images.shape[0])])
        cand, scores = attack_target(model).candidates(images)
    dets = [
        ImageDetections(i + 1, d.boxes.double().numpy(), d.scores.double().numpy(), d.labels.numpy() + 1)
        for i, d in enumerate(out)
    ]
    m, r = map_and_recall(truths, dets, categories, score_threshold=0.5, iou_threshold=0.5)
    empty = [lab.new_zeros(0) for lab in labels]
    loss = attack._loss(cand, scores, boxes, labels, empty)
    return m, r, float(loss.mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    import art

    model, images, boxes, labels, truths, categories = demo_setup(args.n)
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, ART {art.__version__}, 1 thread")
    print(f"# demo detector, {args.n} scenes, L-inf vanishing, {args.steps} steps, step 2.5*eps/steps")
    base = DetectionPGD(epsilons=[0.0], steps=args.steps)
    m, r, loss = measure(model, images, boxes, labels, truths, categories, base)
    print(f"clean: mAP {m:.3f} recall {r:.3f} objective {loss:.3f}")
    print("mAP / recall / mean objective / seconds; cvaudit-fixed = cvaudit with random_start false (as ART)")
    print("| eps | cvaudit | cvaudit-fixed | ART |")
    print("|---:|---|---|---|")
    ids = torch.arange(args.n, dtype=torch.int64)
    for eps in (1 / 255, 2 / 255, 4 / 255, 8 / 255):
        cells = []
        for random_start in (True, False):
            attack = DetectionPGD(epsilons=[eps], steps=args.steps, random_start=random_start)
            t0 = time.perf_counter()
            adv = attack.attack_boxes(
                attack_target(model), images, boxes, labels, severity=eps, sample_ids=ids, seed=0
            ).images
            cells.append((*measure(model, adv, boxes, labels, truths, categories, attack), time.perf_counter() - t0))
        estimator = art_estimator(model, attack)
        t0 = time.perf_counter()
        adv = art_pgd(estimator, images, boxes, labels, eps=eps, steps=args.steps, seed=0).float()
        seconds = time.perf_counter() - t0
        model.eval()
        cells.append((*measure(model, adv, boxes, labels, truths, categories, attack), seconds))
        text = " | ".join(f"{m:.3f} / {r:.3f} / {lo:.3f} / {t:.1f}" for m, r, lo, t in cells)
        print(f"| {eps * 255:.0f}/255 | {text} |")


if __name__ == "__main__":
    main()
