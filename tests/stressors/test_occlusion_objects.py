"""Occlusion ``target: objects`` (occluders per ground-truth box) and the pinned ``target: image`` output."""

from __future__ import annotations

import hashlib
import json
import math

import torch

import stressors
from stressors.base import noise_like, sample_keys
from stressors.occlusion import occluder_mask

PIN_IDS = sample_keys([f"pin-{i}" for i in range(5)])
#: SHA-256 of the image-mode outputs and parameters below, taken before ``target`` existed.
IMAGE_MODE_DIGEST = "895cd6fea00665e6eed4ab9ed705ba31556a3b3c3e957e9d2224d3b13eaa1d64"


def pattern(n: int = 5, h: int = 48, w: int = 48) -> torch.Tensor:
    """Images built with integer arithmetic only (the same bytes on every machine)."""
    i = torch.arange(n * 3 * h * w, dtype=torch.int64).view(n, 3, h, w)
    return ((i * 37 + (i // w) * 11) % 251).float() / 250


def _record(params, i):
    """A sample's record with floats rounded to 12 significant digits (robust to last-ULP libm differences)."""

    def r(v):
        if isinstance(v, float):
            return float(f"{v:.12g}")
        return [r(u) for u in v] if isinstance(v, list) else v

    return {k: r(v) for k, v in params.record(i).items()}


def image_mode_digest(**options) -> str:
    x = pattern()
    h = hashlib.sha256()
    for fill in ("black", "mean"):
        s = stressors.get("occlusion", fill=fill, **options)
        for severity in (1, 2.5, 3, 5):
            p = s.sample_params(PIN_IDS, severity, seed=7, fractional=True)
            h.update(s.apply(x, p).numpy().tobytes())
            h.update(json.dumps([_record(p, i) for i in range(5)]).encode())
    return h.hexdigest()


def test_image_mode_output_is_pinned():
    """``target: image`` (the default) gives the bytes it gave before objects mode was added."""
    assert image_mode_digest() == IMAGE_MODE_DIGEST


def test_image_mode_noise_fill_is_the_formula():
    """The noise fill is Phi(standard normal field) inside the occluder, the image elsewhere (any machine)."""
    x = pattern()
    s = stressors.get("occlusion", fill="noise")
    p = s.sample_params(PIN_IDS, 4, seed=7)
    mask = occluder_mask(p, 48, 48, "cpu")
    expected = torch.where(mask, 0.5 * (1 + torch.erf(noise_like(x, p.seeds) / math.sqrt(2))), x)
    assert torch.equal(s.apply(x, p), expected.clamp(0, 1))
