"""cvaudit's vanishing PGD against ART's ProjectedGradientDescent on the same detector and objective.

ART's object-detection PGD has no random start, so cvaudit runs with ``random_start: false``; the
algorithms are then the same (sign step of 2.5·ε/steps, projection to the ε-ball and [0, 1]).
The wrapper and the torchvision version stub are in benchmarks/bench_detection_attacks.py (its
docstring says why the stub is needed).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

pytest.importorskip("art")

ROOT = Path(__file__).resolve().parents[4]


def _bench():
    spec = importlib.util.spec_from_file_location(
        "bench_detection_attacks", ROOT / "benchmarks" / "bench_detection_attacks.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_one_step_equals_art_and_more_steps_reach_at_least_arts_objective():
    bench = _bench()
    from audit.evaluation.detection.attack_target import attack_target
    from stressors.attacks.detection import DetectionPGD

    torch.set_num_threads(1)
    model, images, boxes, labels, truths, categories = bench.demo_setup(6)
    ids = torch.arange(6, dtype=torch.int64)
    eps = 2 / 255
    one = DetectionPGD(epsilons=[eps], steps=1, random_start=False)
    ours = one.attack_boxes(attack_target(model), images, boxes, labels, severity=eps, sample_ids=ids, seed=0)
    theirs = bench.art_pgd(bench.art_estimator(model, one), images, boxes, labels, eps=eps, steps=1, seed=0).float()
    model.eval()
    improved = ours.loss_final < ours.loss_clean  # there cvaudit returns the step's image, as ART does
    assert int(improved.sum()) >= 4
    assert torch.allclose(ours.images[improved], theirs[improved], atol=1e-6)
    assert torch.equal(ours.images[~improved], images[~improved])  # elsewhere the clean image was better
    five = DetectionPGD(epsilons=[eps], steps=5, random_start=False)
    ours5 = five.attack_boxes(attack_target(model), images, boxes, labels, severity=eps, sample_ids=ids, seed=0)
    theirs5 = bench.art_pgd(bench.art_estimator(model, five), images, boxes, labels, eps=eps, steps=5, seed=0).float()
    model.eval()
    _, _, art_loss = bench.measure(model, theirs5, boxes, labels, truths, categories, five)
    _, _, our_loss = bench.measure(model, ours5.images, boxes, labels, truths, categories, five)
    assert our_loss <= art_loss + 1e-5
    assert our_loss < 0.6 * float(ours5.loss_clean.mean())
