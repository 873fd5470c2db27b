"""Image properties (image_properties.csv) against a hand-written numpy reference, and in a real run."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from cvaudit_fixtures import save_model, write_config
from PIL import Image
from property_reference import image_properties_reference

from audit.contract.image_properties import PROPERTY_COLUMNS
from audit.evaluation.image_properties import pixel_properties


def test_pixel_properties_match_the_numpyimage_properties_reference():
    rng = np.random.default_rng(1)
    imgs = rng.random((4, 23, 17, 3))
    imgs[1] = 0.0  # black: saturation 0 (max = 0), no contrast
    imgs[2] = imgs[2].mean(axis=2, keepdims=True)  # grey: colourfulness and saturation 0
    got = pixel_properties(torch.from_numpy(imgs).permute(0, 3, 1, 2).float())
    assert got.shape == (4, 5) and got.dtype == torch.float64
    for k in range(4):
        np.testing.assert_allclose(
            got[k].numpy(), image_properties_reference(imgs[k].astype(np.float32).astype(np.float64)), atol=2e-6
        )
    assert got[1].abs().max() == 0
    assert got[2, 3] < 1e-6 and got[2, 4] < 1e-6


def test_colourfulness_is_the_papers_value_over_255():
    """Hasler & Süsstrunk's M on 0-255 pixels (their formula, written out) is 255 times ours."""
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, (12, 9, 3)).astype(np.float64)
    rg = img[..., 0] - img[..., 1]
    yb = 0.5 * (img[..., 0] + img[..., 1]) - img[..., 2]
    paper = np.sqrt(rg.std() ** 2 + yb.std() ** 2) + 0.3 * np.sqrt(rg.mean() ** 2 + yb.mean() ** 2)
    got = pixel_properties(torch.from_numpy(img / 255).permute(2, 0, 1)[None].float())[0, 3].item()
    assert got * 255 == pytest.approx(paper, rel=1e-5)


def test_one_channel_input_is_luma_without_colour():
    rng = np.random.default_rng(3)
    y = rng.random((2, 1, 8, 8))
    got = pixel_properties(torch.from_numpy(y).float())
    ref = [
        image_properties_reference(np.repeat(y[k].transpose(1, 2, 0), 3, axis=2).astype(np.float32).astype(np.float64))
        for k in range(2)
    ]
    np.testing.assert_allclose(got.numpy(), np.array(ref), atol=2e-6)
    assert got[:, 3:].abs().max() < 1e-6


def test_a_run_writes_image_properties_of_the_clean_model_input(tmp_path: Path):
    """image_properties.csv: one row per sample, in dataset order, attested; sizes of the decoded file."""
    from click.testing import CliRunner
    from cvaudit_fixtures import ColourNet, make_dataset

    from audit.cli import main

    make_dataset(tmp_path, n=9)
    # images of different sizes: the size columns are the file's, the pixel columns the 16x16 model input's
    for i in range(9):
        arr = np.asarray(Image.open(tmp_path / "img" / f"{i}.png"))
        Image.fromarray(np.tile(arr, (1, 1 + i % 3, 1))).save(tmp_path / "img" / f"{i}.png")
    save_model(tmp_path / "model.pt", ColourNet())
    cfg = write_config(tmp_path, stressors="", extra="")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["run", str(cfg), "--out", str(out)])
    assert result.exit_code == 0, result.output
    with open(out / "image_properties.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == list(PROPERTY_COLUMNS)
    assert [r["id"] for r in rows] == [f"s{i:03d}" for i in range(9)]
    for i, row in enumerate(rows):
        w = 16 * (1 + i % 3)
        assert (int(row["width"]), int(row["height"])) == (w, 16)
        assert float(row["aspect_ratio"]) == w / 16
        src = np.asarray(Image.open(tmp_path / "img" / f"{i}.png").convert("RGB").resize((16, 16), Image.BILINEAR))
        ref = image_properties_reference(src.astype(np.float64) / 255)
        # the model input is resized in 8 bits as Pillow does: brightness within a rounding step
        assert float(row["brightness"]) == pytest.approx(ref[0], abs=2 / 255)
        assert float(row["saturation"]) == pytest.approx(ref[4], abs=0.02)
    from reports.outputs import ATTESTED_FILES

    assert "image_properties.csv" in ATTESTED_FILES
