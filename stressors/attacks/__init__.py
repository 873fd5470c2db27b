"""Adversarial attacks (model-aware stressors) built on foolbox 3.

Import them from :mod:`stressors.adversarial` (the names the entry points use).
"""

from stressors.attacks.common import Attack, AttackResult
from stressors.attacks.gradient import FGSM, PGD, PGDL2, DeepFool
from stressors.attacks.hopskipjump import HopSkipJump
from stressors.attacks.square import Square, SquareL2

__all__ = ["FGSM", "PGD", "PGDL2", "Attack", "AttackResult", "DeepFool", "HopSkipJump", "Square", "SquareL2"]
