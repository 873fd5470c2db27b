"""A contact sheet of every stressor at every severity, to see what the severities mean."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from audit.contract.config import DEFAULT_IMAGE_FORMATS
from stressors.base import StressorError, sample_keys
from stressors.registry import available, get

#: Sample photographs shipped with scikit-learn (no download): ``sample:<name>`` -> file name.
SAMPLES = {"china": "china.jpg", "flower": "flower.jpg"}
_LABEL_HEIGHT = 22
_LABEL_WIDTH = 120


def load_image(source: Any) -> np.ndarray:
    """Read an image as uint8 RGB, shape (H, W, 3).

    Args:
        source: a path, ``"sample:china"`` / ``"sample:flower"`` (scikit-learn's
            sample photographs), a PIL image, or an array (H, W), (H, W, 3) or
            (H, W, 4), uint8 or float in [0, 1].

    Raises:
        StressorError: unreadable file, unknown sample or unusable array.
    """
    if isinstance(source, str) and source.startswith("sample:"):
        key = source.split(":", 1)[1]
        if key not in SAMPLES:
            raise StressorError(
                f"preview: unknown sample {source!r}; expected one of {[f'sample:{k}' for k in SAMPLES]}"
            )
        from sklearn.datasets import load_sample_images

        photos = load_sample_images()
        names = [Path(f).name for f in photos.filenames]
        return np.ascontiguousarray(photos.images[names.index(SAMPLES[key])])
    if isinstance(source, (str, Path)):
        try:  # cvaudit's image formats only: never a plugin that starts a program (EPS runs Ghostscript)
            with Image.open(source, formats=list(DEFAULT_IMAGE_FORMATS)) as img:
                return np.asarray(img.convert("RGB"))
        except Exception as exc:  # whatever a decoder raises
            raise StressorError(f"preview: cannot read image {str(source)!r}: {exc}") from exc
    if isinstance(source, Image.Image):
        return np.asarray(source.convert("RGB"))
    array = np.asarray(source)
    if array.dtype.kind == "f":
        if array.size and (array.min() < 0 or array.max() > 1):
            raise StressorError("preview: float images must lie in [0, 1]")
        array = np.round(array * 255).astype(np.uint8)
    if array.dtype != np.uint8:
        raise StressorError(f"preview: unsupported image dtype {array.dtype}")
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] not in (3, 4):
        raise StressorError(f"preview: image must be (H, W), (H, W, 3) or (H, W, 4), got {array.shape}")
    return np.ascontiguousarray(array[..., :3])


def render_preview(
    image: Any,
    *,
    names: Sequence[str] | None = None,
    seed: int = 0,
    size: int | None = None,
) -> Image.Image:
    """Render a grid: one row per stressor, the clean image then severities 1..5.

    Model-aware stressors (adversarial attacks) are skipped: they need a model.

    Args:
        image: anything :func:`load_image` accepts.
        names: stressor names (as given to :func:`stressors.get`); default all available.
        seed: the seed that keys the random draws (as in an audit).
        size: resize so that the shorter side has this many pixels (default 224).

    Returns:
        an RGB PIL image with labels.

    Raises:
        StressorError: unknown stressor name or unusable image.
    """
    rgb = load_image(image)
    tile = _resize(rgb, size or 224)
    th, tw = tile.shape[:2]
    x = torch.from_numpy(np.array(tile)).permute(2, 0, 1)[None].float() / 255.0
    rows: list[tuple[str, list[tuple[str, np.ndarray]]]] = []
    for name in names if names is not None else available():
        stressor = get(name)
        if getattr(stressor, "model_aware", False):
            continue
        cells = [("clean", tile)]
        for severity in stressor.severities:
            params = stressor.sample_params(sample_keys(["preview"]), severity, seed=seed)
            out = stressor.apply(x, params)[0]
            cells.append((f"severity {severity}", (out.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)))
        rows.append((name, cells))
    columns = max((len(cells) for _, cells in rows), default=1)
    sheet = Image.new("RGB", (_LABEL_WIDTH + columns * tw, _LABEL_HEIGHT + len(rows) * th), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=14)
    headers = rows[0][1] if rows else [("clean", tile)]
    for j, (label, _) in enumerate(headers):
        draw.text((_LABEL_WIDTH + j * tw + 4, 3), label, fill="black", font=font)
    for i, (name, cells) in enumerate(rows):
        top = _LABEL_HEIGHT + i * th
        draw.text((4, top + th // 2 - 8), name, fill="black", font=font)
        for j, (_, cell) in enumerate(cells):
            sheet.paste(Image.fromarray(cell), (_LABEL_WIDTH + j * tw, top))
    return sheet


def _resize(rgb: np.ndarray, shorter: int) -> np.ndarray:
    """Resize (bicubic, PIL) so the shorter side is ``shorter`` pixels."""
    h, w = rgb.shape[:2]
    scale = shorter / min(h, w)
    if scale == 1:
        return rgb
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BICUBIC))
