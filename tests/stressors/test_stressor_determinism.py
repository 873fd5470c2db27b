"""Seeds and channels of the built-in image stressors (the contract itself: test_conformance.py)."""

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
    ("shot_noise", {}),
    ("impulse_noise", {}),
    ("speckle_noise", {}),
    ("gaussian_blur", {}),
    ("saturate", {}),
    ("pixelate", {}),
    ("jpeg_compression", {}),
    ("glass_blur", {}),
    ("zoom_blur", {}),
    ("elastic_transform", {}),
    ("snow", {}),
    ("frost", {}),
    ("fog", {}),
    ("spatter", {}),
]
IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in o.items())}" if o else n for n, o in CASES]
#: Stressors whose output depends on per-sample random draws.
RANDOM = {
    "night",
    "glare",
    "occlusion",
    "gaussian_noise",
    "motion_blur",
    "shot_noise",
    "impulse_noise",
    "speckle_noise",
    "glass_blur",
    "elastic_transform",
    "snow",
    "frost",
    "fog",
    "spatter",
}


def images(n: int = 6, h: int = 24, w: int = 32) -> torch.Tensor:
    g = torch.Generator().manual_seed(1234)
    base = torch.rand(n, 3, h, w, generator=g)
    # Smooth structure plus texture, like a photo, so blurs and contrast changes have work to do.
    ramp = torch.linspace(0, 1, w).view(1, 1, 1, w)
    return (0.5 * base + 0.5 * ramp).clamp(0, 1)


IDS6 = [f"img{i}" for i in range(6)]


@pytest.mark.parametrize(("name", "options"), CASES, ids=IDS)
def test_seed_changes_random_draws_only_for_random_stressors(name, options):
    s = stressors.get(name, **options)
    x = images(2)
    a = s.apply(x, s.sample_params(sample_keys(IDS6[:2]), 3, seed=0))
    b = s.apply(x, s.sample_params(sample_keys(IDS6[:2]), 3, seed=1))
    assert torch.equal(a, b) != (name in RANDOM or options.get("kind") == "motion")


def test_single_channel_images_work():
    x = images(2)[:, :1]
    for name, options in CASES:
        s = stressors.get(name, **options)
        out = s.apply(x, s.sample_params(sample_keys(IDS6[:2]), 3, seed=0))
        assert out.shape == x.shape, name


@pytest.mark.parametrize("name", ["gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "jpeg_compression"])
def test_per_sample_threads_do_not_change_the_result(name):
    """These run one sample per thread (up to torch's thread count): one thread gives the same bits."""
    s = stressors.get(name)
    x = images(6)
    p = s.sample_params(sample_keys(IDS6), 3, seed=0)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        two = s.apply(x, p)
        torch.set_num_threads(1)
        one = s.apply(x, p)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two)
