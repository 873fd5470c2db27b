"""glass_blur, zoom_blur and elastic_transform against imagecorruptions 1.1.2 itself, fed the same random draws.

The reference functions are called on the same 8-bit image (a PIL image, as
``imagecorruptions.corrupt`` passes it) and their float output (0..255, before
``corrupt``'s ``np.uint8`` truncation) is compared with the stressor's. Random draws
are injected by replacing ``np.random.randint`` / ``np.random.uniform`` in the
reference's module with functions that return this package's per-sample draws in
the order the reference asks for them.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import stressors
from stressors.base import Params, sample_keys
from stressors.imagenet_c_warp import (
    GLASS_SIGMA_DELTA_ITERATIONS,
    elastic_fields,
    glass_draws,
    glass_source_index,
)

ic = pytest.importorskip("imagecorruptions.corruptions")


@pytest.fixture(autouse=True)
def reference_shims(monkeypatch):
    """imagecorruptions 1.1.2 predates numpy 2 and scikit-image 0.19+: shim it here, not in the product.

    ``skimage.filters.gaussian(..., multichannel=True)`` is now ``channel_axis=-1``, and
    ``np.float_`` is gone (fog's plasma fractal uses it).
    """
    original = ic.gaussian

    def gaussian(image, *args, multichannel=None, **kwargs):
        if multichannel:
            kwargs["channel_axis"] = -1
        return original(image, *args, **kwargs)

    monkeypatch.setattr(ic, "gaussian", gaussian)
    monkeypatch.setattr(np, "float_", np.float64, raising=False)


def photo(size: int = 224, seed: int = 0) -> np.ndarray:
    """An 8-bit RGB photo-like image: smooth colour blobs plus fine texture."""
    rng = np.random.default_rng(seed)
    coarse = torch.from_numpy(rng.random((1, 3, 7, 7))).float()
    smooth = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)[0]
    x = 0.8 * smooth.permute(1, 2, 0).numpy() + 0.2 * rng.random((size, size, 3))
    return np.clip(np.round(x * 255), 0, 255).astype(np.uint8)


def ours(name: str, x: np.ndarray, severity: float, seed: int, **options) -> np.ndarray:
    s = stressors.get(name, **options)
    t = torch.from_numpy(x).permute(2, 0, 1)[None].float() / 255
    out = s.apply(t, Params(severity=severity, seeds=(seed,)))
    return out[0].permute(1, 2, 0).double().numpy() * 255


def feed(monkeypatch, name: str, values):
    """Replace ``np.random.<name>`` in the reference module by a function returning ``values`` in order."""
    it = iter(values)
    monkeypatch.setattr(ic.np.random, name, lambda *a, **k: next(it))


@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_zoom_blur_equals_the_reference(severity):
    x = photo()
    ref = ic.zoom_blur(Image.fromarray(x), severity)
    assert np.abs(ours("zoom_blur", x, severity, 0) - ref).max() <= 1.0  # 1/255


@pytest.mark.parametrize("severity", [1, 3, 5])
def test_zoom_blur_at_another_size_equals_the_reference(severity):
    x = photo(70)[:, :61]
    ref = ic.zoom_blur(Image.fromarray(np.ascontiguousarray(x)), severity)
    assert np.abs(ours("zoom_blur", x, severity, 0) - ref).max() <= 1.0


@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_glass_blur_equals_the_reference_given_the_same_draws(severity, monkeypatch):
    x = photo(64)
    seed = 11 + severity
    _, delta, passes = GLASS_SIGMA_DELTA_ITERATIONS[severity - 1]
    draws = glass_draws(seed, 64, 64, delta, passes)
    feed(monkeypatch, "randint", iter(draws.reshape(-1, 2)))
    ref = ic.glass_blur(Image.fromarray(x), severity)
    got = ours("glass_blur", x, severity, seed, reference_size=None)
    assert np.abs(got - ref).max() <= 1.0


def test_glass_shuffle_is_the_sequential_loop():
    """The vectorised index equals the reference's loop run on pixel indices, on a non-square image."""
    h, w, delta, passes = 23, 17, 3, 3
    draws = glass_draws(5, h, w, delta, passes)
    index = np.arange(h * w).reshape(h, w, 1).repeat(3, axis=2)  # 3-D, as the reference's image: views
    it = iter(draws.reshape(-1, 2))
    for _ in range(passes):
        for r in range(h - delta, delta, -1):
            for c in range(w - delta, delta, -1):
                dx, dy = next(it)
                index[r, c], index[r + dy, c + dx] = index[r + dy, c + dx], index[r, c]
    got = glass_source_index(torch.from_numpy(draws)[None], h, w, delta)[0].reshape(h, w).numpy()
    assert np.array_equal(got, index[..., 0])
    assert not np.array_equal(got, np.arange(h * w).reshape(h, w))


def test_glass_draws_are_the_references_distribution():
    d = glass_draws(3, 224, 224, 4, 2)
    assert d.min() == -4 and d.max() == 3  # np.random.randint(-4, 4): high exclusive
    counts = np.bincount((d + 4).ravel(), minlength=8) / d.size
    assert np.abs(counts - 1 / 8).max() < 0.005


@pytest.mark.parametrize("severity", [1, 3, 5])
def test_elastic_transform_equals_the_reference_given_the_same_fields(severity, monkeypatch):
    x = photo()
    seed = 7 + severity
    fields = elastic_fields(seed, 224, 224)
    m = 224 * 0.005
    feed(monkeypatch, "uniform", [f * (2 * m) - m for f in fields])
    ref = ic.elastic_transform(Image.fromarray(x), severity)
    assert np.abs(ours("elastic_transform", x, severity, seed) - ref).max() <= 1.0


def test_elastic_transform_verbatim_at_another_size(monkeypatch):
    x = np.ascontiguousarray(photo(96)[:, :80])
    fields = elastic_fields(3, 96, 80)
    m = 96 * 0.005
    feed(monkeypatch, "uniform", [f * (2 * m) - m for f in fields])
    ref = ic.elastic_transform(Image.fromarray(x), 4)
    assert np.abs(ours("elastic_transform", x, 4, 3, reference_size=None) - ref).max() <= 1.0


def test_elastic_fields_are_uniform_and_independent():
    f = elastic_fields(1, 128, 128)
    assert f.min() >= 0 and f.max() < 1
    assert abs(f.mean() - 0.5) < 0.01 and abs(f.var() - 1 / 12) < 0.002
    assert abs(np.corrcoef(f[0].ravel(), f[1].ravel())[0, 1]) < 0.02


def test_elastic_displacement_scales_with_the_image():
    """At twice the size the displacement in pixels doubles (reference_size); verbatim it stays put."""
    s = stressors.get("elastic_transform")
    verbatim = stressors.get("elastic_transform", reference_size=None)
    ids = sample_keys([f"e{i}" for i in range(4)])

    def spread(stressor, size):
        x = torch.zeros(4, 3, size, size)
        dx, dy = stressor.displacement(x, stressor.sample_params(ids, 5, seed=0))
        return float(torch.cat([dx, dy]).std())

    assert spread(s, 448) / spread(s, 224) == pytest.approx(2.0, rel=0.1)
    assert spread(verbatim, 448) / spread(verbatim, 224) == pytest.approx(1.0, rel=0.1)


def test_elastic_perturbation_moments_match_the_reference_over_many_draws():
    """The reference with its own global RNG and the stressor with its keyed draws, over 8 photos."""
    images = [photo(224, seed=i) for i in range(8)]
    np.random.seed(0)
    ref = np.stack([ic.elastic_transform(Image.fromarray(x), 5) for x in images]) / 255
    s = stressors.get("elastic_transform")
    t = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255
    out = s.apply(t, s.sample_params(sample_keys([f"m{i}" for i in range(8)]), 5, seed=0))
    clean = np.stack(images) / 255
    d_ref, d_ours = ref - clean, out.permute(0, 2, 3, 1).double().numpy() - clean
    assert abs(d_ours.mean() - d_ref.mean()) < 0.05 * d_ref.std()
    assert d_ours.std() == pytest.approx(d_ref.std(), rel=0.05)
