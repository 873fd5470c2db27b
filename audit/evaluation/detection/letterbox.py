"""The geometry cvaudit applies before a detector, and its exact inverse for the boxes.

Two modes (the detector's ``model.resize_mode``):

- ``resize``: the image is stretched to the input size ``(H, W)``; the scales are
  ``W / w`` in x and ``H / h`` in y, no padding.
- ``letterbox`` (Ultralytics' ``LetterBox`` with ``auto=False, scaleup=True, center=True``):
  ``r = min(H / h, W / w)``; the image is resized to ``new_w = round(w * r)``,
  ``new_h = round(h * r)`` (at least 1 pixel: a 1 x 32 image into 16 x 16 keeps one row,
  where Ultralytics' arithmetic would give none) and placed with ``left = round(dw / 2 - 0.1)``,
  ``top = round(dh / 2 - 0.1)`` pixels of padding before it (``dw = W - new_w``,
  ``dh = H - new_h``; Python's ``round``, as Ultralytics), the rest after it; the padding is
  grey, 114/255 in every channel.

Coordinates are continuous pixel coordinates: the image of width ``w`` spans ``[0, w]``, pixel
``i`` covers ``[i, i + 1]`` (the convention of COCO boxes and of ``interpolate`` with
``align_corners=False``). The content is resized to exactly ``new_w x new_h`` pixels, so the
true scales are ``new_w / w`` and ``new_h / h`` (which differ from ``r`` by the rounding);
:func:`boxes_to_original` uses them, so it is the exact inverse of what was done to the
pixels. (Ultralytics' ``scale_boxes`` divides by ``r`` for both axes instead: at most half a
pixel different at the far edge.)

Parameters are planned first from the image sizes (:func:`plan_resize`, pure, batched), then
applied (:func:`apply_resize`); the same :class:`ResizeParams` undo the boxes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from audit.contract.errors import AuditError

__all__ = ["MODES", "PAD_VALUE", "ResizeParams", "apply_resize", "boxes_to_input", "boxes_to_original", "plan_resize"]

#: ``model.resize_mode`` values.
MODES = ("resize", "letterbox")
#: The letterbox padding, in [0, 1] (Ultralytics pads 8-bit images with 114).
PAD_VALUE = 114 / 255


@dataclass(frozen=True)
class ResizeParams:
    """What was done to each image of a batch: enough to apply it and to undo it on boxes.

    Every field is a tensor with one entry per image (shape (B,)), or a 0-dim tensor after
    indexing one image (``params[i]``). Scales and pads are float64.

    Attributes:
        original_height, original_width: The image's size before (int64).
        input_height, input_width: The model's input size (int64).
        content_height, content_width: The size the image content was resized to (int64).
        scale_x, scale_y: ``content / original`` per axis.
        pad_left, pad_top: Pixels of padding before the content (0 for ``resize``).
    """

    original_height: torch.Tensor
    original_width: torch.Tensor
    input_height: torch.Tensor
    input_width: torch.Tensor
    content_height: torch.Tensor
    content_width: torch.Tensor
    scale_x: torch.Tensor
    scale_y: torch.Tensor
    pad_left: torch.Tensor
    pad_top: torch.Tensor

    def __getitem__(self, index: int) -> ResizeParams:
        return ResizeParams(**{name: getattr(self, name)[index] for name in self.__dataclass_fields__})

    def __len__(self) -> int:
        return int(self.scale_x.shape[0]) if self.scale_x.dim() else 1


def plan_resize(
    sizes: Sequence[tuple[int, int]] | torch.Tensor,
    *,
    input_size: tuple[int, int],
    mode: str = "letterbox",
    device: torch.device | str | None = None,
) -> ResizeParams:
    """The resize or letterbox of each image, from the sizes alone.

    Args:
        sizes: ``(height, width)`` of each original image, each at least 1.
        input_size: The model's ``(H, W)``.
        mode: ``"resize"`` or ``"letterbox"`` (see the module docstring).
        device: Where the parameters live (default: the CPU, or ``sizes``' device).

    Returns:
        The parameters, one entry per image.

    Raises:
        AuditError: An unknown mode, or a size below 1 pixel.

    >>> p = plan_resize([(480, 640)], input_size=(640, 640))
    >>> int(p.pad_top[0]), int(p.content_height[0]), float(p.scale_y[0])
    (80, 480, 1.0)
    """
    if mode not in MODES:
        raise AuditError(f"resize mode {mode!r}: expected one of {', '.join(MODES)}")
    size = torch.as_tensor(sizes, dtype=torch.int64, device=device).reshape(-1, 2)
    height, width = size[:, 0], size[:, 1]
    in_h, in_w = int(input_size[0]), int(input_size[1])
    if in_h < 1 or in_w < 1 or bool((size < 1).any()):
        raise AuditError(
            f"resize to {in_h}x{in_w}: image and input sizes must be at least 1 pixel, got {size.tolist()}"
        )
    input_height, input_width = torch.full_like(height, in_h), torch.full_like(width, in_w)
    if mode == "resize":
        content_h, content_w = input_height, input_width
        pad_left = pad_top = torch.zeros_like(height, dtype=torch.float64)
    else:
        ratio = torch.minimum(in_h / height.double(), in_w / width.double())
        content_w = _round_half_even(width.double() * ratio).clamp(min=1)
        content_h = _round_half_even(height.double() * ratio).clamp(min=1)
        pad_left = _round_half_even((in_w - content_w).double() / 2 - 0.1).double()
        pad_top = _round_half_even((in_h - content_h).double() / 2 - 0.1).double()
    return ResizeParams(
        original_height=height,
        original_width=width,
        input_height=input_height,
        input_width=input_width,
        content_height=content_h,
        content_width=content_w,
        scale_x=content_w.double() / width.double(),
        scale_y=content_h.double() / height.double(),
        pad_left=pad_left,
        pad_top=pad_top,
    )


def apply_resize(images: Sequence[torch.Tensor], params: ResizeParams, *, pad_value: float = PAD_VALUE) -> torch.Tensor:
    """Resize (bilinear, no antialias, ``align_corners=False``) and pad each image into one batch.

    Args:
        images: B float images (C, h, w) in [0, 1], on one device, sized as planned.
        params: :func:`plan_resize`'s answer for these images.
        pad_value: The padding's value in every channel.

    Returns:
        The batch (B, C, H, W), same dtype and device as the images.

    Raises:
        AuditError: An image whose size is not the planned one.
    """
    batch = []
    for index, image in enumerate(images):
        p = params[index]
        if image.shape[-2:] != (int(p.original_height), int(p.original_width)):
            raise AuditError(
                f"resize of image {index}: planned for {int(p.original_height)}x{int(p.original_width)}, "
                f"got {tuple(image.shape[-2:])}"
            )
        content = (int(p.content_height), int(p.content_width))
        resized = image
        if content != tuple(image.shape[-2:]):
            resized = F.interpolate(image[None], size=content, mode="bilinear", align_corners=False, antialias=False)[0]
        canvas = image.new_full((image.shape[0], int(p.input_height), int(p.input_width)), pad_value)
        top, left = int(p.pad_top), int(p.pad_left)
        canvas[:, top : top + content[0], left : left + content[1]] = resized
        batch.append(canvas)
    if not batch:
        raise AuditError("resize: no images")
    return torch.stack(batch)


def boxes_to_original(boxes: torch.Tensor, params: ResizeParams, *, clip: bool = True) -> torch.Tensor:
    """Boxes in the model's input pixels -> the original image's pixels, clipped to the image.

    ``x = (x_input - pad_left) / scale_x``, ``y = (y_input - pad_top) / scale_y``, computed in
    float64, then clipped to ``[0, width] x [0, height]`` (unless ``clip=False``) and returned
    in the boxes' dtype.

    Args:
        boxes: xyxy boxes in input pixels.
        params: The batch's parameters (boxes (B, N, 4)) or one image's, ``params[i]`` (boxes (N, 4)).
        clip: Clip to the original image.

    Shape:
        boxes: (B, N, 4) or (N, 4) -> the same.
    """
    scale, offset, limit = _affine(params, boxes)
    out = (boxes.double() - offset) / scale
    if clip:
        out = torch.minimum(out.clamp(min=0), limit)
    return out.to(boxes.dtype)


def boxes_to_input(boxes: torch.Tensor, params: ResizeParams) -> torch.Tensor:
    """Boxes in the original image's pixels -> the model's input pixels (the inverse of :func:`boxes_to_original`).

    Shape:
        boxes: (B, N, 4) or (N, 4) -> the same.
    """
    scale, offset, _ = _affine(params, boxes)
    return (boxes.double() * scale + offset).to(boxes.dtype)


def _affine(params: ResizeParams, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-coordinate scale, offset and clip limit, shaped to broadcast over (B, N, 4) or (N, 4)."""
    scale = torch.stack((params.scale_x, params.scale_y, params.scale_x, params.scale_y), dim=-1)
    offset = torch.stack((params.pad_left, params.pad_top, params.pad_left, params.pad_top), dim=-1)
    width, height = params.original_width.double(), params.original_height.double()
    limit = torch.stack((width, height, width, height), dim=-1)
    scale, offset, limit = (t.to(boxes.device) for t in (scale, offset, limit))
    if scale.dim() == 2:  # batched params: (B, 4) -> (B, 1, 4)
        if boxes.dim() != 3:
            raise AuditError(
                f"boxes for {len(params)} images must have shape (B, N, 4); index the params for one image"
            )
        return scale[:, None], offset[:, None], limit[:, None]
    return scale, offset, limit


def _round_half_even(values: torch.Tensor) -> torch.Tensor:
    """Python's ``round`` (ties to even, as Ultralytics computes sizes and pads), as int64."""
    return torch.round(values).to(torch.int64)
