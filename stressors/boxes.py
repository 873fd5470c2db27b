"""Boxes through stressors: an object detector's ground truth stressed with its image.

A stressor states what it does to boxes (see :mod:`stressors.base`): a photometric
stressor (``moves_pixels = False``) leaves them where they are; a geometric one
(``moves_pixels = True``) moves them as it moves the pixels
(:meth:`~stressors.base.ImageStressor.transform_boxes`). :func:`stress_with_boxes`
stresses a batch and its boxes together, then, as Albumentations' ``BboxParams`` does,
clips every moved box to the frame and drops a box whose visible fraction

    visibility = area(moved box clipped to the frame) / area(moved box)

falls below ``min_visibility`` (a box entirely outside the frame is always dropped).
The result records, per input box, whether it was kept and its visibility, so a
detection audit counts the objects a camera shift pushed out of view.

Boxes are float ``(K, 4)`` tensors, xyxy, in the continuous pixel frame of their
image: x in [0, W], y in [0, H], pixel column i covering [i, i + 1).

A stressor that does not declare ``moves_pixels`` (a third-party plugin written for
classifiers) is refused by :func:`box_support`: its effect on boxes is unknown, and a
detection audit that guessed would score a misplaced truth.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from stressors.base import ImageStressor, StressorError

__all__ = [
    "BoxedBatch",
    "box_support",
    "check_boxes",
    "check_min_visibility",
    "clip_boxes",
    "stress_with_boxes",
]

#: How far (in pixels) an input box may reach outside its frame (float rounding of a resize).
FRAME_TOLERANCE = 1e-3


@dataclass(frozen=True)
class BoxedBatch:
    """A stressed batch with its boxes.

    Attributes:
        images: the stressed images, as :meth:`apply` returns them.
        boxes: per image, the kept boxes, moved and clipped to the frame, ``(K_i', 4)`` float64.
        kept: per image, ``(K_i,)`` bool: input box j survived (visible and visibility >= min_visibility).
        visibility: per image, ``(K_i,)`` float64: area of the moved box inside the frame / its area
            (1 for a photometric stressor; 0 for a box moved out of view).
        measures: name -> per image, ``(K_i,)`` float64 per INPUT box (the stressor's
            :meth:`~stressors.base.ImageStressor.object_measures`, e.g. ``occluded_fraction``).
        area_scale: per image, ``(K_i,)`` float64 per INPUT box: how much the stressor scaled the area of
            what the box holds, before clipping (1 for a photometric stressor and for a rotation or a
            translation; the square of the factor for a zoom). For a stressor with ``map_points`` it is
            the area of the quadrilateral its four corners map to over the box's area (exact for affine
            maps and homographies), not the growth of the axis-aligned hull; for one that overrides
            ``transform_boxes`` only, the growth of the moved box.
    """

    images: Tensor
    boxes: list[Tensor]
    kept: list[Tensor]
    visibility: list[Tensor]
    measures: dict[str, list[Tensor]] = field(default_factory=dict)
    area_scale: list[Tensor] = field(default_factory=list)

    @property
    def dropped(self) -> int:
        """How many input boxes were dropped (moved out of view or below ``min_visibility``)."""
        return int(sum(int((~k).sum()) for k in self.kept))


def _name(stressor: Any) -> str:
    return str(getattr(stressor, "name", type(stressor).__name__))


def check_min_visibility(value: Any, name: str = "min_visibility") -> float:
    """``value`` as a float, if it is a number in [0, 1].

    Raises:
        StressorError: a bool, a non-number, NaN, or outside [0, 1]; the message names ``name``.
    """
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(float(value))
    if not ok or not 0.0 <= float(value) <= 1.0:
        raise StressorError(f"{name}: min_visibility must be a number in [0, 1], got {value!r}")
    return float(value)


def check_boxes(boxes: Any, n: int, size: tuple[int, int], name: str) -> list[Tensor]:
    """The boxes of a batch of ``n`` images of ``size`` (H, W), as float64 tensors.

    Raises:
        StressorError: not a list of ``n`` tensors; a tensor not ``(K, 4)``; a
            non-finite coordinate; x2 < x1 or y2 < y1; a box outside the frame.
            The message names the stressor, the sample position and the box.
    """
    if isinstance(boxes, Tensor) or not isinstance(boxes, Sequence):
        raise StressorError(
            f"{name}: boxes must be a list with one (K, 4) tensor per image, got {type(boxes).__name__}"
        )
    if len(boxes) != n:
        raise StressorError(f"{name}: {len(boxes)} box lists for a batch of {n} images")
    height, width = size
    out = []
    for i, b in enumerate(boxes):
        if not isinstance(b, Tensor):
            raise StressorError(f"{name}: boxes of image {i} must be a tensor, got {type(b).__name__}")
        if b.ndim != 2 or b.shape[1] != 4:
            raise StressorError(f"{name}: boxes of image {i} must have shape (K, 4), got {tuple(b.shape)}")
        b = b.detach().to("cpu", torch.float64)
        if b.numel():
            if not torch.isfinite(b).all():
                raise StressorError(f"{name}: boxes of image {i} hold a non-finite coordinate")
            bad = (b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1])
            if bad.any():
                j = int(bad.nonzero()[0])
                raise StressorError(f"{name}: box {j} of image {i} has x2 < x1 or y2 < y1: {b[j].tolist()}")
            t = FRAME_TOLERANCE
            outside = (b[:, 0] < -t) | (b[:, 1] < -t) | (b[:, 2] > width + t) | (b[:, 3] > height + t)
            if outside.any():
                j = int(outside.nonzero()[0])
                raise StressorError(
                    f"{name}: box {j} of image {i} lies outside the {width}x{height} frame: {b[j].tolist()}"
                )
        out.append(b)
    return out


def box_support(stressor: Any) -> str:
    """What ``stressor`` does to boxes: ``"invariant"`` (photometric) or ``"geometric"``.

    Raises:
        StressorError: an attack (it needs the model, not :func:`stress_with_boxes`), or a
            stressor that does not declare ``moves_pixels``, or declares it without a way to
            move boxes (``map_points`` or ``transform_boxes``).
    """
    name = _name(stressor)
    if getattr(stressor, "model_aware", False):
        raise StressorError(f"{name}: an attack needs the model; it is not an image stressor with boxes")
    moves = getattr(stressor, "moves_pixels", None)
    refusal = getattr(stressor, "box_refusal", None)
    if refusal:
        raise StressorError(f"{name}: refused for detection: {refusal}")
    if not isinstance(moves, bool):
        raise StressorError(
            f"{name}: does not declare moves_pixels, so what it does to boxes is unknown; a detection audit "
            "needs moves_pixels = False (photometric) or True with map_points (geometric)"
        )
    if moves and not _moves_boxes(stressor):
        raise StressorError(
            f"{name}: moves pixels but implements neither map_points nor transform_boxes to move the boxes with them"
        )
    return "geometric" if moves else "invariant"


def _moves_boxes(stressor: Any) -> bool:
    """The stressor has its own box map: ``transform_boxes`` or ``map_points`` beyond :class:`ImageStressor`'s."""
    if not callable(getattr(stressor, "transform_boxes", None)):
        return False
    if not isinstance(stressor, ImageStressor):
        return True
    cls = type(stressor)
    return cls.transform_boxes is not ImageStressor.transform_boxes or cls.map_points is not ImageStressor.map_points


