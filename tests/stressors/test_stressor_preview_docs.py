"""Every registered image stressor has a preview image in the documentation (scripts/stressor_previews.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image

import stressors

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "stressors.md"
IMAGE_STRESSORS = [n for n in stressors.available() if not getattr(stressors.factory(n), "model_aware", False)]


def test_every_image_stressor_is_previewed():
    assert {"night", "blur", "occlusion"} <= set(IMAGE_STRESSORS)


@pytest.mark.parametrize("name", IMAGE_STRESSORS)
def test_preview_png_exists_is_small_and_is_shown_on_the_stressors_page(name):
    path = ROOT / "docs" / "img" / "stressors" / f"{name}.png"
    assert path.is_file(), f"run scripts/stressor_previews.py --names {name}"
    assert path.stat().st_size < 60 * 1024, f"{path.name}: {path.stat().st_size} bytes"
    with Image.open(path) as image:
        width, height = image.size
    assert height < 160 and width > 5 * height  # one row: clean + 5 severities
    assert re.search(rf"!\[[^\]]*\]\(img/stressors/{re.escape(name)}\.png\)", PAGE.read_text(encoding="utf-8"))


def test_no_preview_is_left_for_a_stressor_that_is_gone():
    shown = {p.stem for p in (ROOT / "docs" / "img" / "stressors").glob("*.png")}
    assert shown <= set(IMAGE_STRESSORS), sorted(shown - set(IMAGE_STRESSORS))
