"""Resize and center crop before the stressors (model.resize, interpolation, resize_backend)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from audit.contract.config import DataConfig, ModelConfig
from audit.evaluation.data import AuditDataset, read_samples
from audit.evaluation.preprocess import Geometry, center_crop, resized_size


@pytest.mark.parametrize("h, w", [(20, 12), (12, 20), (16, 16), (7, 50)])
def test_shorter_edge_rule(h, w):
    short, long = min(h, w), max(h, w)
    new_long = int(10 * long / short)  # torchvision's Resize(int) rule
    assert resized_size(h, w, 10) == ((new_long, 10) if h > w else (10, new_long))
    assert resized_size(h, w, (9, 4)) == (9, 4)


def test_center_crop_matches_transformers_including_padding():
    image_transforms = pytest.importorskip("transformers.image_transforms")
    rng = np.random.default_rng(0)
    for h, w, ch, cw in [(9, 12, 4, 5), (5, 5, 8, 7), (10, 3, 4, 6), (6, 6, 6, 6), (7, 2, 3, 5)]:
        image = rng.random((3, h, w)).astype(np.float32)
        expected = image_transforms.center_crop(image, (ch, cw), input_data_format="channels_first")
        np.testing.assert_array_equal(center_crop(image, (ch, cw)), expected)
        np.testing.assert_array_equal(center_crop(torch.from_numpy(image), (ch, cw)).numpy(), expected)


def test_torch_backend_resizes_then_crops():
    image = torch.rand(3, 20, 12)
    got = Geometry(size=(8, 8), resize=10, interpolation="bicubic").resize_tensor(image)
    resized = F.interpolate(image[None], size=(16, 10), mode="bicubic", antialias=True, align_corners=False)[0]
    torch.testing.assert_close(got, resized[:, 4:12, 1:9])


def test_pil_backend_float_images_are_not_rounded_to_8_bits(tmp_path):
    arr = (np.arange(30 * 20, dtype=np.uint16).reshape(30, 20) * 97).astype(np.uint16)
    Image.fromarray(arr).save(tmp_path / "deep.png")
    (tmp_path / "m.csv").write_text("path,label\ndeep.png,0\n")
    cfg = ModelConfig(path="m.pt", input_size=(10, 10), resize=(15, 10), resize_backend="pil", mean=(0.5,), std=(1,))
    image = AuditDataset(read_samples(DataConfig(manifest=tmp_path / "m.csv"), class_names=None), cfg)[0]["image"]
    plane = Image.fromarray((arr / 65535.0).astype(np.float32)).resize((10, 15), Image.Resampling.BILINEAR)
    expected = np.clip(np.asarray(plane)[2:12], 0, 1)
    np.testing.assert_allclose(image[0].numpy(), expected, atol=1e-7)
    assert torch.equal(image[0], image[2])  # grey replicated to three channels


def test_default_geometry_is_unchanged(tmp_path):
    """No resize key: straight to input_size with antialiased bilinear, as before."""
    rng = np.random.default_rng(1)
    arr = rng.integers(0, 256, (21, 13, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "a.png")
    (tmp_path / "m.csv").write_text("path,label\na.png,0\n")
    cfg = ModelConfig(path="m.pt", input_size=(8, 8))
    image = AuditDataset(read_samples(DataConfig(manifest=tmp_path / "m.csv"), class_names=None), cfg)[0]["image"]
    t = torch.from_numpy(arr.astype(np.float32) / 255.0).permute(2, 0, 1)
    expected = F.interpolate(t[None], size=(8, 8), mode="bilinear", antialias=True, align_corners=False)[0]
    torch.testing.assert_close(image, expected.clamp(0, 1))
