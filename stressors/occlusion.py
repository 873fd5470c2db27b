"""Occlusion: one occluder covering a stated fraction of the image, or one per object covering a fraction of its box."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from audit.contract.seeds import derive_seed
from stressors.base import ImageStressor, Params, StressorError, generator, interpolate_level, noise_like, uniform
from stressors.boxes import FRAME_TOLERANCE, check_boxes

#: Fraction of the image area hidden, per severity.
COVERAGE = (0.05, 0.10, 0.20, 0.30, 0.45)
#: Fraction of each object's box area hidden, per severity (``target: objects``).
OBJECT_COVERAGE = (0.10, 0.25, 0.40, 0.60, 0.80)
FILLS = ("black", "noise", "mean")
TARGETS = ("image", "objects")
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

    With ``target="objects"`` (detection) the occluders hide the objects
    instead: per ground-truth box, one axis-aligned rectangle (never an
    ellipse: an ellipse inside a box covers at most pi/4 = 79 % of it) of
    10 %, 25 %, 40 %, 60 %, 80 % of the box's area at severity 1..5, with an
    aspect ratio log-uniform in [0.5, 2] relative to the box's (narrowed so
    that it fits), at a uniform position inside the box. Its draws are keyed
    by (sample seed, object index), so an object's occluder does not depend
    on the batch or on the other objects. The occluder hides the pixels whose
    centre lies in it (half-open ``[x0, x1) x [y0, y1)``), so the hidden
    fraction is the stated one up to pixel rounding (at most about
    ``(w + h + 1) / (w * h)`` of a ``w x h`` px box); :meth:`object_measures`
    reports the fraction actually hidden, neighbours' occluders included.
    This mode needs the boxes: ``sample_params(..., boxes=[(K_i, 4) xyxy
    tensors])`` (:attr:`needs_boxes` is True); boxes do not move.

    Args:
        fill: what the occluder looks like: ``"black"`` (default), ``"noise"``
            (uniform random grey levels per pixel and channel) or ``"mean"``
            (the image's own per-channel mean colour, which hides the content
            without adding an edge-rich dark blob).
        target: ``"image"`` (default: one occluder per image, the classifier
            audit's) or ``"objects"`` (one occluder per ground-truth box).
        severities: subset of 1..5 to run.

    Raises:
        StressorError: unknown ``fill`` or ``target``, or bad ``severities``.
    """

    name = "occlusion"
    fractional_severities = True
    severity_meaning = {
        i + 1: f"{int(c * 100)}% of the image area hidden by one rectangle or ellipse" for i, c in enumerate(COVERAGE)
    }

    #: Occlusion hides pixels where they are: boxes are unchanged.
    moves_pixels: ClassVar[bool] = False

    def __init__(self, *, fill: str = "black", target: str = "image", severities: Sequence[int] | None = None) -> None:
        super().__init__(severities=severities)
        if fill not in FILLS:
            raise StressorError(f"occlusion: option 'fill' must be one of {list(FILLS)}, got {fill!r}")
        if target not in TARGETS:
            raise StressorError(f"occlusion: option 'target' must be one of {list(TARGETS)}, got {target!r}")
        self.fill = fill
        self.target = target
        #: True in ``target: objects``: :meth:`sample_params` needs the batch's boxes.
        self.needs_boxes = target == "objects"
        if self.needs_boxes:
            self.severity_meaning = {  # type: ignore[misc]
                i + 1: f"{round(c * 100)}% of each object's box hidden by one rectangle inside it"
                for i, c in enumerate(OBJECT_COVERAGE)
            }

    @property
    def options(self) -> dict[str, Any]:
        # target: image (the default) is left out, so an image-mode audit records the options it always did
        target = {"target": self.target} if self.target != "image" else {}
        return {"fill": self.fill, **target, **super().options}

    def sample_params(
        self,
        sample_ids: Tensor,
        severity: float,
        *,
        seed: int,
        fractional: bool = False,
        boxes: Sequence[Tensor] | None = None,
    ) -> Params:
        """Draw the occluders (see :meth:`ImageStressor.sample_params`).

        Args:
            boxes: ``target: objects`` only (ignored otherwise): per sample, its
                ground-truth boxes, a ``(K_i, 4)`` xyxy tensor in pixels.

        Returns:
            ``target: image``: per sample ``ellipse``, ``cx``, ``cy``, ``width``,
            ``height`` (fractions of the image). ``target: objects``: an
            :class:`ObjectParams` with ``occluders`` ``(N, Kmax, 4)`` float64 xyxy
            pixels (the rectangle of object k, zero where padded) and ``valid``
            ``(N, Kmax)`` bool; ``record(i)`` lists sample i's own K_i occluders.

        Raises:
            StressorError: as the base class; in ``target: objects`` also no
                boxes, a list not of N boxes tensors, or a malformed box.
        """
        if not self.needs_boxes:
            return super().sample_params(sample_ids, severity, seed=seed, fractional=fractional)
        if boxes is None:
            raise StressorError(
                f"{self.name}: target 'objects' needs the ground-truth boxes: sample_params(..., boxes=[...]) "
                "(only a detection audit has them)"
            )
        checked = boxes
        if isinstance(sample_ids, Tensor) and sample_ids.ndim == 1:  # else the base class names the fault
            checked = check_box_list(boxes, int(sample_ids.shape[0]), self.name)
        params = super().sample_params(sample_ids, severity, seed=seed, fractional=fractional, boxes=checked)
        return ObjectParams(severity=params.severity, values=params.values, seeds=params.seeds)

    def object_measures(
        self, boxes: Sequence[Tensor], params: Params, size: tuple[int, int]
    ) -> dict[str, list[Tensor]]:
        """The fraction of each box's area hidden by the final mask (``target: objects``; else ``{}``).

        Measured, not stated: every occluder of the image counts (a neighbour's
        occluder overlapping a box adds to it), and each pixel counts with the
        area it shares with the box (a box with fractional corners is measured
        exactly). A box of zero width or height is measured along the line of
        pixels it lies on.

        Args:
            boxes: the boxes ``params`` were drawn for (list of N ``(K_i, 4)``).
            params: from :meth:`sample_params` with these boxes.
            size: the images' (H, W).

        Returns:
            ``{"occluded_fraction": [ (K_i,) float64 tensor per image ]}``, in [0, 1].

        Raises:
            StressorError: boxes that do not match ``params``, or an occluder
                outside the frame (boxes outside ``[0, W] x [0, H]``).
        """
        if not self.needs_boxes:
            return {}
        h, w = int(size[0]), int(size[1])
        checked = check_boxes(boxes, len(params.seeds), (h, w), self.name)
        valid = _object_values(params, self.name)[1]
        for i, b in enumerate(checked):
            if b.shape[0] != int(valid[i].sum()):
                raise StressorError(
                    f"{self.name}: sample {i} has {b.shape[0]} boxes, its parameters were drawn for {int(valid[i].sum())}"
                )
        mask = object_occluder_mask(params, h, w, "cpu", name=self.name)[:, 0].to(torch.float64)
        return {"occluded_fraction": [_hidden_fraction(b, m) for b, m in zip(checked, mask)]}

    def _sample_with_boxes(self, seeds: list[int], severity: float, boxes: list[Tensor]) -> dict[str, Tensor]:
        """``target: objects``: one rectangle per box (see the class docstring), padded to the batch's most boxes."""
        return _sample_objects(seeds, severity, check_box_list(boxes, len(seeds), self.name))

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
        if self.needs_boxes:
            mask = object_occluder_mask(params, h, w, images.device, name=self.name)
        else:
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


