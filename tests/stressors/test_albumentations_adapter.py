"""The Albumentations adapter: per-sample determinism, batch invariance, errors."""

from __future__ import annotations

import pytest
import torch

import stressors
from stressors.base import StressorError, sample_keys

PARAMS = {1: {"src_radius": 8, "num_flare_circles_range": (1, 2)}, "5": {"src_radius": 24}}
IDS = [f"img{i}" for i in range(5)]


def images(n=5, size=32):
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 3, size, size, generator=g)


@pytest.fixture(scope="module")
def flare():
    return stressors.get("albumentations:RandomSunFlare", params=PARAMS)


def test_same_seed_same_output_and_different_seeds_differ(flare):
    x = images()
    a = flare.apply(x, flare.sample_params(sample_keys(IDS), 5, seed=0))
    b = flare.apply(x, flare.sample_params(sample_keys(IDS), 5, seed=0))
    c = flare.apply(x, flare.sample_params(sample_keys(IDS), 5, seed=1))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert a.shape == x.shape and a.dtype == x.dtype and a.min() >= 0 and a.max() <= 1


def test_batch_size_and_order_do_not_change_a_sample(flare):
    x = images()
    full = flare.apply(x, flare.sample_params(sample_keys(IDS), 1, seed=0))
    order = [3, 0, 4]
    sub = flare.apply(x[order], flare.sample_params(sample_keys([IDS[i] for i in order]), 1, seed=0))
    assert torch.equal(sub, full[order])


def test_severities_come_from_the_params_table(flare):
    assert list(flare.severities) == [1, 5]
    assert "src_radius=24" in flare.severity_meaning[5]
    with pytest.raises(StressorError, match="severity 3"):
        flare.sample_params(sample_keys(IDS), 3, seed=0)


def test_half_precision_round_trips(flare):
    x = images(2).half()
    out = flare.apply(x, flare.sample_params(sample_keys(IDS[:2]), 1, seed=0))
    assert out.dtype == torch.float16


def test_default_params_give_one_severity():
    s = stressors.get("albumentations:GaussNoise")
    assert list(s.severities) == [1]
    x = images(2)
    assert not torch.equal(s.apply(x, s.sample_params(sample_keys(IDS[:2]), 1, seed=0)), x)


@pytest.mark.parametrize(
    ("name", "options", "match"),
    [
        ("albumentations:NoSuchTransform", {}, "no transform named 'NoSuchTransform'"),
        ("albumentations:Compose", {}, "no transform named 'Compose'"),
        ("albumentations:RandomSunFlare", {"params": {1: {"radius": 3}}}, "unknown parameter 'radius'"),
        ("albumentations:RandomSunFlare", {"params": {1: {"src_radius": -4}}}, "option 'params' at severity 1"),
        ("albumentations:RandomSunFlare", {"params": {"high": {}}}, "severity 'high'"),
        ("albumentations:RandomSunFlare", {"params": []}, "option 'params'"),
        ("albumentations:RandomSunFlare", {"strength": 2}, "unknown option 'strength'"),
    ],
)
def test_errors_name_the_transform_and_the_option(name, options, match):
    with pytest.raises(StressorError, match=match) as info:
        stressors.get(name, **options)
    assert "albumentations:" in str(info.value)


def test_a_transform_that_resizes_is_rejected():
    s = stressors.get("albumentations:RandomCrop", params={1: {"height": 8, "width": 8}})
    with pytest.raises(StressorError, match="changed the image shape"):
        s.apply(images(1), s.sample_params(sample_keys(IDS[:1]), 1, seed=0))


def test_a_transform_that_fails_on_the_image_names_it():
    s = stressors.get("albumentations:RandomCrop", params={1: {"height": 64, "width": 64}})
    with pytest.raises(
        StressorError, match=r"albumentations:RandomCrop: the transform failed on a \(16, 16, 3\) image"
    ):
        s.apply(images(1, size=16), s.sample_params(sample_keys(IDS[:1]), 1, seed=0))


def test_a_parameter_of_the_wrong_type_names_the_severity():
    with pytest.raises(
        StressorError, match=r"albumentations:RandomSunFlare: option 'params' at severity 2: .*src_radius"
    ):
        stressors.get("albumentations:RandomSunFlare", params={1: {}, 2: {"src_radius": "big"}})
