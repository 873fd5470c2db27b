"""The preview grid and the ``stressors`` CLI group."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from audit.cli.stressors import stressors_group
from stressors.preview import load_image, render_preview

SMALL = ["night", "blur", "contrast"]


def test_render_preview_grid_has_a_row_per_stressor_and_a_column_per_severity():
    image = (np.random.default_rng(0).random((40, 60, 3)) * 255).astype(np.uint8)
    grid = render_preview(image, names=SMALL + ["fgsm"], size=32)  # fgsm is model-aware: skipped
    assert isinstance(grid, Image.Image) and grid.mode == "RGB"
    tile_w, tile_h = 48, 32
    assert grid.size == (120 + 6 * tile_w, 22 + len(SMALL) * tile_h)


def test_render_preview_is_deterministic_in_the_seed():
    image = Image.new("RGB", (32, 32), (120, 160, 200))
    a = np.asarray(render_preview(image, names=["night"], seed=3, size=32))
    b = np.asarray(render_preview(image, names=["night"], seed=3, size=32))
    c = np.asarray(render_preview(image, names=["night"], seed=4, size=32))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_load_image_accepts_samples_paths_and_arrays(tmp_path):
    china = load_image("sample:china")
    assert china.shape == (427, 640, 3) and china.dtype == np.uint8
    Image.fromarray(china[:10, :12]).save(tmp_path / "x.png")
    assert load_image(tmp_path / "x.png").shape == (10, 12, 3)
    assert load_image(np.zeros((5, 6), dtype=np.float32)).shape == (5, 6, 3)


@pytest.mark.parametrize("bad", ["sample:mars", "no/such/file.png", np.zeros((4, 4, 2), dtype=np.uint8)])
def test_load_image_errors(bad):
    from stressors.base import StressorError

    with pytest.raises(StressorError, match="preview"):
        load_image(bad)


def test_cli_list_text_shows_severity_meanings():
    result = CliRunner().invoke(stressors_group, ["list"])
    assert result.exit_code == 0, result.output
    assert "night  [image; severities 1, 2, 3, 4, 5" in result.output
    assert "stops less light" in result.output and "sodium" in result.output


def test_cli_list_json():
    result = CliRunner().invoke(stressors_group, ["list", "--format", "json"])
    assert result.exit_code == 0
    data = json.loads(result.output)
    by_name = {s["name"]: s for s in data["stressors"]}
    assert by_name["blur"]["options"] == {"kind": "defocus", "severities": [1, 2, 3, 4, 5]}
    assert set(by_name["glare"]["severity_meaning"]) == {"1", "2", "3", "4", "5"}
    assert by_name["occlusion"]["devices"] == "cpu, cuda"
    assert data["broken"] == {}


def test_cli_preview_writes_a_png(tmp_path):
    out = tmp_path / "grid.png"
    args = ["preview", "sample:flower", "--out", str(out), "--seed", "1", "--size", "24", "--name", "glare"]
    result = CliRunner().invoke(stressors_group, args)
    assert result.exit_code == 0, result.output
    assert Image.open(out).size[1] == 22 + 24


def test_cli_preview_bad_image_exits_2(tmp_path):
    result = CliRunner().invoke(
        stressors_group, ["preview", str(tmp_path / "missing.png"), "--out", str(tmp_path / "g.png")]
    )
    assert result.exit_code == 2
    assert "cannot read image" in result.output


def test_cli_preview_unknown_stressor_exits_2(tmp_path):
    result = CliRunner().invoke(stressors_group, ["preview", "sample:china", "--name", "hailstorm", "--size", "16"])
    assert result.exit_code == 2 and "unknown stressor 'hailstorm'" in result.output
