"""snow, frost, fog and spatter against imagecorruptions 1.1.2 itself, fed the same random draws.

The reference functions are called on the same 8-bit image (a PIL image, as
``imagecorruptions.corrupt`` passes it) and their float output (0..255, before
``corrupt``'s ``np.uint8`` truncation) is compared with the stressor's. Random draws
are injected by replacing ``np.random.normal`` / ``uniform`` / ``randint`` in the
reference's module with functions that return this package's per-sample draws in the
order the reference asks for them; the draws' own distributions are tested separately.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import stressors
from stressors.base import sample_keys
from stressors.imagenet_c_weather import (
    FROST_FILES,
    frost_texture_path,
    plasma_draw_count,
    plasma_draws,
    snow_field,
    spatter_field,
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


def stress(name: str, x: np.ndarray, severity: float, key: str, **options):
    """The stressor's output (0..255 float64, H x W x 3) and the params it drew."""
    s = stressors.get(name, **options)
    params = s.sample_params(sample_keys([key]), severity, seed=0, fractional=s.fractional_severities)
    t = torch.from_numpy(x).permute(2, 0, 1)[None].float() / 255
    return s.apply(t, params)[0].permute(1, 2, 0).double().numpy() * 255, params


def feed(monkeypatch, name: str, function):
    monkeypatch.setattr(ic.np.random, name, function)


@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_snow_equals_the_reference_given_the_same_draws(severity, monkeypatch):
    x = photo()
    got, params = stress("snow", x, severity, f"snow{severity}")
    field = snow_field(params.seeds[0], 224, 224)
    feed(monkeypatch, "normal", lambda size, loc, scale: loc + scale * field)
    feed(monkeypatch, "uniform", lambda lo, hi: float(params["angle_deg"][0]))
    ref = ic.snow(Image.fromarray(x), severity)
    assert np.abs(got - ref).max() <= 1.0  # 1/255


def test_snow_angle_is_uniform_between_minus_135_and_minus_45():
    s = stressors.get("snow")
    a = s.sample_params(sample_keys([str(i) for i in range(500)]), 2, seed=0)["angle_deg"]
    assert a.min() >= -135 and a.max() <= -45
    assert float(a.mean()) == pytest.approx(-90, abs=3) and float(a.std()) == pytest.approx(90 / math.sqrt(12), rel=0.1)


@pytest.mark.parametrize("draw", [snow_field, spatter_field])
def test_liquid_fields_are_standard_normal(draw):
    f = draw(4, 224, 224)
    assert abs(f.mean()) < 0.01 and f.std() == pytest.approx(1.0, abs=0.01)
    assert abs(float(((f - f.mean()) ** 3).mean())) < 0.03  # symmetric
    assert abs(np.corrcoef(f[:, :-1].ravel(), f[:, 1:].ravel())[0, 1]) < 0.01  # white


@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_frost_equals_the_reference_given_the_same_draws(severity, monkeypatch):
    x = photo()
    got, params = stress("frost", x, severity, f"frost{severity}")
    index = int(params["texture"][0])
    offsets = iter(params["crop_u"][0].tolist())

    def randint(low, high=None):
        """np.random.randint(5), then randint(0, rows) and randint(0, columns) for the crop."""
        return index if high is None else low + math.floor(next(offsets) * (high - low))

    feed(monkeypatch, "randint", randint)
    ref = ic.frost(Image.fromarray(x), severity)
    assert np.abs(got - ref).max() <= 1.0


def test_frost_textures_are_the_references_files():
    for name in FROST_FILES:
        ours = frost_texture_path(FROST_FILES.index(name)).read_bytes()
        theirs = (Path(ic.__file__).parent / "frost" / name).read_bytes()
        assert hashlib.sha256(ours).hexdigest() == hashlib.sha256(theirs).hexdigest(), name


def test_frost_draws_the_first_five_textures_uniformly():
    s = stressors.get("frost")
    p = s.sample_params(sample_keys([str(i) for i in range(2000)]), 3, seed=0)
    counts = torch.bincount(p["texture"], minlength=6).tolist()
    assert counts[5] == 0 and all(abs(c / 2000 - 0.2) < 0.03 for c in counts[:5]), counts
    assert float(p["crop_u"].min()) >= 0 and float(p["crop_u"].max()) < 1


