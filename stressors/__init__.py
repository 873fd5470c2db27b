"""Stressors: night, glare, blur, occlusion, ImageNet-C corruptions and adversarial attacks.

Public surface: :func:`available`, :func:`get`, and the contract in :mod:`stressors.base`.
"""

from stressors.base import ModelAwareStressor, Params, Stressor, StressorError
from stressors.registry import available, factory, get

__all__ = ["ModelAwareStressor", "Params", "Stressor", "StressorError", "available", "factory", "get"]
