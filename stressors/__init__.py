"""Stressors: night, glare, blur, occlusion, ImageNet-C corruptions and adversarial attacks.

Public surface: :func:`available`, :func:`get`, :func:`factory`, :func:`broken`
(plugins that failed to load), :func:`sample_keys`, :func:`render_preview` and
the contract in :mod:`stressors.base`. Callers outside ``stressors`` import
from here, never from a submodule (an import-linter contract in pyproject.toml).
"""

from stressors.base import ModelAwareStressor, Params, Stressor, StressorError, sample_keys
from stressors.preview import render_preview
from stressors.registry import available, broken, factory, get

__all__ = [
    "ModelAwareStressor",
    "Params",
    "Stressor",
    "StressorError",
    "available",
    "broken",
    "factory",
    "get",
    "render_preview",
    "sample_keys",
]
