"""The ImageNet-C corruptions against hand-written numpy/OpenCV references of the published code.

The references transcribe ``imagecorruptions`` 1.1.2 (``corruptions.py``):
``disk`` + ``cv2.filter2D`` for defocus, ``_motion_blur`` (shifted copies
with half-Gaussian weights) for motion blur, the mean formula for contrast
and OpenCV's HSV round trip for brightness. The corruptions added later
(shot, impulse and speckle noise, gaussian blur, saturate, pixelate, JPEG)
are compared with ``imagecorruptions`` itself: its corruption functions, whose
float output (0..255) is compared before the ``corrupt()`` wrapper's
``np.uint8`` (which truncates: cvaudit returns floats and does not). The
random ones are compared in distribution over many draws.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

import stressors
from stressors.base import Params, sample_keys
from stressors.imagenet_c import (
    DEFOCUS_RADIUS_ALIAS,
    GAUSSIAN_NOISE_SIGMA,
    IMPULSE_NOISE_AMOUNT,
    MOTION_RADIUS_SIGMA,
    SHOT_NOISE_PHOTONS,
    SPECKLE_NOISE_SIGMA,
)


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


# ------------------------------------------------------- against imagecorruptions 1.1.2 itself


@pytest.fixture
def icc(monkeypatch):
    """``imagecorruptions.corruptions``, shimmed for today's scikit-image and seeded.

    imagecorruptions 1.1.2 calls ``skimage.filters.gaussian(..., multichannel=True)``, an
    argument that scikit-image removed in 0.19 (it is ``channel_axis=-1`` now): the wrapper
    maps it. Its impulse noise calls ``skimage.util.random_noise`` without an ``rng`` (a fresh
    unseeded generator each call): the test seeds it so that the comparison is reproducible.
    """
    corruptions = pytest.importorskip("imagecorruptions.corruptions")
    import skimage.util

    gaussian = corruptions.gaussian

    def shim(image, *args, multichannel=None, **kwargs):
        if multichannel:
            kwargs["channel_axis"] = -1
        return gaussian(image, *args, **kwargs)

    random_noise = skimage.util.random_noise
    rng = np.random.default_rng(7)
    monkeypatch.setattr(corruptions, "gaussian", shim)
    monkeypatch.setattr(skimage.util, "random_noise", lambda *a, **k: random_noise(*a, rng=rng, **k))
    np.random.seed(7)  # shot and speckle noise draw from numpy's global generator
    return corruptions


def photo_u8(size: int = 224, width: int | None = None) -> np.ndarray:
    """An 8-bit photo-like image (the reference's input type) with grey and black patches."""
    rng = np.random.default_rng(1)
    coarse = rng.random((6, 6, 3)).astype(np.float32)
    x = cv2.resize(coarse, (width or size, size), interpolation=cv2.INTER_CUBIC)
    x = np.clip(x + 0.2 * rng.random(x.shape), 0, 1)
    u8 = np.round(x * 255).astype(np.uint8)
    u8[:6, :6] = 128  # grey: saturate's hue-0 quirk
    u8[6:12, :6] = 0  # black
    u8[12:18, :6] = 255  # white
    return u8


def run_u8(name: str, u8: np.ndarray, severity: int, seeds=(0,)) -> np.ndarray:
    """The stressor on ``u8 / 255`` (one or several copies, one per seed), as (N, H, W, C) floats in [0, 1]."""
    s = stressors.get(name)
    t = torch.from_numpy(u8).permute(2, 0, 1)[None].float().div(255).repeat(len(seeds), 1, 1, 1)
    return s.apply(t, Params(severity=severity, seeds=tuple(seeds))).permute(0, 2, 3, 1).numpy()


def reference(icc, name: str, u8: np.ndarray, severity: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(getattr(icc, name)(Image.fromarray(u8), severity), dtype=np.float64) / 255


@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("name", ["gaussian_blur", "saturate", "pixelate", "jpeg_compression"])
def test_deterministic_corruptions_match_imagecorruptions_at_224(icc, name, severity):
    u8 = photo_u8(224)
    diff = np.abs(run_u8(name, u8, severity)[0] - reference(icc, name, u8, severity)).max()
    assert diff <= 1 / 255, f"{name} {severity}: max |diff| = {diff * 255:.3f}/255"
    if name in ("pixelate", "jpeg_compression"):
        assert diff < 1e-6  # Pillow's 8-bit path reproduced (pixelate) or called (JPEG): identical


@pytest.mark.parametrize("severity", [1, 5])
@pytest.mark.parametrize("name", ["pixelate", "jpeg_compression", "saturate"])
def test_size_free_corruptions_match_imagecorruptions_at_odd_sizes(icc, name, severity):
    u8 = photo_u8(45, width=67)
    diff = np.abs(run_u8(name, u8, severity)[0] - reference(icc, name, u8, severity)).max()
    assert diff < 1e-4 if name != "saturate" else diff < 1e-5, diff


def test_gaussian_blur_verbatim_sigma_at_another_size(icc):
    u8 = photo_u8(64)
    s = stressors.get("gaussian_blur", reference_size=None)
    t = torch.from_numpy(u8).permute(2, 0, 1)[None].float().div(255)
    out = s.apply(t, Params(severity=4, seeds=(0,)))[0].permute(1, 2, 0).numpy()
    assert np.abs(out - reference(icc, "gaussian_blur", u8, 4)).max() < 1e-5


def test_jpeg_of_a_grey_image_goes_through_rgb_as_the_reference(icc):
    from PIL import Image

    u8 = photo_u8(40)[..., 1]
    ref = np.asarray(icc.jpeg_compression(Image.fromarray(u8), 3), dtype=np.float64) / 255
    s = stressors.get("jpeg_compression")
    out = s.apply(torch.from_numpy(u8)[None, None].float().div(255), Params(severity=3, seeds=(0,)))[0, 0].numpy()
    assert np.abs(out - ref).max() < 1e-6


def test_saturate_levels_are_not_monotone_in_the_reference_either(icc):
    """Why saturate sets monotone_severity = False: the published table itself is not (level 2 > level 3)."""
    u8 = photo_u8(64)
    clean = u8 / 255
    ours = [float(np.abs(run_u8("saturate", u8, k)[0] - clean).mean()) for k in (1, 2, 3, 4, 5)]
    ref = [float(np.abs(reference(icc, "saturate", u8, k) - clean).mean()) for k in (1, 2, 3, 4, 5)]
    assert ours == pytest.approx(ref, abs=1e-5)
    assert ref[1] > ref[2]  # level 3 changes less than level 2


GREYS = np.array([0, 10, 40, 90, 128, 200, 250, 255], dtype=np.uint8)
#: Each grey level repeated over 64 x 48 x 3 channel values.
GREY_ROWS = np.repeat(np.repeat(GREYS[:, None, None], 64, axis=1), 48 * 3, axis=2).reshape(len(GREYS) * 64, 48, 3)


def draws(icc, name: str, severity: int, count: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """(ours, reference): ``count`` corrupted copies of GREY_ROWS each, as (count, rows, 48, 3) floats."""
    u8 = np.ascontiguousarray(GREY_ROWS)
    ours = run_u8(name, u8, severity, seeds=tuple(range(count)))
    ref = np.stack([reference(icc, name, u8, severity) for _ in range(count)])
    return ours, ref


def per_grey(a: np.ndarray) -> np.ndarray:
    """(count, rows, 48, 3) -> (grey level, values): every value drawn at that grey level."""
    return a.transpose(1, 0, 2, 3).reshape(len(GREYS), -1)


@pytest.mark.parametrize("severity", [1, 3, 5])
@pytest.mark.parametrize("name", ["shot_noise", "speckle_noise"])
def test_random_noise_has_the_reference_distribution(icc, name, severity):
    ours, ref = draws(icc, name, severity)
    a, b = per_grey(ours), per_grey(ref)  # 36 864 values per grey level each
    for level, x, y in zip(GREYS, a, b):
        dx, dy = x - level / 255, y - level / 255
        assert dx.mean() == pytest.approx(dy.mean(), abs=0.006), (level, "mean")
        assert dx.std() == pytest.approx(dy.std(), abs=0.006, rel=0.03), (level, "std")
        assert (x >= 1).mean() == pytest.approx((y >= 1).mean(), abs=0.01), (level, "clipped at 1")
        assert (x <= 0).mean() == pytest.approx((y <= 0).mean(), abs=0.01), (level, "clipped at 0")
    if name == "shot_noise":
        # The values are counts / c: the same histogram of counts (total variation distance).
        c = SHOT_NOISE_PHOTONS[severity - 1]
        for x, y in zip(a, b):
            hx = np.bincount(np.round(x * c).astype(int), minlength=c + 1)[: c + 1] / x.size
            hy = np.bincount(np.round(y * c).astype(int), minlength=c + 1)[: c + 1] / y.size
            assert 0.5 * np.abs(hx - hy).sum() < 0.02
        theory = np.sqrt(GREYS[4] / 255 / c)  # mid grey: std sqrt(x / c) where clipping is negligible (level 1)
        if severity == 1:
            assert a[4].std() == pytest.approx(theory, rel=0.03)
    else:
        sigma = SPECKLE_NOISE_SIGMA[severity - 1]
        if severity == 1:  # little clipping at 40/255: the std is x * sigma
            assert a[2].std() == pytest.approx(40 / 255 * sigma, rel=0.03)


@pytest.mark.parametrize("severity", [1, 3, 5])
def test_impulse_noise_has_the_reference_salt_and_pepper_shares(icc, severity):
    ours, ref = draws(icc, "impulse_noise", severity)
    amount = IMPULSE_NOISE_AMOUNT[severity - 1]
    a, b = per_grey(ours), per_grey(ref)
    # 5 binomial standard errors of the difference of two shares of 36 864 draws each.
    tol = 5 * math.sqrt(2 * (amount / 2) * (1 - amount / 2) / a.shape[1])
    for level, x, y in zip(GREYS[1:-1], a[1:-1], b[1:-1]):  # neither black nor white: salt and pepper are visible
        for share, what in (((x == 1).mean(), (y == 1).mean()), "salt"), (((x == 0).mean(), (y == 0).mean()), "pepper"):
            assert share[0] == pytest.approx(share[1], abs=tol), (level, what)
            assert share[0] == pytest.approx(amount / 2, abs=tol), (level, what)
        untouched = np.isclose(x, level / 255, atol=1e-6).mean()
        assert untouched == pytest.approx(np.isclose(y, level / 255, atol=1e-6).mean(), abs=2 * tol), level
    # Channels are hit independently (as scikit-image's per-value draws): not all three at once.
    hit = ~np.isclose(ours[:, 64:-64], GREY_ROWS[None, 64:-64] / 255, atol=1e-6).reshape(-1, 3)
    assert hit.all(axis=1).mean() == pytest.approx(amount**3, abs=0.003)
    assert hit.mean() == pytest.approx(amount, abs=tol)


@pytest.mark.parametrize(
    "name",
    [
        "brightness",
        "saturate",
        "contrast",
        "pixelate",
        "defocus_blur",
        "gaussian_blur",
        "motion_blur",
        "jpeg_compression",
    ],
)
def test_chunked_corruptions_do_not_depend_on_torch_threads_and_restore_them(name):
    """The CPU chunks run on torch.get_num_threads() Python threads with one torch thread each
    (stressors.imagenet_c._each_chunk): the output is the same bits at 1 and 3 threads, for a batch
    of several chunks, and the caller's thread count, and the one later threads start with, are restored."""
    import threading

    images = torch.rand(13, 3, 96, 80, generator=torch.Generator().manual_seed(7))
    stressor = stressors.get(name)
    params = stressor.sample_params(sample_keys([f"t{i}" for i in range(13)]), 3, seed=0)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = stressor.apply(images, params)
        torch.set_num_threads(3)
        three = stressor.apply(images, params)
        assert torch.get_num_threads() == 3
        seen: list[int] = []
        worker = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
        worker.start()
        worker.join()
        assert seen == [3]
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one, three)
