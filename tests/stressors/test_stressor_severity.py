"""Severity means more damage, and means the same thing at every image size."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import stressors
from stressors.base import sample_keys
from stressors.occlusion import COVERAGE

IDS = [f"s{i}" for i in range(8)]


def photo_like(n: int = 8, size: int = 48) -> torch.Tensor:
    """Smooth blobs plus isotropic fine texture (not white noise, which any blur destroys at once)."""
    g = torch.Generator().manual_seed(0)
    coarse = torch.rand(n, 3, 6, 6, generator=g)
    fine = torch.rand(n, 1, size // 4, size // 4, generator=g)
    x = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
    t = F.interpolate(fine, size=(size, size), mode="bilinear", align_corners=False)
    return (0.6 * x + 0.4 * t).clamp(0, 1)


def damage(name: str, options: dict, x: torch.Tensor) -> list[float]:
    s = stressors.get(name, **options)
    out = []
    for severity in s.severities:
        y = s.apply(x, s.sample_params(sample_keys(IDS[: len(x)]), severity, seed=0))
        out.append(float((y - x).abs().mean()))
    return out


def test_night_is_darker_and_noisier_with_severity():
    x = torch.full((4, 3, 32, 32), 0.5)
    s = stressors.get("night")
    means, stds = [], []
    for severity in s.severities:
        y = s.apply(x, s.sample_params(sample_keys(IDS[:4]), severity, seed=0))
        means.append(float(y.mean()))
        # Noise relative to the signal level (the camera's SNR falls with the light).
        stds.append(float(y[..., 4:-4, 4:-4].std(dim=(-2, -1)).mean()) / means[-1])
    assert all(b < a for a, b in zip(means, means[1:])), means
    assert all(b > a for a, b in zip(stds, stds[1:])), stds


def test_night_casts_toward_sodium_orange():
    x = torch.full((1, 3, 32, 32), 0.6)
    s = stressors.get("night")
    y = s.apply(x, s.sample_params(sample_keys(["a"]), 3, seed=0)).mean(dim=(-2, -1))[0]
    assert y[0] > y[1] > y[2]


def test_glare_source_is_brightest_and_contrast_falls():
    x = photo_like(4)
    s = stressors.get("glare", ghosts=False)
    p = s.sample_params(sample_keys(IDS[:4]), 5, seed=0)
    y = s.apply(x, p)
    h, w = x.shape[-2:]
    for i in range(4):
        row = min(max(int(float(p["source_y"][i]) * h), 0), h - 1)
        col = min(int(float(p["source_x"][i]) * w), w - 1)
        if float(p["source_y"][i]) >= 0:
            assert y[i, :, row, col].min() > 0.95  # the source saturates
    assert y.std() < x.std()  # veiling glare lowers contrast


@pytest.mark.parametrize("fill", ["black", "noise", "mean"])
def test_occlusion_hides_the_stated_fraction(fill):
    x = torch.rand(8, 3, 60, 90) * 0.5 + 0.25
    s = stressors.get("occlusion", fill=fill)
    for severity, coverage in zip(s.severities, COVERAGE):
        p = s.sample_params(sample_keys(IDS), severity, seed=0)
        from stressors.occlusion import occluder_mask

        mask = occluder_mask(p, 60, 90, "cpu")
        assert torch.allclose(mask.float().mean(dim=(1, 2, 3)), torch.full((8,), coverage), atol=0.015)
        y = s.apply(x, p)
        assert torch.equal(y[~mask.expand_as(y)], x[~mask.expand_as(x)])
        if fill == "black":
            assert (y[mask.expand_as(y)] == 0).all()
    assert p["ellipse"].any() and (~p["ellipse"]).any()  # both shapes are drawn


@pytest.mark.parametrize("kind", ["defocus", "gaussian", "motion"])
def test_blur_means_the_same_at_every_size(kind):
    """A blurred then downscaled image equals a downscaled then blurred one (kernel scales with size)."""
    s = stressors.get("blur", kind=kind)
    big = photo_like(2, 256)
    small = F.avg_pool2d(big, 4)
    for severity in (2, 5):
        p = s.sample_params(sample_keys(IDS[:2]), severity, seed=0)
        a = F.avg_pool2d(s.apply(big, p), 4)
        b = s.apply(small, p)
        assert float((a - b).abs().mean()) < 0.25 * float((b - small).abs().mean()), (kind, severity)


def test_imagenet_c_blur_scales_with_reference_size():
    s = stressors.get("defocus_blur")
    fixed = stressors.get("defocus_blur", reference_size=None)
    x = photo_like(1, 112)
    p = s.sample_params(sample_keys(["a"]), 3, seed=0)
    # At 112 px the scaled radius is half the table's: less damage than the verbatim table.
    assert float((s.apply(x, p) - x).abs().mean()) < float((fixed.apply(x, p) - x).abs().mean())


def test_filters_fft_matches_direct_correlation():
    from stressors.filters import fft_filter

    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 20, 27, generator=g)
    k = torch.rand(2, 5, 7, generator=g, dtype=torch.float64)
    y = fft_filter(x, k)
    for i in range(2):
        xp = F.pad(x[i : i + 1], (3, 3, 2, 2), mode="reflect")
        ref = F.conv2d(xp, k[i].float().view(1, 1, 5, 7).repeat(3, 1, 1, 1), groups=3)  # conv2d correlates
        assert torch.allclose(y[i : i + 1], ref, atol=1e-5)


def test_line_kernel_has_the_requested_length():
    from stressors.filters import line_kernels

    k = line_kernels(10.0, torch.tensor([0.0, 90.0, 30.0]))
    assert torch.allclose(k.sum(dim=(1, 2)), torch.ones(3, dtype=torch.float64))
    horizontal = (k[0] > 1e-6).nonzero()
    assert horizontal[:, 1].max() - horizontal[:, 1].min() in (10, 11)
    assert math.isclose(float(k[1].sum(dim=1).max()), float(k[0].sum(dim=0).max()), rel_tol=1e-6)


def test_imagenet_c_gaussian_blur_means_the_same_at_every_size():
    """Its sigma scales with min(H, W) / 224: blurred then downscaled equals downscaled then blurred."""
    s = stressors.get("gaussian_blur")
    big = photo_like(2, 256)
    small = F.avg_pool2d(big, 4)
    for severity in (2, 5):
        p = s.sample_params(sample_keys(IDS[:2]), severity, seed=0)
        a = F.avg_pool2d(s.apply(big, p), 4)
        b = s.apply(small, p)
        assert float((a - b).abs().mean()) < 0.25 * float((b - small).abs().mean()), severity


def test_imagenet_c_pixelate_keeps_the_same_share_of_the_resolution_at_every_size():
    s = stressors.get("pixelate")
    for size in (40, 224, 500):
        x = photo_like(1, size)
        y = s.apply(x, s.sample_params(sample_keys(IDS[:1]), 5, seed=0))
        # factor 0.25: int(size / 4) distinct columns survive (at most)
        assert len(torch.unique(y[0, 0, size // 2])) <= int(size * 0.25), size
