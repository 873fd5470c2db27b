"""Detection attacks in the pass: refusals before any image is read, one attacked batch in the input frame,
and the curves from the pass's numbers."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from attack_nets import ANCHORS, GAIN, SIZE, LinearBoxes, LinearYolo
from test_detection_attacks import scene, wrap

from audit.contract.errors import AuditError
from audit.evaluation.conditions import Condition
from audit.evaluation.detection.attack_checks import MONOTONE, STRONGER_THAN_NOISE, ZERO_EPSILON
from audit.evaluation.detection.attack_pass import attack_batch, attack_curves, check_attacks
from audit.evaluation.detection.coco_metrics import ImageDetections, ImageTruth
from audit.evaluation.detection.letterbox import apply_resize, plan_resize
from stressors.adversarial import PGD, DetectionPGD, DetectionPGDL2


def conds(attack, label="detection_pgd"):
    return [Condition("clean")] + [Condition(f"{label}@{e:g}", attack, e, label) for e in attack.severities]


def test_refusals_are_one_line_naming_the_config_and_condition():
    with pytest.raises(AuditError) as err:
        check_attacks(conds(PGD(epsilons=[0.0]), "pgd"), wrap(LinearYolo()), source="config.yaml")
    assert str(err.value).startswith("config.yaml: stressor condition 'pgd@0' is an attack on classifiers")
    with pytest.raises(AuditError) as err:
        check_attacks(conds(DetectionPGD(epsilons=[0.0], objective="mislabel")), wrap(LinearBoxes(), "boxes"))
    assert str(err.value).startswith(
        "config: stressor condition 'detection_pgd@0': detection_pgd: objective 'mislabel'"
    )
    model = wrap(LinearYolo())
    model.has_gradients = False
    with pytest.raises(AuditError, match=r"detection_pgd_l2@0.*the detector has no gradients") as err:
        check_attacks(conds(DetectionPGDL2(epsilons=[0.0]), "detection_pgd_l2"), model)
    assert "\n" not in str(err.value)
    targets = check_attacks(conds(DetectionPGD(epsilons=[0.0, 0.1])), wrap(LinearYolo()))
    assert set(targets) == {"detection_pgd@0", "detection_pgd@0.1"}


def test_attack_batch_maps_the_boxes_to_the_model_input():
    """Originals at twice the input size: the objects (anchors x 2 in original pixels) land on the anchors."""
    big = torch.nn.functional.interpolate(scene(), scale_factor=2, mode="nearest")[0]
    params = plan_resize([(2 * SIZE[0], 2 * SIZE[1])], input_size=SIZE, mode="resize")
    x = apply_resize([big], params)
    objs = [[SimpleNamespace(box=tuple(2 * v for v in ANCHORS[0]), category=0)]]
    eps = 0.05
    attack = DetectionPGD(epsilons=[eps])
    cond = Condition("detection_pgd@0.05", attack, eps, "detection_pgd")
    out = attack_batch(cond, check_attacks([cond], wrap(LinearYolo()))[cond.id], x, torch.tensor([7]),
                       objects=objs, params=params, seed=0)  # fmt: skip
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    assert out.loss_clean[0] == pytest.approx(sig(GAIN * 0.2), abs=1e-4)
    assert out.loss_final[0] == pytest.approx(sig(GAIN * (0.2 - eps)), abs=1e-4)
    assert float((out.noise - x).abs().amax()) <= eps + 1e-6 and not torch.equal(out.noise, x)


def test_curves_from_the_pass_numbers():
    attack = DetectionPGD(epsilons=[0.0, 0.01, 0.3])
    cs = conds(attack)
    truths = [ImageTruth(1, 32, 32, np.array([[4.0, 4, 8, 8]]), np.array([1]))]
    hit = [ImageDetections(1, np.array([[4.0, 4, 12, 12]]), np.array([0.9]), np.array([1]))]
    metrics = {"clean": (0.8, 1.0), "detection_pgd@0": (0.8, 1.0), "detection_pgd@0.01": (0.3, 0.5),
               "detection_pgd@0.3": (0.0, 0.0)}  # fmt: skip
    noise = {c.id: hit for c in cs[1:]}
    losses = {c.id: (np.array([1.0]), np.array([1.0 if c.severity == 0 else 0.2])) for c in cs[1:]}
    (entry,) = attack_curves(cs, metrics, noise, losses, truths=truths, categories={1: "a"},
                             score_threshold=0.5, iou_threshold=0.5)  # fmt: skip
    assert entry.attack == "detection_pgd" and entry.norm == "linf" and entry.objective == "vanishing"
    assert [p.epsilon for p in entry.points] == [0.0, 0.01, 0.3]
    assert [p.map_noise for p in entry.points] == [1.0, 1.0, 1.0]  # the noise detection matches its object
    assert {f.check: f.status for f in entry.checks} == {
        ZERO_EPSILON: "pass", MONOTONE: "pass", STRONGER_THAN_NOISE: "pass",
        "detection_attack.large_epsilon_zero_recall": "pass", "detection_attack.loss_decreases": "pass",
    }  # fmt: skip


@pytest.mark.slow
def test_a_classification_audit_naming_a_detection_attack_exits_2_with_one_line(tmp_path):
    import subprocess
    import sys

    from cvaudit_fixtures import ColourNet, make_dataset, save_model, write_config

    make_dataset(tmp_path)
    save_model(tmp_path / "model.pt", ColourNet())
    cfg = write_config(tmp_path, stressors="  - {name: detection_pgd, epsilons: [0]}\n")
    done = subprocess.run(
        [sys.executable, "-m", "audit", "run", str(cfg), "--out", str(tmp_path / "out"), "--quiet"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (  # refused before any image (and before the model is loaded)
        f"cvaudit: error: {cfg}: stressor condition 'detection_pgd@0': detection_pgd attacks object detectors "
        "(task: detection); a classification audit takes the classifier attacks (e.g. pgd, pgd_l2)"
    )
    assert not (tmp_path / "out").exists()
