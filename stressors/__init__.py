"""Stressors: night, glare, blur, occlusion, ImageNet-C corruptions and adversarial attacks.

Public surface: :func:`available`, :func:`get`, :func:`factory`, :func:`broken`
(plugins that failed to load), :func:`sample_keys`, :func:`render_preview` and
the contract in :mod:`stressors.base`, and boxes through stressors
(:func:`stress_with_boxes`, :func:`box_support`, :mod:`stressors.boxes`). Callers outside ``stressors`` import
from here, never from a submodule (an import-linter contract in pyproject.toml).
"""

from stressors.base import ModelAwareStressor, Params, Stressor, StressorError, sample_keys
from stressors.boxes import BoxedBatch, box_support, check_boxes, check_min_visibility, stress_with_boxes
from stressors.preview import render_preview
from stressors.registry import available, broken, factory, get

__all__ = [
    "BoxedBatch",
    "ModelAwareStressor",
    "Params",
    "Stressor",
    "StressorError",
    "available",
    "box_support",
    "broken",
    "check_boxes",
    "check_min_visibility",
    "factory",
    "get",
    "render_preview",
    "sample_keys",
    "stress_with_boxes",
]