@dataclass(frozen=True)
class ObjectParams(Params):
    """:class:`Params` of ``target: objects``: per-object tensors padded to the batch's most boxes.

    ``values["valid"]`` (N, Kmax) marks sample i's own objects; :meth:`record`
    keeps only those, so a sample's record does not depend on its batch.
    """

    def record(self, index: int) -> dict[str, Any]:
        valid = self.values["valid"][index]
        out: dict[str, Any] = {"severity": self.severity}
        for key, value in self.values.items():
            if key != "valid":
                out[key] = value[index][valid].tolist()
        return out


def check_box_list(boxes: Any, n: int, name: str) -> list[Tensor]:
    """The boxes of a batch as float64 CPU tensors, if they are N ``(K_i, 4)`` finite xyxy tensors.

    Raises:
        StressorError: one line naming the sample: not a list of N tensors, a
            wrong shape, a non-finite or negative coordinate, or x2 < x1 / y2 < y1.
    """
    if isinstance(boxes, Tensor) or not isinstance(boxes, Sequence):
        raise StressorError(f"{name}: boxes must be a list of N (K, 4) tensors, got {type(boxes).__name__}")
    if len(boxes) != n:
        raise StressorError(f"{name}: boxes hold {len(boxes)} images, the batch holds {n}")
    out = []
    for i, b in enumerate(boxes):
        if not isinstance(b, Tensor) or b.ndim != 2 or b.shape[1] != 4:
            shape = tuple(b.shape) if isinstance(b, Tensor) else type(b).__name__
            raise StressorError(f"{name}: boxes of sample {i} must be a (K, 4) xyxy tensor, got {shape}")
        b = b.detach().to("cpu", torch.float64)
        if not torch.isfinite(b).all():
            raise StressorError(f"{name}: boxes of sample {i} hold a non-finite coordinate")
        if (b < -FRAME_TOLERANCE).any() or (b[:, 2] < b[:, 0]).any() or (b[:, 3] < b[:, 1]).any():
            raise StressorError(f"{name}: boxes of sample {i} must be xyxy with 0 <= x1 <= x2 and 0 <= y1 <= y2")
        out.append(b.clamp(min=0.0))  # a rounding's -1e-6 is the frame's edge
    return out


