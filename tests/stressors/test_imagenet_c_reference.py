"""The ImageNet-C corruptions against hand-written numpy/OpenCV references of the published code.

The references transcribe ``imagecorruptions`` 1.1.2 (``corruptions.py``):
``disk`` + ``cv2.filter2D`` for defocus, ``_motion_blur`` (shifted copies
with half-Gaussian weights) for motion blur, the mean formula for contrast
and OpenCV's HSV round trip for brightness.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

import stressors
from stressors.base import Params, sample_keys
from stressors.imagenet_c import DEFOCUS_RADIUS_ALIAS, GAUSSIAN_NOISE_SIGMA, MOTION_RADIUS_SIGMA


def photo(size: int = 48) -> np.ndarray:
    rng = np.random.default_rng(0)
    coarse = rng.random((6, 6, 3)).astype(np.float32)
    x = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    return np.clip(x + 0.2 * rng.random((size, size, 3)), 0, 1).astype(np.float32)


def run(name: str, x: np.ndarray, severity: int, **options) -> np.ndarray:
    s = stressors.get(name, **options)
    t = torch.from_numpy(x).permute(2, 0, 1)[None]
    return s.apply(t, Params(severity=severity, seeds=(0,)))[0].permute(1, 2, 0).numpy()


def reference_disk(radius, alias_blur):
    if radius <= 8:
        grid, ksize = np.arange(-8, 8 + 1), (3, 3)
    else:
        grid, ksize = np.arange(-radius, radius + 1), (5, 5)
    xx, yy = np.meshgrid(grid, grid)
    disk = np.array((xx**2 + yy**2) <= radius**2, dtype=np.float32)
    disk /= np.sum(disk)
    return cv2.GaussianBlur(disk, ksize=ksize, sigmaX=alias_blur)


def reference_motion_blur(x, radius, sigma, angle):
    width = radius * 2 + 1
    k = np.exp(-(np.arange(width) ** 2) / (2 * sigma**2))
    k /= k.sum()
    point = (width * np.sin(np.deg2rad(angle)), width * np.cos(np.deg2rad(angle)))
    hypot = math.hypot(*point)
    out = np.zeros_like(x)
    h, w = x.shape[:2]
    for i in range(width):
        dy = -math.ceil(((i * point[0]) / hypot) - 0.5)
        dx = -math.ceil(((i * point[1]) / hypot) - 0.5)
        if abs(dy) >= h or abs(dx) >= w:
            break
        rows = np.clip(np.arange(h) - dy, 0, h - 1)  # shift() with edge replication
        cols = np.clip(np.arange(w) - dx, 0, w - 1)
        out += k[i] * x[rows][:, cols]
    return out


@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_defocus_blur_matches_imagenet_c_at_224(severity):
    x = photo(224)
    ref = np.clip(cv2.filter2D(x, -1, reference_disk(*DEFOCUS_RADIUS_ALIAS[severity - 1])), 0, 1)
    assert np.abs(run("defocus_blur", x, severity) - ref).max() < 1e-5


@pytest.mark.parametrize("severity", [1, 5])
def test_defocus_blur_verbatim_tables_at_any_size(severity):
    x = photo(40)
    ref = np.clip(cv2.filter2D(x, -1, reference_disk(*DEFOCUS_RADIUS_ALIAS[severity - 1])), 0, 1)
    assert np.abs(run("defocus_blur", x, severity, reference_size=None) - ref).max() < 1e-5


@pytest.mark.parametrize("severity", [1, 3, 5])
@pytest.mark.parametrize("angle", [-45.0, -10.0, 0.0, 30.0])
def test_motion_blur_matches_imagecorruptions(severity, angle):
    x = photo(60)
    radius, sigma = MOTION_RADIUS_SIGMA[severity - 1]
    ref = np.clip(reference_motion_blur(x, radius, sigma, angle), 0, 1)
    s = stressors.get("motion_blur", reference_size=None)
    t = torch.from_numpy(x).permute(2, 0, 1)[None]
    params = Params(severity=severity, values={"angle_deg": torch.tensor([angle], dtype=torch.float64)}, seeds=(0,))
    out = s.apply(t, params)[0].permute(1, 2, 0).numpy()
    assert np.abs(out - ref).max() < 1e-5


def test_motion_blur_angles_are_uniform_in_plus_minus_45():
    s = stressors.get("motion_blur")
    angles = s.sample_params(sample_keys([str(i) for i in range(400)]), 3, seed=0)["angle_deg"]
    assert angles.min() >= -45 and angles.max() <= 45
    assert abs(float(angles.mean())) < 5 and float(angles.std()) == pytest.approx(90 / math.sqrt(12), rel=0.1)


@pytest.mark.parametrize("severity", [1, 3, 5])
def test_contrast_matches_imagenet_c(severity):
    x = photo()
    c = [0.4, 0.3, 0.2, 0.1, 0.05][severity - 1]
    means = x.mean(axis=(0, 1), keepdims=True)
    ref = np.clip((x - means) * c + means, 0, 1)
    assert np.abs(run("contrast", x, severity) - ref).max() < 1e-6


@pytest.mark.parametrize("severity", [1, 3, 5])
def test_brightness_matches_the_hsv_round_trip(severity):
    x = photo()
    x[:4, :4] = 0  # black pixels become grey
    c = [0.1, 0.2, 0.3, 0.4, 0.5][severity - 1]
    hsv = cv2.cvtColor(x, cv2.COLOR_RGB2HSV)
    hsv[:, :, 2] = np.clip(hsv[:, :, 2] + c, 0, 1)
    ref = np.clip(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB), 0, 1)
    assert np.abs(run("brightness", x, severity) - ref).max() < 1e-5


@pytest.mark.parametrize("severity", [1, 5])
def test_gaussian_noise_has_the_published_sigma(severity):
    x = np.full((64, 64, 3), 0.5, dtype=np.float32)
    noise = run("gaussian_noise", x, severity) - 0.5
    sigma = GAUSSIAN_NOISE_SIGMA[severity - 1]
    # The published code clips to [0, 1] after adding the noise; so does the reference.
    reference = np.clip(0.5 + np.random.default_rng(0).normal(scale=sigma, size=x.shape), 0, 1) - 0.5
    assert abs(float(noise.mean())) < 0.01
    assert float(noise.std()) == pytest.approx(float(reference.std()), rel=0.05)
