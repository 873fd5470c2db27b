"""Bad input: dtype, range, shape, severity, sample ids, params mismatch — named errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import stressors
from stressors.base import StressorError, sample_keys

NAMES = [
    "night",
    "glare",
    "blur",
    "occlusion",
    "gaussian_noise",
    "defocus_blur",
    "motion_blur",
    "contrast",
    "brightness",
    "shot_noise",
    "impulse_noise",
    "speckle_noise",
    "gaussian_blur",
    "saturate",
    "pixelate",
    "jpeg_compression",
    "rotation",
    "translation",
    "zoom",
    "perspective",
]


@pytest.fixture(params=NAMES)
def stressor(request):
    return stressors.get(request.param)


def params(s, n=2, severity=1):
    return s.sample_params(sample_keys([f"id{i}" for i in range(n)]), severity, seed=0)


def test_integer_images_are_rejected(stressor):
    x = torch.randint(0, 255, (2, 3, 8, 8), dtype=torch.uint8)
    with pytest.raises(StressorError, match=rf"{stressor.name}: .*float.*uint8"):
        stressor.apply(x, params(stressor))


def test_out_of_range_images_are_rejected(stressor):
    with pytest.raises(StressorError, match=rf"{stressor.name}: .*\[0, 1\]"):
        stressor.apply(torch.full((2, 3, 8, 8), 255.0), params(stressor))
    with pytest.raises(StressorError, match=rf"{stressor.name}: .*\[0, 1\]"):
        stressor.apply(torch.full((2, 3, 8, 8), -0.5), params(stressor))


def test_nan_images_are_rejected(stressor):
    x = torch.rand(2, 3, 8, 8)
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(StressorError, match="NaN"):
        stressor.apply(x, params(stressor))


@pytest.mark.parametrize("shape", [(3, 8, 8), (8, 8), (1, 2, 3, 8, 8)])
def test_wrong_shape_is_rejected(stressor, shape):
    with pytest.raises(StressorError, match=rf"{stressor.name}: .*\(N, C, H, W\)"):
        stressor.apply(torch.rand(shape), params(stressor))


def test_non_tensor_is_rejected(stressor):
    with pytest.raises(StressorError, match=rf"{stressor.name}: .*torch.Tensor"):
        stressor.apply(np.zeros((2, 3, 8, 8), dtype=np.float32), params(stressor))


@pytest.mark.parametrize("severity", [0, 6, 2.5, -1, True])
def test_severity_out_of_range(stressor, severity):
    with pytest.raises(StressorError, match=rf"{stressor.name}: severity"):
        stressor.sample_params(sample_keys(["a"]), severity, seed=0)


def test_severity_outside_the_configured_subset():
    s = stressors.get("blur", severities=[1, 3])
    with pytest.raises(StressorError, match="blur: severity 2"):
        s.sample_params(sample_keys(["a"]), 2, seed=0)


def test_params_for_another_batch_are_rejected(stressor):
    with pytest.raises(StressorError, match=rf"{stressor.name}: params were drawn for 3 samples"):
        stressor.apply(torch.rand(2, 3, 8, 8), params(stressor, n=3))


@pytest.mark.parametrize("ids", [torch.tensor([[1, 2]]), torch.tensor([0.5, 1.5]), ["a", "b"]])
def test_bad_sample_ids(stressor, ids):
    with pytest.raises(StressorError, match=rf"{stressor.name}: sample_ids"):
        stressor.sample_params(ids, 1, seed=0)