def _sample_objects(seeds: list[int], severity: float, boxes: list[Tensor]) -> dict[str, Tensor]:
    """One rectangle per box covering ``OBJECT_COVERAGE`` of it, keyed by (sample seed, object index)."""
    coverage = interpolate_level(OBJECT_COVERAGE, severity)
    kmax = max((b.shape[0] for b in boxes), default=0)
    occluders = torch.zeros(len(boxes), kmax, 4, dtype=torch.float64)
    valid = torch.zeros(len(boxes), kmax, dtype=torch.bool)
    lo = math.log(max(coverage, ASPECT_RANGE[0]))
    hi = math.log(min(1.0 / coverage, ASPECT_RANGE[1]))
    for i, (s, b) in enumerate(zip(seeds, boxes)):
        k = b.shape[0]
        if not k:
            continue
        u = torch.stack(
            [torch.rand(3, generator=generator(derive_seed(s, "object", j)), dtype=torch.float64) for j in range(k)]
        )
        aspect = torch.exp(lo + (hi - lo) * u[:, 0])  # width / height, relative to the box's own
        rel_w = torch.sqrt(coverage * aspect).clamp(max=1.0)
        rel_h = (coverage / rel_w).clamp(max=1.0)
        bw, bh = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
        x0 = b[:, 0] + (1 - rel_w) * bw * u[:, 1]
        y0 = b[:, 1] + (1 - rel_h) * bh * u[:, 2]
        x1 = torch.minimum(x0 + rel_w * bw, b[:, 2])
        y1 = torch.minimum(y0 + rel_h * bh, b[:, 3])
        occluders[i, :k] = torch.stack([x0, y0, x1, y1], dim=1)
        valid[i, :k] = True
    return {"occluders": occluders, "valid": valid}


def _object_values(params: Params, name: str) -> tuple[Tensor, Tensor]:
    if "occluders" not in params.values or "valid" not in params.values:
        raise StressorError(f"{name}: target 'objects' needs parameters drawn with boxes (sample_params(..., boxes=))")
    return params["occluders"], params["valid"]


def object_occluder_mask(
    params: Params, height: int, width: int, device: torch.device | str, *, name: str = "occlusion"
) -> Tensor:
    """Boolean masks of the per-object occluders (True = hidden): pixel centres in ``[x0, x1) x [y0, y1)``.

    Raises:
        StressorError: parameters not drawn with boxes, or an occluder outside
            the frame (its box is not in ``[0, W] x [0, H]``).

    Shape:
        returns (N, 1, H, W).
    """
    occ, valid = _object_values(params, name)
    bad = valid & ((occ[..., 2] > width + FRAME_TOLERANCE) | (occ[..., 3] > height + FRAME_TOLERANCE))
    if bad.any():
        i, k = (int(v) for v in bad.nonzero()[0])
        raise StressorError(
            f"{name}: box {k} of sample {i} lies outside the {height}x{width} image "
            "(boxes are xyxy pixels in [0, W] x [0, H])"
        )
    # pixel column c is hidden when x0 <= c + 0.5 < x1, i.e. ceil(x0 - 0.5) <= c < ceil(x1 - 0.5)
    cols = torch.ceil(occ[..., 0::2] - 0.5).clamp(0, width).long()
    rows = torch.ceil(occ[..., 1::2] - 0.5).clamp(0, height).long()
    mask = torch.zeros(occ.shape[0], 1, height, width, dtype=torch.bool)
    for i, k in valid.nonzero().tolist():
        mask[i, 0, rows[i, k, 0] : rows[i, k, 1], cols[i, k, 0] : cols[i, k, 1]] = True
    return mask.to(device)


def _extent(lo: float, hi: float, size: int) -> tuple[int, Tensor]:
    """First pixel and per-pixel lengths of [lo, hi) along one axis; a zero-length extent weighs its pixel 1."""
    if hi <= lo:
        return min(max(math.floor(lo), 0), size - 1), torch.ones(1, dtype=torch.float64)
    first = min(max(math.floor(lo), 0), size - 1)
    last = max(min(math.ceil(hi), size), first + 1)
    j = torch.arange(first, last, dtype=torch.float64)
    return first, (torch.minimum(j + 1, torch.tensor(hi)) - torch.maximum(j, torch.tensor(lo))).clamp(min=0)


def _hidden_fraction(boxes: Tensor, mask: Tensor) -> Tensor:
    """(K,) float64: area of each box hidden by ``mask`` (H, W float64) / the box's area (in the frame)."""
    h, w = mask.shape
    out = torch.zeros(boxes.shape[0], dtype=torch.float64)
    for k, (x1, y1, x2, y2) in enumerate(boxes.tolist()):
        c0, wx = _extent(x1, x2, w)
        r0, wy = _extent(y1, y2, h)
        window = mask[r0 : r0 + wy.shape[0], c0 : c0 + wx.shape[0]]
        total = float(wy.sum()) * float(wx.sum())
        out[k] = float(wy @ window @ wx) / total if total > 0 else 0.0
    return out.clamp(0.0, 1.0)
