"""Glare: a bright light source in or near the frame (veiling glare, bloom, streaks, ghosts)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from stressors.base import ImageStressor, Params, StressorError, interpolate_level, uniform
from stressors.filters import coordinate_grid, linear_to_srgb, srgb_to_linear

#: Per severity: (veiling glare as a fraction of white, bloom radius as a fraction of the shorter side,
#: source brightness relative to white, ghost strength).
LEVELS = (
    (0.04, 0.05, 1.5, 0.08),
    (0.08, 0.08, 2.5, 0.12),
    (0.14, 0.12, 4.0, 0.16),
    (0.22, 0.17, 6.0, 0.20),
    (0.32, 0.24, 9.0, 0.25),
)
#: Colour of the source (warm white, linear RGB) and of the ghosts (coating reflections).
SOURCE_COLOUR = (1.0, 0.93, 0.80)
GHOST_COLOURS = ((0.55, 1.0, 0.6), (1.0, 0.55, 0.9), (0.5, 0.7, 1.0), (1.0, 0.8, 0.4))
#: Ghost positions along the line source -> image centre (0 = source, 1 = centre, 2 = mirrored source),
#: and their radii as fractions of the shorter side.
GHOST_POSITIONS = (0.6, 1.3, 1.65, 2.1)
GHOST_RADII = (0.03, 0.07, 0.04, 0.11)
#: The added light is computed with at most this many pixels on the shorter side and upsampled
#: bilinearly (it is smooth; at 224 px this makes glare about three times faster).
FIELD_SIZE = 128


class Glare(ImageStressor):
    """Stray light from a bright source (sun, headlight, lamp) in or just outside the frame.

    Light is added in linear light (after decoding sRGB) and the result is
    re-encoded, so the source and its surroundings saturate to white as in a
    real capture:

    - veiling glare: a uniform wash of the source's colour that lifts the
      blacks and reduces contrast everywhere, plus a 1 / (1 + (d / r)^2) tail;
    - bloom: a Gaussian halo of radius r around the source, with six faint
      diffraction streaks (aperture blades);
    - ghosts (option ``ghosts``, default on): four tinted discs, the
      reflections between lens elements, on the line from the source through
      the image centre.

    The added light is computed on a grid of at most 128 px on the shorter
    side and upsampled bilinearly (it is smooth). The source position is drawn per sample: horizontally anywhere across the
    frame, vertically from 10 % above the top edge to the middle of the image.

    ========  ===============  ============================  ===================
    severity  veiling glare    bloom radius (shorter side)   source brightness
    ========  ===============  ============================  ===================
    1         4 % of white     5 %                           1.5 x white
    2         8 %              8 %                           2.5 x
    3         14 %             12 %                          4 x
    4         22 %             17 %                          6 x
    5         32 %             24 %                          9 x
    ========  ===============  ============================  ===================

    Fractional severities interpolate every column of the table linearly; the
    source position is that of the next integer level.

    Args:
        ghosts: add lens ghost reflections (default True).
        severities: subset of 1..5 to run.

    Shape:
        RGB images (N, 3, H, W); other channel counts get a grey source.
    """

    name = "glare"
    fractional_severities = True
    severity_meaning = {
        i
        + 1: f"veiling glare {int(v * 100)}% of white (contrast loss), bloom radius {int(r * 100)}% of the shorter side, "
        f"source {s:g}x white"
        for i, (v, r, s, _) in enumerate(LEVELS)
    }

    def __init__(self, *, ghosts: bool = True, severities: Sequence[int] | None = None) -> None:
        super().__init__(severities=severities)
        if not isinstance(ghosts, bool):
            raise StressorError(f"glare: option 'ghosts' must be true or false, got {ghosts!r}")
        self.ghosts = ghosts

    @property
    def options(self) -> dict[str, Any]:
        return {"ghosts": self.ghosts, **super().options}

    def _sample(self, seeds: list[int], severity: int) -> dict[str, Tensor]:
        u = uniform(seeds, 3, stream=1)
        return {
            "source_x": u[:, 0],  # fraction of the width
            "source_y": -0.1 + 0.6 * u[:, 1],  # fraction of the height
            "streak_angle_deg": u[:, 2] * 60.0,
        }

    def _apply(self, images: Tensor, params: Params) -> Tensor:
        veil, radius, brightness, ghost = interpolate_level(LEVELS, params.severity)
        _n, c, h, w = images.shape
        dev = images.device
        # The added light is smooth: compute it at most FIELD_SIZE px on the shorter side, then upsample.
        f = min(1.0, FIELD_SIZE / min(h, w))
        hl, wl = max(1, round(h * f)), max(1, round(w * f))
        ys, xs = coordinate_grid(hl, wl, dev)
        s = float(min(hl, wl))
        sx = (params["source_x"].to(dev, torch.float32) * (wl / s)).view(-1, 1, 1)
        sy = (params["source_y"].to(dev, torch.float32) * (hl / s)).view(-1, 1, 1)
        dx, dy = xs - sx, ys - sy
        d2 = dx**2 + dy**2
        # Bloom (Gaussian core + diffraction streaks) and the long veiling tail.
        d = torch.sqrt(d2)
        streaks = _streaks(dx, dy, d, params["streak_angle_deg"].to(dev, torch.float32)) * torch.exp(
            -d / (1.2 * radius)
        )
        light = brightness * (torch.exp(-d2 / (2 * (0.35 * radius) ** 2)) + 0.35 * torch.exp(-d2 / (2 * radius**2)))
        light = light + 0.25 * brightness * streaks + veil / (1 + d2 / radius**2) + veil
        colour = torch.tensor(SOURCE_COLOUR if c == 3 else (1.0,) * c, device=dev).view(1, c, 1, 1)
        added = light[:, None] * colour
        if self.ghosts:
            added = added + ghost * _ghosts(sx, sy, xs, ys, wl / s / 2, hl / s / 2, c)
        if (hl, wl) != (h, w):
            added = F.interpolate(added, size=(h, w), mode="bilinear", align_corners=False)
        lin = srgb_to_linear(images).mul_(1.0 - veil).add_(added)
        return linear_to_srgb(lin)


def _streaks(dx: Tensor, dy: Tensor, d: Tensor, angle_deg: Tensor) -> Tensor:
    """Six thin rays: |cos(3 (phi - angle))|^80, without atan2 or pow (both slow on the CPU).

    cos(3 t) = 4 cos(t)^3 - 3 cos(t), with cos(t) from the dot product of (dx, dy) and the
    angle's unit vector; the 80th power is taken by repeated squaring (x^64 * x^16).

    Shape:
        dx, dy, d: (N, H, W); angle_deg: (N,); returns (N, H, W).
    """
    a = torch.deg2rad(angle_deg).view(-1, 1, 1)
    u = (dx * torch.cos(a) + dy * torch.sin(a)) / d.clamp(min=1e-6)
    c = (4 * u * u - 3) * u
    c2 = c * c
    c16 = c2 * c2
    c16 = c16 * c16
    c16 = c16 * c16
    c64 = c16 * c16
    c64 = c64 * c64
    return c64 * c16


def _ghosts(sx: Tensor, sy: Tensor, xs: Tensor, ys: Tensor, cx: float, cy: float, channels: int) -> Tensor:
    """Soft tinted discs on the line from the source through the centre (cx, cy).

    Shape:
        sx, sy: (N, 1, 1); xs, ys: (H, W); returns (N, C, H, W).
    """
    out = 0.0
    for t, r, colour in zip(GHOST_POSITIONS, GHOST_RADII, GHOST_COLOURS):
        gx = sx + t * (cx - sx)
        gy = sy + t * (cy - sy)
        q = ((xs - gx) ** 2 + (ys - gy) ** 2) / (r * r)
        d = torch.sqrt(q)
        disc = torch.clamp((1.0 - d) * 8.0, 0.0, 1.0) * (0.6 + 0.4 * q.clamp(max=1.0) ** 2)  # brighter rim
        tint = torch.tensor(colour if channels == 3 else (1.0,) * channels, device=xs.device).view(1, channels, 1, 1)
        out = out + disc[:, None] * tint
    return out  # type: ignore[return-value]


__all__ = ["Glare"]
