"""Adversarial attacks as model-aware stressors: fgsm, pgd, pgd_l2, deepfool, hopskipjump, square, square_l2,
apgd, apgd_l2, apgd_t, apgd_t_l2, autoattack, autoattack_l2 (:mod:`stressors.attacks.apgd`), fab_t, fab_t_l2
(:mod:`stressors.attacks.fab`); the cross-fitted physical attacks universal and patch
(:mod:`stressors.attacks.physical`); and the
attacks on object detectors, detection_pgd and detection_pgd_l2 (:mod:`stressors.attacks.detection`).

Each class has ``name``, ``severities`` (the epsilons, pixel units of [0, 1]),
``model_aware = True`` and
``perturb(model, images, labels, *, severity, sample_ids, seed) -> Tensor``.
``attack(...)`` takes the same arguments and returns an
:class:`~stressors.attacks.common.AttackResult` (images, fooled mask, failed
starts); ``perturb`` keeps it in ``last_result`` and HopSkipJump's samples
without a starting point are in ``last_failed_starts``.

Defaults and their sources are in :mod:`stressors.attacks.gradient` and
:mod:`stressors.attacks.hopskipjump`, :mod:`stressors.attacks.square`,
:mod:`stressors.attacks.apgd` and :mod:`stressors.attacks.fab`.
"""

from stressors.attacks import FGSM, PGD, PGDL2, Attack, AttackResult, DeepFool, HopSkipJump, Square, SquareL2
from stressors.attacks.apgd import APGD, APGDL2, APGDT, APGDTL2, AutoAttack, AutoAttackL2
from stressors.attacks.detection import DetectionPGD, DetectionPGDL2
from stressors.attacks.fab import FABT, FABTL2
from stressors.attacks.physical import AdversarialPatch, UniversalPerturbation

__all__ = [
    "APGD",
    "APGDL2",
    "APGDT",
    "APGDTL2",
    "FABT",
    "FABTL2",
    "FGSM",
    "PGD",
    "PGDL2",
    "AdversarialPatch",
    "Attack",
    "AttackResult",
    "AutoAttack",
    "AutoAttackL2",
    "DeepFool",
    "DetectionPGD",
    "DetectionPGDL2",
    "HopSkipJump",
    "Square",
    "SquareL2",
    "UniversalPerturbation",
]