def _area(b: Tensor) -> Tensor:
    return (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)


def clip_boxes(moved: Tensor, size: tuple[int, int], min_visibility: float) -> tuple[Tensor, Tensor, Tensor]:
    """Clip moved boxes to the frame and decide which are kept.

    Args:
        moved: ``(K, 4)`` float64 boxes after the stressor (possibly outside the frame).
        size: the frame's ``(H, W)``.
        min_visibility: the least visible fraction a kept box has.

    Returns:
        ``(clipped (K, 4), visibility (K,), kept (K,) bool)``. A degenerate box (zero area)
        has visibility 1 when it lies in the frame and 0 otherwise; a box with no part in
        the frame is never kept, even at ``min_visibility`` 0.
    """
    height, width = size
    clipped = moved.clone()
    clipped[:, 0::2] = clipped[:, 0::2].clamp(0.0, float(width))
    clipped[:, 1::2] = clipped[:, 1::2].clamp(0.0, float(height))
    area, inside = _area(moved), _area(clipped)
    degenerate = area <= 0
    in_frame = ((moved[:, 0] >= 0) & (moved[:, 1] >= 0) & (moved[:, 2] <= width) & (moved[:, 3] <= height)).to(
        torch.float64
    )
    visibility = torch.where(degenerate, in_frame, inside / torch.where(degenerate, torch.ones_like(area), area))
    visible = torch.where(degenerate, in_frame > 0, inside > 0)
    kept = visible & (visibility >= min_visibility)
    return clipped, visibility, kept