@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_fog_equals_the_reference_given_the_same_draws(severity, monkeypatch):
    x = photo()
    got, params = stress("fog", x, severity, f"fog{severity}")
    draws = iter(plasma_draws(params.seeds[0], 256))

    def uniform(low, high, size):
        u = np.array([next(draws) for _ in range(int(np.prod(size)))]).reshape(size)
        return low + (high - low) * u

    feed(monkeypatch, "uniform", uniform)
    ref = ic.fog(Image.fromarray(x), severity)
    assert np.abs(got - ref).max() <= 1.0
    assert next(draws, None) is None  # every draw used, none missing
    assert plasma_draw_count(256) == 3 * sum(4**k for k in range(8))


def test_plasma_draws_are_unit_uniform():
    d = plasma_draws(2, 256)
    assert d.min() >= 0 and d.max() < 1 and abs(d.mean() - 0.5) < 0.005 and abs(d.var() - 1 / 12) < 0.002


@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_spatter_equals_the_reference_given_the_same_draws(severity, monkeypatch):
    x = photo()
    got, params = stress("spatter", x, severity, f"spatter{severity}")
    field = spatter_field(params.seeds[0], 224, 224)
    feed(monkeypatch, "normal", lambda size, loc, scale: loc + scale * field)
    ref = ic.spatter(Image.fromarray(x), severity)
    assert np.abs(got - ref).max() <= 1.0
    assert np.abs(got - x).max() > 10  # the drops are there


@pytest.mark.parametrize("name", ["fog", "frost"])
def test_fractional_severity_moves_continuously_to_the_next_level(name):
    """Within (2, 3] the draws are level 3's: 2.999 is level 3 up to rounding, 2.5's damage lies between."""
    x = photo(64)
    near, _ = stress(name, x, 2.999, "f")
    level, _ = stress(name, x, 3, "f")
    low, _ = stress(name, x, 2.001, "f")
    mid, _ = stress(name, x, 2.5, "f")
    assert np.abs(near - level).max() < 0.5
    assert np.abs(low - level).mean() > 2
    damage = [float(np.abs(y - x).mean()) for y in (low, mid, level)]
    assert damage[0] < damage[1] < damage[2], damage


@pytest.mark.parametrize(("name", "severity"), [("snow", 3), ("fog", 5), ("spatter", 2), ("spatter", 5)])
def test_perturbation_moments_match_the_reference_over_many_draws(name, severity):
    """The reference with its own global RNG and the stressor with its keyed draws, over 12 photos.

    Mean, standard deviation and mean absolute value of (stressed - clean) agree within 8 %
    of the reference's spread (at 224 px, measured: within 1-3 %).
    """
    images = [photo(224, seed=i) for i in range(12)]
    np.random.seed(severity)
    ref = np.stack([getattr(ic, name)(Image.fromarray(x), severity) for x in images]) / 255
    s = stressors.get(name)
    t = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255
    out = s.apply(t, s.sample_params(sample_keys([f"m{i}" for i in range(12)]), severity, seed=0))
    clean = np.stack(images) / 255
    d_ref, d_ours = ref - clean, out.permute(0, 2, 3, 1).double().numpy() - clean
    scale = d_ref.std()
    assert abs(d_ours.mean() - d_ref.mean()) < 0.08 * scale
    assert d_ours.std() == pytest.approx(d_ref.std(), rel=0.08)
    assert np.abs(d_ours).mean() == pytest.approx(np.abs(d_ref).mean(), rel=0.08)


def test_size_rules_keep_the_224_px_look():
    """frost: the texture grows with the image (verbatim: the reference's pixel scale); fog: the 224-px map, resized."""
    from stressors.imagenet_c_weather import frost_scale

    assert frost_scale((600, 900), (224, 224), 1.0) == pytest.approx(1.1)  # the reference at 224 px
    assert frost_scale((600, 900), (448, 448), 2.0) == pytest.approx(2.2)
    assert frost_scale((315, 560), (448, 448), 1.0) == pytest.approx(1.1 * 448 / 315)  # reference_size=None
    fog = stressors.get("fog")
    params = fog.sample_params(sample_keys(["a", "b"]), 4, seed=0)
    small = fog.fractal(torch.zeros(2, 3, 224, 224), params)
    large = fog.fractal(torch.zeros(2, 3, 448, 448), params)
    resized = torch.nn.functional.interpolate(small, size=(448, 448), mode="bilinear", align_corners=False)
    assert torch.allclose(large, resized, atol=1e-6)
    # at 300 px the reference cuts 300 of a 512-px map (blobs 224 / 256 : 300 / 512 smaller than at 224 px)
    verbatim = stressors.get("fog", reference_size=None).fractal(torch.zeros(2, 3, 300, 300), params)
    scaled = fog.fractal(torch.zeros(2, 3, 300, 300), params)
    assert not torch.allclose(verbatim, scaled, atol=0.05)
