"""Occlusion: one rectangle or ellipse covering a stated fraction of the image."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from stressors.base import ImageStressor, Params, StressorError, interpolate_level, noise_like, uniform

#: Fraction of the image area hidden, per severity.
COVERAGE = (0.05, 0.10, 0.20, 0.30, 0.45)
FILLS = ("black", "noise", "mean")
#: Range of the occluder's aspect ratio (width / height, in units of the image's width and height).
ASPECT_RANGE = (0.5, 2.0)


class Occlusion(ImageStressor):
    """An occluder (a hand, a sticker, a pole, dirt on the lens) hiding part of the image.

    Severity 1..5 hides 5 %, 10 %, 20 %, 30 %, 45 % of the image area with one
    occluder, drawn per sample: a rectangle or an ellipse (equally likely) of
    that area, with an aspect ratio log-uniform in [0.5, 2] (relative to the
    image's own aspect), entirely inside the frame at a uniform position. As
    the occluder is never clipped, the hidden fraction is the stated one up to
    pixel rounding.

    Fractional severities interpolate the hidden area linearly (2.5: 15 %);
    the occluder's shape, aspect ratio and relative position are those of the
    next integer level, so within (k, k + 1] it grows in place.

    Args:
        fill: what the occluder looks like: ``"black"`` (default), ``"noise"``
            (uniform random grey levels per pixel and channel) or ``"mean"``
            (the image's own per-channel mean colour, which hides the content
            without adding an edge-rich dark blob).
        severities: subset of 1..5 to run.

    Raises:
        StressorError: unknown ``fill`` or bad ``severities``.
    """

    name = "occlusion"
    fractional_severities = True
    severity_meaning = {
        i + 1: f"{int(c * 100)}% of the image area hidden by one rectangle or ellipse" for i, c in enumerate(COVERAGE)
    }

    def __init__(self, *, fill: str = "black", severities: Sequence[int] | None = None) -> None:
        super().__init__(severities=severities)
        if fill not in FILLS:
            raise StressorError(f"occlusion: option 'fill' must be one of {list(FILLS)}, got {fill!r}")
        self.fill = fill

    @property
    def options(self) -> dict[str, Any]:
        return {"fill": self.fill, **super().options}

    def _sample(self, seeds: list[int], severity: float) -> dict[str, Tensor]:
        coverage = interpolate_level(COVERAGE, severity)
        u = uniform(seeds, 4, stream=1)
        ellipse = u[:, 0] < 0.5
        # Area of the bounding box (in units of the image area) that yields the coverage.
        box_area = torch.where(
            ellipse, torch.full_like(u[:, 0], coverage * 4 / math.pi), torch.full_like(u[:, 0], coverage)
        )
        # Aspect ratio limited so that the box fits in the frame: box_area <= aspect <= 1 / box_area.
        lo = torch.clamp(box_area, min=ASPECT_RANGE[0]).log()
        hi = torch.clamp(1.0 / box_area, max=ASPECT_RANGE[1]).log()
        aspect = torch.exp(lo + (hi - lo) * u[:, 1])
        width = torch.sqrt(box_area * aspect).clamp(max=1.0)
        height = (box_area / width).clamp(max=1.0)
        cx = width / 2 + (1 - width) * u[:, 2]
        cy = height / 2 + (1 - height) * u[:, 3]
        return {"ellipse": ellipse, "cx": cx, "cy": cy, "width": width, "height": height}

    def _apply(self, images: Tensor, params: Params) -> Tensor:
        _n, _c, h, w = images.shape
        mask = occluder_mask(params, h, w, images.device)
        if self.fill == "black":
            fill = torch.zeros_like(images)
        elif self.fill == "mean":
            fill = images.mean(dim=(-2, -1), keepdim=True).expand_as(images)
        else:
            fill = 0.5 * (1 + torch.erf(noise_like(images, params.seeds) / math.sqrt(2)))
        return torch.where(mask, fill, images)


def occluder_mask(params: Params, height: int, width: int, device: torch.device | str) -> Tensor:
    """Boolean masks of the occluders described by ``params`` (True = hidden).

    Shape:
        returns (N, 1, H, W).
    """
    ys = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) / height
    xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) / width
    view = lambda key: params[key].to(device=device, dtype=torch.float32).view(-1, 1, 1)  # noqa: E731
    dx = (xs[None, None, :] - view("cx")) / (view("width") / 2)
    dy = (ys[None, :, None] - view("cy")) / (view("height") / 2)
    rect = (dx.abs() <= 1) & (dy.abs() <= 1)
    ellipse = dx**2 + dy**2 <= 1
    is_ellipse = params["ellipse"].to(device).view(-1, 1, 1)
    return torch.where(is_ellipse, ellipse, rect)[:, None]
