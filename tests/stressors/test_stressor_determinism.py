"""Determinism, batch invariance and the output contract (shape, dtype, device, range)."""

from __future__ import annotations

import pytest
import torch

import stressors
from stressors.base import sample_keys

#: (registry name, options) for every built-in image stressor and each of its modes.
CASES = [
    ("night", {}),
    ("glare", {}),
    ("glare", {"ghosts": False}),
    ("blur", {"kind": "defocus"}),
    ("blur", {"kind": "motion"}),
    ("blur", {"kind": "gaussian"}),
    ("occlusion", {"fill": "black"}),
    ("occlusion", {"fill": "noise"}),
    ("occlusion", {"fill": "mean"}),
    ("gaussian_noise", {}),
    ("defocus_blur", {}),
    ("motion_blur", {}),
    ("contrast", {}),
    ("brightness", {}),
]
IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in o.items())}" if o else n for n, o in CASES]
#: Stressors whose output depends on per-sample random draws.
RANDOM = {"night", "glare", "occlusion", "gaussian_noise", "motion_blur"}


def images(n: int = 6, h: int = 24, w: int = 32) -> torch.Tensor:
    g = torch.Generator().manual_seed(1234)
    base = torch.rand(n, 3, h, w, generator=g)
    # Smooth structure plus texture, like a photo, so blurs and contrast changes have work to do.
    ramp = torch.linspace(0, 1, w).view(1, 1, 1, w)
    return (0.5 * base + 0.5 * ramp).clamp(0, 1)


IDS6 = [f"img{i}" for i in range(6)]


@pytest.mark.parametrize(("name", "options"), CASES, ids=IDS)
def test_same_seed_is_bit_identical(name, options):
    s = stressors.get(name, **options)
    x = images()
    for severity in s.severities:
        a = s.apply(x, s.sample_params(sample_keys(IDS6), severity, seed=7))
        b = s.apply(x, s.sample_params(sample_keys(IDS6), severity, seed=7))
        assert torch.equal(a, b), severity


@pytest.mark.parametrize(("name", "options"), CASES, ids=IDS)
def test_batch_size_and_order_do_not_change_a_sample(name, options):
    s = stressors.get(name, **options)
    x = images()
    full = s.apply(x, s.sample_params(sample_keys(IDS6), 3, seed=0))
    order = [4, 1, 5, 0]
    sub = s.apply(x[order], s.sample_params(sample_keys([IDS6[i] for i in order]), 3, seed=0))
    assert torch.equal(sub, full[order])
    single = s.apply(x[2:3], s.sample_params(sample_keys(IDS6[2:3]), 3, seed=0))
    assert torch.equal(single[0], full[2])


@pytest.mark.parametrize(("name", "options"), CASES, ids=IDS)
def test_output_keeps_shape_dtype_device_and_range(name, options):
    s = stressors.get(name, **options)
    x = images(3, 17, 23)  # odd sizes
    for severity in s.severities:
        out = s.apply(x, s.sample_params(sample_keys(IDS6[:3]), severity, seed=1))
        assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device
        assert torch.isfinite(out).all()
        assert out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize(("name", "options"), CASES, ids=IDS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_low_precision_inputs_are_computed_in_float32(name, options, dtype):
    s = stressors.get(name, **options)
    x = images(2)
    params = s.sample_params(sample_keys(IDS6[:2]), 4, seed=3)
    out = s.apply(x.to(dtype), params)
    assert out.dtype == dtype and out.shape == x.shape
    reference = s.apply(x.to(dtype).float(), params)
    assert torch.allclose(out.float(), reference, atol=1e-2 if dtype != torch.float64 else 1e-6)


@pytest.mark.parametrize(("name", "options"), CASES, ids=IDS)
def test_seed_changes_random_draws_only_for_random_stressors(name, options):
    s = stressors.get(name, **options)
    x = images(2)
    a = s.apply(x, s.sample_params(sample_keys(IDS6[:2]), 3, seed=0))
    b = s.apply(x, s.sample_params(sample_keys(IDS6[:2]), 3, seed=1))
    assert torch.equal(a, b) != (name in RANDOM or options.get("kind") == "motion")


@pytest.mark.parametrize(("name", "options"), CASES, ids=IDS)
def test_params_are_recordable(name, options):
    s = stressors.get(name, **options)
    params = s.sample_params(sample_keys(IDS6[:2]), 2, seed=0)
    record = params.record(1)
    assert record["severity"] == 2
    import json

    json.dumps(record)


def test_single_channel_images_work():
    x = images(2)[:, :1]
    for name, options in CASES:
        s = stressors.get(name, **options)
        out = s.apply(x, s.sample_params(sample_keys(IDS6[:2]), 3, seed=0))
        assert out.shape == x.shape, name


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.parametrize(("name", "options"), CASES, ids=IDS)
def test_gpu_output_stays_on_gpu_and_matches_cpu(name, options):
    s = stressors.get(name, **options)
    x = images()
    params = s.sample_params(sample_keys(IDS6), 3, seed=0)
    out = s.apply(x.cuda(), params)
    assert out.device.type == "cuda"
    assert torch.allclose(out.cpu(), s.apply(x, params), atol=1e-4)
