"""Camera shifts: rotation, translation, zoom and perspective (one homography per sample).

Each stressor takes the physical magnitude of its severity (an angle, a
fraction of the frame, a zoom factor) and a random direction per sample (sign,
heading, axis, in or out) keyed by (seed, stressor name, sample id), never by
the sample's position in the batch; a sample keeps its direction at every
severity, so only the magnitude grows with the severity. The image is then resampled through one 3x3
homography per sample, in the continuous pixel frame shared with boxes: x in
[0, W], y in [0, H], pixel column i covers [i, i + 1) and its centre is
i + 0.5, so the image centre is (W / 2, H / 2).

The homography ``H`` maps an input position to where it lands in the output
(:meth:`CameraShift.homography`); :meth:`CameraShift.map_points` applies
exactly that map to points (so boxes follow the pixels), and the images are
resampled backwards: output pixel centre q reads the input at ``H^-1 q`` with
:func:`torch.nn.functional.grid_sample` (bilinear, ``align_corners=False``)
on the images' device. Where ``H^-1 q`` falls outside the input, the option
``fill`` decides what is seen:

- ``"constant"`` (default): a flat colour ``fill_value`` (default 0.0, black, as
  the defaults of Albumentations' ``Affine``, torchvision's ``RandomAffine`` and
  kornia), blended bilinearly at the frame's edge as if the input were
  surrounded by that colour. The black area is what a user of those libraries
  sees; 0.5 (mid grey) is closer to the mean of natural images.
- ``"reflect"``: the image mirrored about its border (``padding_mode="reflection"``).
  No constant area, but mirrored copies of objects near the border appear,
  which a detector audit counts as unlabelled detections; hence not the default.

Boxes: every map here takes lines to lines and keeps convex shapes convex
inside the frame, so the axis-aligned hull of a box's 4 mapped corners (the
default :meth:`~stressors.base.ImageStressor.transform_boxes`) is exactly the
bounding box of the moved box.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from stressors.base import ImageStressor, Params, StressorError, interpolate_level, per_sample_seeds, uniform

FILLS = ("constant", "reflect")
#: Default colour of ``fill: constant`` (black), in [0, 1].
DEFAULT_FILL_VALUE = 0.0

#: Rotation angle in degrees per severity (sign drawn per sample).
ROTATION_DEG = (5.0, 10.0, 15.0, 25.0, 35.0)
#: Translation as a fraction of the frame per severity (heading drawn per sample).
TRANSLATION_FRACTION = (0.05, 0.10, 0.15, 0.20, 0.30)
#: Zoom factor per severity: in magnifies by it, out shrinks by its inverse.
ZOOM_FACTOR = (1.1, 1.2, 1.35, 1.5, 1.75)
ZOOM_DIRECTIONS = ("both", "in", "out")
#: Tilt angle in degrees per severity (axis and sign drawn per sample).
PERSPECTIVE_DEG = (10.0, 20.0, 30.0, 40.0, 50.0)


def _check_fill(name: str, fill: Any, fill_value: Any) -> float | None:
    """The constant fill colour (None for reflect); StressorError naming the option otherwise."""
    if fill not in FILLS:
        raise StressorError(f"{name}: option 'fill' must be one of {list(FILLS)}, got {fill!r}")
    if fill == "reflect":
        if fill_value is not None:
            raise StressorError(f"{name}: option 'fill_value' applies only to fill 'constant', not 'reflect'")
        return None
    if fill_value is None:
        return DEFAULT_FILL_VALUE
    ok = isinstance(fill_value, (int, float)) and not isinstance(fill_value, bool)
    if not ok or not math.isfinite(float(fill_value)) or not 0.0 <= float(fill_value) <= 1.0:
        raise StressorError(f"{name}: option 'fill_value' must be a number in [0, 1], got {fill_value!r}")
    return float(fill_value)


def invert3(m: Tensor) -> Tensor:
    """Inverses of a batch of 3x3 matrices by the adjugate, element by element.

    Written out (no LAPACK call) so that a matrix's inverse does not depend on the
    batch it sits in.

    Shape:
        m: (N, 3, 3) float64; returns (N, 3, 3).
    """
    a, b, c = m[:, 0, 0], m[:, 0, 1], m[:, 0, 2]
    d, e, f = m[:, 1, 0], m[:, 1, 1], m[:, 1, 2]
    g, h, i = m[:, 2, 0], m[:, 2, 1], m[:, 2, 2]
    co = torch.stack(
        [
            torch.stack([e * i - f * h, c * h - b * i, b * f - c * e], dim=1),
            torch.stack([f * g - d * i, a * i - c * g, c * d - a * f], dim=1),
            torch.stack([d * h - e * g, b * g - a * h, a * e - b * d], dim=1),
        ],
        dim=1,
    )
    det = a * co[:, 0, 0] + b * co[:, 1, 0] + c * co[:, 2, 0]
    return co / det[:, None, None]


def _about_centre(linear: Tensor, size: tuple[int, int]) -> Tensor:
    """``T(c) @ linear @ T(-c)`` with c the image centre (W / 2, H / 2), written out element by element.

    Shape:
        linear: (N, 3, 3) float64; returns (N, 3, 3).
    """
    h, w = size
    cx, cy = w / 2, h / 2
    m = linear.clone()
    m[:, :, 2] = linear[:, :, 2] - cx * linear[:, :, 0] - cy * linear[:, :, 1]  # @ T(-c)
    out = m.clone()
    out[:, 0] = m[:, 0] + cx * m[:, 2]  # T(c) @
    out[:, 1] = m[:, 1] + cy * m[:, 2]
    return out


class CameraShift(ImageStressor):
    """Base of the camera-shift stressors: one homography per sample (module docstring).

    Subclasses implement :meth:`homography` from their drawn parameters.

    Args:
        fill: ``"constant"`` (default) or ``"reflect"``: what is seen where the
            shifted frame leaves the image.
        fill_value: the colour of ``fill: constant``, a number in [0, 1]
            (default 0.0, black); not allowed with ``reflect``.
        severities: subset of 1..5 to run.

    Raises:
        StressorError: unknown ``fill``, a ``fill_value`` outside [0, 1] or given
            with ``reflect``, or bad ``severities``; the message names the option.
    """

    moves_pixels: ClassVar[bool] = True
    fractional_severities: ClassVar[bool] = True

    def __init__(
        self, *, fill: str = "constant", fill_value: float | None = None, severities: Sequence[int] | None = None
    ) -> None:
        super().__init__(severities=severities)
        self.fill_value = _check_fill(self.name, fill, fill_value)
        self.fill = fill

    @property
    def options(self) -> dict[str, Any]:
        fill: dict[str, Any] = {"fill": self.fill}
        if self.fill_value is not None:
            fill["fill_value"] = self.fill_value
        return {**fill, **super().options}

    #: per severity 1..5, the magnitude of the shift (degrees, fraction, factor)
    magnitudes: ClassVar[tuple[float, ...]] = ()

    def sample_params(self, sample_ids: Tensor, severity: float, *, seed: int, **kwargs: Any) -> Params:
        """As :meth:`ImageStressor.sample_params`; the direction is drawn once per sample, for every severity.

        The magnitude comes from the severity (interpolated when fractional); the
        direction (sign, heading, axis, in or out) is keyed by (seed, stressor name,
        sample id) alone, so a sample turns, moves or tilts the same way at every
        severity and only the magnitude grows with it.
        """
        params = super().sample_params(sample_ids, severity, seed=seed, **kwargs)
        draws = uniform(per_sample_seeds(sample_ids, seed=seed, name=self.name, severity=0), 2, stream=1)
        values = self._orient(params.values["magnitude"], draws)
        return Params(severity=params.severity, values=values, seeds=params.seeds)

    def _sample(self, seeds: list[int], severity: float) -> dict[str, Tensor]:
        return {
            "magnitude": torch.full(
                (len(seeds),), float(interpolate_level(self.magnitudes, severity)), dtype=torch.float64
            )
        }

    def _orient(self, magnitude: Tensor, draws: Tensor) -> dict[str, Tensor]:  # pragma: no cover - abstract
        """The recorded parameters from the magnitudes (N,) and two uniform draws per sample (N, 2)."""
        raise NotImplementedError

    def homography(self, params: Params, size: tuple[int, int]) -> Tensor:  # pragma: no cover - abstract
        """Per sample, the 3x3 map from input positions to output positions (float64, CPU).

        Args:
            params: drawn by :meth:`sample_params`.
            size: the images' ``(H, W)``.

        Shape:
            returns (N, 3, 3) float64, in the continuous pixel frame.
        """
        raise NotImplementedError

    def map_points(self, points: Tensor, params: Params, size: tuple[int, int]) -> Tensor:
        """Where input points land in the output: the same homography the pixels go through.

        Shape:
            points: (N, P, 2) (x, y) in the input's continuous pixel frame; returns (N, P, 2) float64.
        """
        m = self.homography(params, size)
        p = points.to(torch.float64)
        x, y = p[..., 0], p[..., 1]
        den = m[:, 2, 0, None] * x + m[:, 2, 1, None] * y + m[:, 2, 2, None]
        ox = (m[:, 0, 0, None] * x + m[:, 0, 1, None] * y + m[:, 0, 2, None]) / den
        oy = (m[:, 1, 0, None] * x + m[:, 1, 1, None] * y + m[:, 1, 2, None]) / den
        return torch.stack([ox, oy], dim=-1)

    def sampling_grid(self, params: Params, size: tuple[int, int], device: torch.device) -> Tensor:
        """The ``grid_sample`` grid: for each output pixel centre, its source in normalised input coordinates.

        The inverse homography is folded with the normalisation ``x -> 2 x / W - 1``
        in float64 on the CPU, then evaluated in float32 on ``device``, element by
        element (a sample's grid does not depend on its batch).

        Shape:
            returns (N, H, W, 2) float32.
        """
        h, w = size
        inv = invert3(self.homography(params, size))
        # normalise the source position: rows 0 and 1 scaled, minus the (homogeneous) row 2
        rows = torch.stack([inv[:, 0] * (2.0 / w) - inv[:, 2], inv[:, 1] * (2.0 / h) - inv[:, 2], inv[:, 2]], dim=1)
        m = rows.to(device=device, dtype=torch.float32)
        xs = torch.arange(w, device=device, dtype=torch.float32) + 0.5  # output pixel centres
        ys = torch.arange(h, device=device, dtype=torch.float32) + 0.5
        # one broadcast add writes the grid: m_k0 x (over columns) + (m_k1 y + m_k2) (over rows), k = 0, 1
        across = xs[None, :, None] * m[:, None, :2, 0]  # (N, W, 2)
        down = ys[None, :, None] * m[:, None, :2, 1] + m[:, None, :2, 2]  # (N, H, 2)
        grid = across[:, None] + down[:, :, None]  # (N, H, W, 2)
        if bool((m[:, 2, :2] != 0).any()) or bool((m[:, 2, 2] != 1).any()):  # a true homography
            den = xs[None, None, :] * m[:, 2, 0, None, None] + (
                ys[None, :, None] * m[:, 2, 1, None, None] + m[:, 2, 2, None, None]
            )
            grid.div_(den[..., None])
        return grid

    def _apply(self, images: Tensor, params: Params) -> Tensor:
        n, _, h, w = images.shape
        if n == 0:
            return images.clone()
        grid = self.sampling_grid(params, (h, w), images.device)
        if self.fill == "reflect":
            return F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        v = float(self.fill_value or 0.0)
        if v == 0.0:
            return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        # zeros padding of (x - v), plus v: outside taps weigh v, exactly a constant border of colour v
        out = F.grid_sample(images - v, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return out.add_(v)


class Rotation(CameraShift):
    """A camera rolled about its optical axis: the image rotated about its centre.

    Severity 1..5 rotates by 5, 10, 15, 25, 35 degrees, clockwise or
    counter-clockwise (equally likely, drawn per sample). Positive angles are
    counter-clockwise on screen (as ``cv2.getRotationMatrix2D``). The frame
    keeps its size; its corners show the fill (see ``fill``). The sign is drawn once per
    sample (the same at every severity); fractional severities interpolate the
    angle (2.5: 12.5 degrees).

    Args: see :class:`CameraShift`.
    """

    name = "rotation"
    severity_meaning = {
        i + 1: f"rotated by {a:g} degrees about the centre, sign random" for i, a in enumerate(ROTATION_DEG)
    }

    magnitudes = ROTATION_DEG

    def _orient(self, magnitude: Tensor, draws: Tensor) -> dict[str, Tensor]:
        sign = torch.where(draws[:, 0] < 0.5, -1.0, 1.0).to(torch.float64)
        return {"angle_deg": sign * magnitude}

    def homography(self, params: Params, size: tuple[int, int]) -> Tensor:
        a = torch.deg2rad(params["angle_deg"].to(torch.float64))
        c, s = torch.cos(a), torch.sin(a)
        m = torch.zeros((a.shape[0], 3, 3), dtype=torch.float64)
        m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1], m[:, 2, 2] = c, s, -s, c, 1.0
        return _about_centre(m, size)


class Translation(CameraShift):
    """A camera panned sideways: the image shifted by a fraction of the frame.

    Severity 1..5 shifts by 5, 10, 15, 20, 30 % of the frame along a heading
    drawn per sample uniformly in [0, 360) degrees: the shift is
    ``(f W cos t, f H sin t)`` pixels for a frame of W x H, so a horizontal shift
    moves by f of the width and a vertical one by f of the height. The uncovered
    band shows the fill. The heading is drawn once per sample (the same at
    every severity); fractional severities interpolate f.

    Args: see :class:`CameraShift`.
    """

    name = "translation"
    severity_meaning = {
        i + 1: f"shifted by {100 * f:g}% of the frame, heading random" for i, f in enumerate(TRANSLATION_FRACTION)
    }

    magnitudes = TRANSLATION_FRACTION

    def _orient(self, magnitude: Tensor, draws: Tensor) -> dict[str, Tensor]:
        heading = draws[:, 0] * (2 * math.pi)
        return {"shift_x": magnitude * torch.cos(heading), "shift_y": magnitude * torch.sin(heading)}

    def homography(self, params: Params, size: tuple[int, int]) -> Tensor:
        h, w = size
        n = params["shift_x"].shape[0]
        m = torch.eye(3, dtype=torch.float64).repeat(n, 1, 1)
        m[:, 0, 2] = params["shift_x"].to(torch.float64) * w
        m[:, 1, 2] = params["shift_y"].to(torch.float64) * h
        return m


class Zoom(CameraShift):
    """A camera moved closer or further (or zoomed): the image scaled about its centre.

    Severity 1..5 has a zoom factor of 1.1, 1.2, 1.35, 1.5, 1.75: zooming in
    magnifies by the factor (the border of the scene leaves the frame), zooming
    out shrinks by it (1 / factor; the fill surrounds the smaller image).
    ``direction`` chooses: ``"both"`` (default; in or out equally likely, drawn
    once per sample, the same at every severity), ``"in"`` or ``"out"``.
    Fractional severities interpolate the factor.

    Args:
        direction: ``"both"``, ``"in"`` or ``"out"``.
        fill, fill_value, severities: see :class:`CameraShift`.

    Raises:
        StressorError: unknown ``direction`` (and see :class:`CameraShift`).
    """

    name = "zoom"
    severity_meaning = {
        i + 1: f"zoom factor {z:g}: magnified x{z:g} (in) or shrunk x{1 / z:.3g} (out), about the centre"
        for i, z in enumerate(ZOOM_FACTOR)
    }

    def __init__(
        self,
        *,
        direction: str = "both",
        fill: str = "constant",
        fill_value: float | None = None,
        severities: Sequence[int] | None = None,
    ) -> None:
        super().__init__(fill=fill, fill_value=fill_value, severities=severities)
        if direction not in ZOOM_DIRECTIONS:
            raise StressorError(f"zoom: option 'direction' must be one of {list(ZOOM_DIRECTIONS)}, got {direction!r}")
        self.direction = direction

    @property
    def options(self) -> dict[str, Any]:
        return {"direction": self.direction, **super().options}

    magnitudes = ZOOM_FACTOR

    def _orient(self, magnitude: Tensor, draws: Tensor) -> dict[str, Tensor]:
        if self.direction == "both":
            zoom_in = draws[:, 0] < 0.5
        else:
            zoom_in = torch.full(magnitude.shape, self.direction == "in")
        return {"scale": torch.where(zoom_in, magnitude, 1.0 / magnitude)}

    def homography(self, params: Params, size: tuple[int, int]) -> Tensor:
        s = params["scale"].to(torch.float64)
        m = torch.zeros((s.shape[0], 3, 3), dtype=torch.float64)
        m[:, 0, 0], m[:, 1, 1], m[:, 2, 2] = s, s, 1.0
        return _about_centre(m, size)


class Perspective(CameraShift):
    """The scene seen obliquely: a virtual camera orbiting the image's centre.

    The image is taken as a flat scene at the focal distance of a pinhole camera
    whose focal length is the image's longer side in pixels (a field of view of
    53 degrees across the longer side, a "normal" lens). The camera turns by the
    tilt angle about a horizontal axis (looking from above or below) or a vertical
    axis (from the left or right) through the scene's centre, still aimed at it;
    equivalently the scene plane is tilted by that angle. Severity 1..5 tilts by
    10, 20, 30, 40, 50 degrees. The centre
    stays put, the near side grows, the far side shrinks (keystone), and the
    part of the frame the scene no longer covers shows the fill. With a
    vertical axis and a focal length f, a point at (u, v) from the centre lands at
    ``(f u cos t, f v) / (f - u sin t)``. Axis and sign are drawn once per
    sample (the same at every severity); fractional severities interpolate the angle.

    Args: see :class:`CameraShift`.
    """

    name = "perspective"
    severity_meaning = {
        i + 1: f"scene tilted by {a:g} degrees about a horizontal or vertical axis (random), "
        "focal length = the longer side"
        for i, a in enumerate(PERSPECTIVE_DEG)
    }

    magnitudes = PERSPECTIVE_DEG

    def _orient(self, magnitude: Tensor, draws: Tensor) -> dict[str, Tensor]:
        sign = torch.where(draws[:, 1] < 0.5, -1.0, 1.0).to(torch.float64)
        # axis 0: vertical (the left or right side comes closer), 1: horizontal (top or bottom)
        return {"axis": (draws[:, 0] < 0.5).to(torch.int64), "angle_deg": sign * magnitude}

    def homography(self, params: Params, size: tuple[int, int]) -> Tensor:
        f = float(max(size))
        a = torch.deg2rad(params["angle_deg"].to(torch.float64))
        c, s = torch.cos(a), torch.sin(a)
        horizontal = params["axis"].to(torch.bool)
        n = a.shape[0]
        m = torch.zeros((n, 3, 3), dtype=torch.float64)
        one = torch.ones_like(c)
        # vertical axis: x' = f u cos / (f - u sin), y' = f v / (f - u sin); horizontal: u and v swap roles
        m[:, 0, 0] = torch.where(horizontal, one, c)
        m[:, 1, 1] = torch.where(horizontal, c, one)
        m[:, 2, 0] = torch.where(horizontal, 0.0, -s / f)
        m[:, 2, 1] = torch.where(horizontal, -s / f, 0.0)
        m[:, 2, 2] = 1.0
        return _about_centre(m, size)
