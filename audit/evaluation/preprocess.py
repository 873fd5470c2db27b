"""Image geometry before the stressors: resize, then center-crop to the model's input size.

:class:`Geometry` is built from the config's ``model`` section (``input_size``, ``resize``,
``interpolation``, ``resize_backend``; docs/running.md, "Preprocessing"):

- the resize target: ``resize`` absent -> ``input_size``; an int -> the shorter edge becomes
  that many pixels and the longer one ``int(resize * long / short)`` (the rule of torchvision's
  ``Resize`` and of the Hugging Face image processors); ``[H, W]`` -> exactly that size;
- then a center crop to ``input_size``: offsets ``(h - H) // 2`` and ``(w - W) // 2``; an image
  smaller than the crop is padded with black, placed at ``ceil((H - h) / 2)`` (both as
  ``transformers.image_transforms.center_crop``);
- backend ``torch``: the float image is resized with ``torch.nn.functional.interpolate``
  (antialiased for bilinear and bicubic); backend ``pil``: an 8-bit image is resized by Pillow
  in 8 bits (what PIL-based pipelines feed their models), a 16-bit or float image per channel
  in Pillow's 32-bit float mode (no 8-bit rounding).

The result is a float image in [0, 1]; the model wrapper normalises it after the stressors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from audit.contract.config import ModelConfig

__all__ = ["PIL_FILTERS", "Geometry", "center_crop", "resized_size"]

#: ``model.interpolation`` -> Pillow filter (the same numbers as transformers' ``PILImageResampling``).
PIL_FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}


def resized_size(height: int, width: int, resize: int | tuple[int, int]) -> tuple[int, int]:
    """The (H, W) an image of ``height`` x ``width`` is resized to before the crop.

    Args:
        height: Image height in pixels.
        width: Image width in pixels.
        resize: The shorter edge (int, aspect ratio kept) or an exact ``(H, W)``.

    Returns:
        ``(H, W)``; for an int, the longer edge is ``int(resize * long / short)``.
    """
    if not isinstance(resize, int):
        return int(resize[0]), int(resize[1])
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = resize, int(resize * long / short)
    return (new_long, new_short) if width <= height else (new_short, new_long)


def _axis(n: int, crop: int) -> tuple[int, int, int]:
    """(source start, source stop, destination start) of a center crop along one axis."""
    if n >= crop:
        start = (n - crop) // 2
        return start, start + crop, 0
    return 0, n, -(-(crop - n) // 2)


def center_crop(image: np.ndarray | torch.Tensor, size: tuple[int, int]) -> np.ndarray | torch.Tensor:
    """Center-crop a channels-first image to ``size``, padding with zeros where it is smaller.

    Shape:
        image (C, H, W) -> (C, size[0], size[1]), same type and dtype.
    """
    h, w = image.shape[-2:]
    ch, cw = size
    if (h, w) == (ch, cw):
        return image
    y0, y1, dy = _axis(h, ch)
    x0, x1, dx = _axis(w, cw)
    if dy == 0 and dx == 0:
        return image[:, y0:y1, x0:x1]
    if isinstance(image, torch.Tensor):
        out = image.new_zeros((image.shape[0], ch, cw))
    else:
        out = np.zeros((image.shape[0], ch, cw), dtype=image.dtype)
    out[:, dy : dy + (y1 - y0), dx : dx + (x1 - x0)] = image[:, y0:y1, x0:x1]
    return out


@dataclass(frozen=True)
class Geometry:
    """How a decoded image becomes an ``input_size`` image (see the module docstring).

    Attributes:
        size: ``(H, W)`` the model sees (after the crop).
        resize: ``None`` (straight to ``size``), the shorter edge, or an exact ``(H, W)``.
        interpolation: a key of :data:`PIL_FILTERS`.
        backend: ``torch`` or ``pil``.
    """

    size: tuple[int, int]
    resize: int | tuple[int, int] | None = None
    interpolation: str = "bilinear"
    backend: str = "torch"

    @classmethod
    def of(cls, cfg: ModelConfig) -> Geometry:
        """The geometry the config's ``model`` section describes."""
        resize = cfg.resize if cfg.resize is None or isinstance(cfg.resize, int) else tuple(cfg.resize)
        return cls(tuple(cfg.input_size), resize, cfg.interpolation, cfg.resize_backend)

    def target(self, height: int, width: int) -> tuple[int, int]:
        """The (H, W) before the crop for an image of ``height`` x ``width``."""
        return self.size if self.resize is None else resized_size(height, width, self.resize)

    def resize_tensor(self, image: torch.Tensor) -> torch.Tensor:
        """Torch backend. Shape: (C, h, w) float -> (C, H, W) float (values may leave [0, 1] slightly)."""
        target = self.target(*image.shape[-2:])
        if tuple(image.shape[-2:]) != target:
            mode = self.interpolation
            kwargs = {"antialias": True, "align_corners": False} if mode in ("bilinear", "bicubic") else {}
            image = F.interpolate(image.unsqueeze(0), size=target, mode=mode, **kwargs)[0]
        return center_crop(image, self.size)

    def resize_pil(self, image: Image.Image) -> np.ndarray:
        """PIL backend, 8-bit image (mode ``L`` or ``RGB``).

        Shape: -> (C, H, W) float32 in [0, 1], C = 1 or 3; resized in 8 bits, then divided by 255.
        """
        target = self.target(image.height, image.width)
        if (image.height, image.width) != target:
            image = image.resize((target[1], target[0]), resample=PIL_FILTERS[self.interpolation])
        arr = np.asarray(image)
        arr = arr[None] if arr.ndim == 2 else np.moveaxis(arr, -1, 0)
        return center_crop(arr, self.size).astype(np.float32) / np.float32(255.0)

    def resize_pil_float(self, image: np.ndarray) -> np.ndarray:
        """PIL backend, float image (16-bit or float sources), one channel at a time in mode ``F``.

        Shape: (h, w, C) float in [0, 1] -> (C, H, W) float32 clipped to [0, 1].
        """
        h, w = image.shape[:2]
        target = self.target(h, w)
        planes = []
        for c in range(image.shape[2]):
            plane = Image.fromarray(np.ascontiguousarray(image[:, :, c], dtype=np.float32))  # mode F
            if (h, w) != target:
                plane = plane.resize((target[1], target[0]), resample=PIL_FILTERS[self.interpolation])
            planes.append(np.asarray(plane, dtype=np.float32))
        return np.clip(center_crop(np.stack(planes), self.size), 0.0, 1.0)