def stress_with_boxes(
    stressor: Any,
    images: Tensor,
    boxes: Sequence[Tensor],
    *,
    sample_ids: Tensor,
    severity: float,
    seed: int,
    min_visibility: float = 0.0,
    fractional: bool = False,
) -> BoxedBatch:
    """Stress a batch of images and their boxes together (see the module docstring).

    The images are exactly those of ``stressor.apply(images, stressor.sample_params(...))``
    (the classifier path), so a detection audit and a classification audit see the same
    stressed pixels.

    Args:
        stressor: an image stressor (built-in or plugin) declaring ``moves_pixels``.
        images: ``(N, C, H, W)`` float in [0, 1].
        boxes: per image, ``(K_i, 4)`` xyxy in its pixel frame.
        sample_ids: int64 sample keys, ``(N,)`` (:func:`stressors.base.sample_keys`).
        severity: the severity (a fractional one with ``fractional=True``).
        seed: the audit's seed.
        min_visibility: in [0, 1]: a moved box less visible than this is dropped.
        fractional: pass ``fractional=True`` to ``sample_params``.

    Returns:
        a :class:`BoxedBatch`.

    Raises:
        StressorError: an attack or a stressor that does not declare ``moves_pixels``; boxes
            not one ``(K, 4)`` tensor per image, non-finite, inverted or outside the frame;
            ``min_visibility`` outside [0, 1]; a stressor's moved boxes or measures of the
            wrong shape. Each message names the stressor.
    """
    name = _name(stressor)
    support = box_support(stressor)
    if not isinstance(images, Tensor) or images.ndim != 4:
        raise StressorError(f"{name}: images must be a (N, C, H, W) tensor")
    n, _c, height, width = images.shape
    frame = (int(height), int(width))
    checked = check_boxes(boxes, n, frame, name)
    threshold = check_min_visibility(min_visibility, f"{name}: min_visibility")
    kwargs: dict[str, Any] = {"seed": seed}
    if fractional:
        kwargs["fractional"] = True
    if getattr(stressor, "needs_boxes", False):
        kwargs["boxes"] = checked
    params = stressor.sample_params(sample_ids, severity, **kwargs)
    out = stressor.apply(images, params)
    if support == "geometric":
        moved = list(stressor.transform_boxes(checked, params, frame))
        if len(moved) != n or any(
            not isinstance(m, Tensor) or tuple(m.shape) != tuple(b.shape) for m, b in zip(moved, checked)
        ):
            raise StressorError(f"{name}: transform_boxes must return one (K_i, 4) tensor per image, as given")
        moved = [m.detach().to("cpu", torch.float64) for m in moved]
    else:
        moved = checked
    area_scale = _area_scale(stressor, support, checked, moved, params, frame)
    kept_boxes, kept, visibility = [], [], []
    for m in moved:
        clipped, vis, keep = clip_boxes(m, frame, threshold)
        kept_boxes.append(clipped[keep])
        kept.append(keep)
        visibility.append(vis)
    measures_fn = getattr(stressor, "object_measures", None)
    measures = dict(measures_fn(checked, params, frame)) if callable(measures_fn) else {}
    for key, values in measures.items():
        if len(values) != n or any(tuple(v.shape) != (int(b.shape[0]),) for v, b in zip(values, checked)):
            raise StressorError(f"{name}: object measure {key!r} must hold one (K_i,) tensor per image")
    measures = {k: [v.detach().to("cpu", torch.float64) for v in vals] for k, vals in measures.items()}
    return BoxedBatch(
        images=out, boxes=kept_boxes, kept=kept, visibility=visibility, measures=measures, area_scale=area_scale
    )


def _shoelace(points: Tensor) -> Tensor:
    """Areas of quadrilaterals ``(K, 4, 2)`` (corners in order)."""
    x, y = points[..., 0], points[..., 1]
    return 0.5 * (x * y.roll(-1, dims=-1) - x.roll(-1, dims=-1) * y).sum(dim=-1).abs()


def _area_scale(
    stressor: Any, support: str, boxes: list[Tensor], moved: list[Tensor], params: Any, frame: tuple[int, int]
) -> list[Tensor]:
    """Per input box, the factor by which the stressor scaled its area (see :class:`BoxedBatch`)."""
    if support == "invariant":
        return [torch.ones(int(b.shape[0]), dtype=torch.float64) for b in boxes]
    before = [_area(b) for b in boxes]
    cls = type(stressor)
    own_points = (
        isinstance(stressor, ImageStressor)
        and cls.map_points is not ImageStressor.map_points
        and cls.transform_boxes is ImageStressor.transform_boxes
    )
    if own_points:
        counts = [int(b.shape[0]) for b in boxes]
        k_max = max(counts, default=0)
        corners = torch.zeros((len(boxes), 4 * k_max, 2), dtype=torch.float64)
        for i, b in enumerate(boxes):
            if counts[i]:
                x1, y1, x2, y2 = b.unbind(1)
                pts = torch.stack([torch.stack(p, dim=1) for p in ((x1, y1), (x2, y1), (x2, y2), (x1, y2))], dim=1)
                corners[i, : 4 * counts[i]] = pts.reshape(-1, 2)
        mapped = stressor.map_points(corners, params, frame).to(torch.float64)
        after = [_shoelace(mapped[i, : 4 * k].reshape(k, 4, 2)) for i, k in enumerate(counts)]
    else:
        after = [_area(m) for m in moved]
    return [
        torch.where(a > 0, c / torch.where(a > 0, a, torch.ones_like(a)), torch.ones_like(a))
        for a, c in zip(before, after)
    ]
