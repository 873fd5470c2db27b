"""The stressor contract shared by every built-in and third-party stressor.

A stressor turns a batch of clean images into a batch of stressed images in two
steps, as in kornia and albumentations:

1. ``sample_params(sample_ids, severity, seed=...)`` draws every random quantity
   (positions, angles, noise seeds ...) and returns them as a small
   :class:`Params` object. Randomness is keyed by ``(seed, stressor name,
   severity, sample id)``, never by batch position or the global RNG, so a
   sample is stressed identically whatever the batch size, order or shard.
2. ``apply(images, params)`` is pure and batched: it runs on ``images.device``
   and returns a tensor of the same shape, dtype, device and value range.

Model-aware stressors (adversarial attacks) set ``model_aware = True`` and
implement :meth:`ModelAwareStressor.perturb` instead of ``apply``.

Boxes (object detection, :mod:`stressors.boxes`): a stressor declares what it does to
the boxes of the objects in an image. ``moves_pixels = False`` (the default of
:class:`ImageStressor`): a photometric stressor, boxes unchanged. ``moves_pixels = True``:
a geometric stressor, which implements :meth:`ImageStressor.map_points` (where a point
of the input lands in the output) or overrides :meth:`ImageStressor.transform_boxes`.
A stressor with ``needs_boxes`` true (per instance: occlusion with ``target: objects``)
receives the batch's boxes in ``sample_params(..., boxes=...)``, and
:meth:`ImageStressor.object_measures` reports per-box quantities (the fraction hidden).
Boxes are ``(K, 4)`` float xyxy in the continuous pixel frame of their image (x in
[0, W], y in [0, H]; pixel column i covers [i, i + 1)).

Fractional severities (opt-in): a stressor whose severity is a continuous
physical quantity sets ``fractional_severities = True``; asked with
``sample_params(..., fractional=True)`` it then accepts any severity in
:attr:`ImageStressor.severity_range` (e.g. 2.75), its physical
parameters are interpolated linearly between the neighbouring integer levels
(:func:`interpolate_level`), and its random draws are keyed by the integer
level ``ceil(severity)`` (:func:`seed_level`): within (k, k + 1] the random
layout (noise field, occluder position, source position, angle) is that of
level k + 1 and only the magnitude changes, so a sample's image moves
continuously towards the audited level-(k + 1) image. Integer severities are
unchanged. Without ``fractional=True`` (the audit's conditions) a severity
must be one of the configured levels, and a stressor that does not declare
fractional severities refuses ``fractional=True`` with a :class:`StressorError`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from audit.contract.errors import CvauditError
from audit.contract.seeds import derive_seed, sample_key, stream_seed


class StressorError(CvauditError, ValueError):
    """A stressor was misconfigured or given unusable input.

    The message always names the stressor (and the option, if one is at fault).
    """


@dataclass(frozen=True)
class Params:
    """Per-sample parameters drawn by ``sample_params``.

    Attributes:
        severity: the severity the parameters were drawn for.
        values: tensors whose first dimension is the batch (N, ...), on the CPU.
            They are small (a few numbers per sample) and recordable.
        seeds: one 63-bit integer per sample, for stressors that draw a whole
            noise field inside ``apply`` (see :func:`noise_like`).
    """

    severity: float
    values: dict[str, Tensor] = field(default_factory=dict)
    seeds: tuple[int, ...] = ()

    def __getitem__(self, key: str) -> Tensor:
        return self.values[key]

    def record(self, index: int) -> dict[str, Any]:
        """The parameters of one sample, as plain JSON-serialisable values."""
        out: dict[str, Any] = {"severity": self.severity}
        for key, value in self.values.items():
            item = value[index]
            out[key] = item.tolist() if item.ndim else item.item()
        return out


@runtime_checkable
class Stressor(Protocol):
    """An image-only stressor (see the module docstring for the contract)."""

    name: str
    severities: Sequence[int]
    model_aware: bool

    def sample_params(self, sample_ids: Tensor, severity: float, *, seed: int, fractional: bool = False) -> Params: ...

    def apply(self, images: Tensor, params: Params) -> Tensor: ...


class ModelAwareStressor(Protocol):
    """A stressor that needs the model and the labels (an adversarial attack).

    ``severities`` are the attack's epsilons in pixel units of [0, 1].
    """

    name: str
    severities: Sequence[float]
    model_aware: bool  # always True

    def perturb(
        self,
        model: torch.nn.Module,
        images: Tensor,
        labels: Tensor,
        *,
        severity: float,
        sample_ids: Tensor,
        seed: int,
    ) -> Tensor: ...


# --------------------------------------------------------------------------- keys


def sample_keys(sample_ids: Sequence[str]) -> Tensor:
    """Keys of several sample ids (:func:`audit.contract.seeds.sample_key`) as an int64 tensor of shape (N,)."""
    return torch.tensor([sample_key(s) for s in sample_ids], dtype=torch.int64)


def per_sample_seeds(sample_ids: Tensor, *, seed: int, name: str, severity: float) -> list[int]:
    """One 63-bit seed per sample, keyed by (seed, stressor name, severity, sample id)."""
    return [derive_seed(seed, name, float(severity), int(key)) for key in sample_ids.tolist()]


def generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed`` (never the global RNG)."""
    g = torch.Generator(device="cpu")
    g.manual_seed(seed)
    return g


def uniform(seeds: Sequence[int], *shape: int, stream: int = 0) -> Tensor:
    """Per-sample uniform draws in [0, 1) on the CPU, float64, shape (N, *shape).

    Each sample's row depends only on its seed and ``stream`` (use distinct
    streams for independent quantities).
    """
    rows = [torch.rand(shape, generator=generator(stream_seed(s, stream)), dtype=torch.float64) for s in seeds]
    return torch.stack(rows) if rows else torch.empty((0, *shape), dtype=torch.float64)


def noise_like(images: Tensor, seeds: Sequence[int], *, stream: int = 1) -> Tensor:
    """Standard-normal noise with the shape of ``images``, drawn per sample.

    The field of sample i depends only on ``seeds[i]`` and ``stream``; it is drawn
    on the CPU in float32 (identical on every device) and moved to ``images.device``.
    It uses numpy's PCG64 generator and ziggurat sampler, about four times faster
    on the CPU than ``torch.randn`` with a per-sample ``torch.Generator``.

    Shape:
        images: (N, C, H, W); returns (N, C, H, W) float32 on ``images.device``.
    """
    if len(seeds) != images.shape[0]:
        raise StressorError(f"noise_like: {len(seeds)} seeds for a batch of {images.shape[0]}")
    out = np.empty(tuple(images.shape), dtype=np.float32)
    for i, s in enumerate(seeds):
        rng = np.random.Generator(np.random.PCG64(stream_seed(s, stream)))
        rng.standard_normal(out.shape[1:], dtype=np.float32, out=out[i])
    return torch.from_numpy(out).to(images.device)


# ----------------------------------------------------------------------- validation


def check_images(images: Tensor, name: str) -> None:
    """Raise :class:`StressorError` unless ``images`` is a float (N, C, H, W) tensor in [0, 1]."""
    if not isinstance(images, Tensor):
        raise StressorError(f"{name}: images must be a torch.Tensor, got {type(images).__name__}")
    if images.ndim != 4:
        raise StressorError(f"{name}: images must have shape (N, C, H, W), got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise StressorError(f"{name}: images must be a float tensor in [0, 1], got dtype {images.dtype}")
    if images.numel():
        lo_t, hi_t = torch.aminmax(images.detach())
        lo, hi = float(lo_t), float(hi_t)
        if math.isnan(lo) or math.isnan(hi):
            raise StressorError(f"{name}: images contain NaN")
        if lo < -1e-6 or hi > 1 + 1e-6:
            raise StressorError(f"{name}: images must lie in [0, 1], got values in [{lo:.3g}, {hi:.3g}]")


def check_severity(severity: float, severities: Sequence[float], name: str) -> None:
    """Raise :class:`StressorError` unless ``severity`` is one of ``severities``."""
    if isinstance(severity, bool) or severity not in severities:
        raise StressorError(f"{name}: severity {severity!r} out of range; expected one of {list(severities)}")


def check_fractional_severity(severity: Any, lo: float, hi: float, name: str) -> float:
    """The severity as a float, if it is a finite number in ``[lo, hi]``.

    Raises:
        StressorError: a bool, a non-number, NaN/inf, or outside ``[lo, hi]``.
    """
    ok = not isinstance(severity, bool) and isinstance(severity, (int, float)) and math.isfinite(float(severity))
    if not ok or not lo <= float(severity) <= hi:
        raise StressorError(f"{name}: severity {severity!r} out of range; expected a number in [{lo:g}, {hi:g}]")
    return float(severity)


def seed_level(severity: float) -> int:
    """The integer level whose random draws a (fractional) severity uses: ``ceil(severity)``.

    >>> seed_level(3), seed_level(2.25), seed_level(3.0)
    (3, 3, 3)
    """
    return math.ceil(severity)


def interpolate_level(levels: Sequence[Any], severity: float) -> Any:
    """The per-level value of a 1-based table at a (fractional) severity.

    At an integer severity k it is exactly ``levels[k - 1]``; between k and k + 1
    it is the linear interpolation of the two neighbours. Entries may be numbers
    or tuples of numbers (interpolated element by element).

    >>> interpolate_level((2.0, 3.0, 4.0), 2), interpolate_level((2.0, 3.0, 4.0), 2.25)
    (3.0, 3.25)
    >>> interpolate_level(((1.0, 10.0), (2.0, 20.0)), 1.5)
    (1.5, 15.0)
    """
    s = float(severity)
    if s.is_integer():
        return levels[int(s) - 1]
    k = math.floor(s)
    t = s - k
    a, b = levels[k - 1], levels[k]
    if isinstance(a, tuple):
        return tuple(x + t * (y - x) for x, y in zip(a, b))
    return a + t * (b - a)


class ImageStressor:
    """Convenience base class for image-only stressors: holds settings, checks input.

    Subclasses set ``name``, ``severity_meaning`` (severity -> its physical
    meaning, one line each) and implement ``_sample`` (draw per-sample
    parameters on the CPU from the seeds) and ``_apply`` (pure, float32, on the
    images' device). :meth:`apply` validates the input, computes in float32
    and returns the input's dtype, clamped to [0, 1].

    A subclass whose severity is a continuous physical quantity may set
    ``fractional_severities = True`` (see the module docstring); ``_sample`` and
    ``_apply`` then receive the severity as a float and interpolate their
    per-level tables with :func:`interpolate_level`.

    Args:
        severities: the subset of severities (1..5) to run; default all.

    Raises:
        StressorError: ``severities`` is empty or holds an unknown level.
    """

    name: ClassVar[str] = ""
    severities: Sequence[int] = (1, 2, 3, 4, 5)
    model_aware: ClassVar[bool] = False
    devices: ClassVar[str] = "cpu, cuda"
    #: severity -> what that severity means physically (shown by `cvaudit stressors list`).
    severity_meaning: ClassVar[dict[int, str]] = {}
    #: True when any severity in :attr:`severity_range` (e.g. 2.75) is accepted (opt-in).
    fractional_severities: ClassVar[bool] = False
    #: True for a geometric stressor: pixels move, and boxes follow :meth:`map_points`.
    moves_pixels: ClassVar[bool] = False
    #: True when ``sample_params`` needs the batch's boxes (may be set per instance).
    needs_boxes: bool = False
    #: True when ``_apply`` already returns float32 values in [0, 1] (clamped where they are
    #: computed, e.g. chunk by chunk in the CPU cache): :meth:`apply` then skips its own clamp,
    #: a full extra pass over the batch in memory.
    output_in_range: ClassVar[bool] = False

    def __init__(self, *, severities: Sequence[int] | None = None) -> None:
        levels = tuple(self.severity_meaning) or (1, 2, 3, 4, 5)
        if severities is None:
            self.severities = levels
            return
        if isinstance(severities, (str, bytes)) or not isinstance(severities, Sequence) or not severities:
            raise StressorError(f"{self.name}: option 'severities' must be a non-empty list, got {severities!r}")
        for level in severities:
            if isinstance(level, bool) or level not in levels:
                raise StressorError(
                    f"{self.name}: option 'severities' holds {level!r}; expected a subset of {list(levels)}"
                )
        self.severities = tuple(int(level) for level in severities)

    @property
    def options(self) -> dict[str, Any]:
        """The settings this stressor was built with (recorded in the report)."""
        return {"severities": list(self.severities)}

    @property
    def severity_range(self) -> tuple[int, int]:
        """The lowest and highest level this stressor defines (not only the configured subset)."""
        levels = tuple(self.severity_meaning) or (1, 2, 3, 4, 5)
        return min(levels), max(levels)

    def describe(self) -> dict[str, Any]:
        """Name, severities, their physical meaning, devices and options, JSON-serialisable."""
        return {
            "name": self.name,
            "model_aware": False,
            "severities": list(self.severities),
            "severity_meaning": {str(k): v for k, v in self.severity_meaning.items() if k in self.severities},
            "devices": self.devices,
            "options": self.options,
        }

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"{type(self).__name__}({opts})"

    def sample_params(
        self,
        sample_ids: Tensor,
        severity: float,
        *,
        seed: int,
        fractional: bool = False,
        boxes: Sequence[Tensor] | None = None,
    ) -> Params:
        """Draw every random quantity for these samples at this severity.

        Args:
            sample_ids: int64 sample keys (see :func:`sample_keys`), shape (N,).
            severity: one of ``self.severities``; with ``fractional=True`` (only for a
                stressor with ``fractional_severities``) any number in :attr:`severity_range`.
            seed: the audit's seed.
            fractional: accept a fractional severity (see the module docstring).
            boxes: per sample, its boxes ``(K_i, 4)`` xyxy in pixels; required when
                :attr:`needs_boxes` (then passed to :meth:`_sample_with_boxes`), ignored otherwise.

        Returns:
            a :class:`Params` whose tensors have first dimension N.

        Raises:
            StressorError: severity out of range, fractional severities asked of a
                stressor without them, sample ids not a 1-D integer tensor, or
                boxes missing (or not one list per sample) for a stressor that needs them.
        """
        if fractional and not self.fractional_severities:
            raise StressorError(f"{self.name}: does not support fractional severities (levels {list(self.severities)})")
        if fractional:
            value = check_fractional_severity(severity, *self.severity_range, self.name)
            severity = int(value) if value.is_integer() else value
        else:
            check_severity(severity, self.severities, self.name)
        if not isinstance(sample_ids, Tensor) or sample_ids.ndim != 1 or sample_ids.is_floating_point():
            raise StressorError(
                f"{self.name}: sample_ids must be a 1-D integer tensor (see stressors.base.sample_keys)"
            )
        if self.needs_boxes and (boxes is None or isinstance(boxes, Tensor) or len(boxes) != sample_ids.shape[0]):
            got = "none" if boxes is None else f"{len(boxes)} box lists"
            raise StressorError(
                f"{self.name}: needs the boxes of every sample (one (K, 4) tensor per sample); "
                f"got {got} for {sample_ids.shape[0]} samples"
            )
        level: float = severity if self.fractional_severities else int(severity)
        # a fractional stressor keys its draws by ceil(severity): an integer level gives the same seeds on both paths
        seeds = per_sample_seeds(
            sample_ids,
            seed=seed,
            name=self.name,
            severity=seed_level(severity) if self.fractional_severities else severity,
        )
        if self.needs_boxes:
            assert boxes is not None
            values = self._sample_with_boxes(seeds, level, list(boxes))
        else:
            values = self._sample(seeds, level)
        return Params(severity=severity, values=values, seeds=tuple(seeds))

    def apply(self, images: Tensor, params: Params) -> Tensor:
        """Stress ``images`` with ``params`` (pure: same input, same output).

        Args:
            images: float images in [0, 1] (float16/bfloat16 are computed in float32).
            params: drawn by :meth:`sample_params` for the same samples, in the same order.

        Returns:
            the stressed images: same shape, dtype and device, in [0, 1].

        Shape:
            images: (N, C, H, W); returns (N, C, H, W).

        Raises:
            StressorError: bad images, or params drawn for another batch size.
        """
        check_images(images, self.name)
        if params.seeds and len(params.seeds) != images.shape[0]:
            raise StressorError(
                f"{self.name}: params were drawn for {len(params.seeds)} samples, images hold {images.shape[0]}"
            )
        dtype = images.dtype
        out = self._apply(images.float(), params)
        if not self.output_in_range:
            out = out.clamp_(0.0, 1.0)
        return out.to(dtype)

    def transform_boxes(self, boxes: Sequence[Tensor], params: Params, size: tuple[int, int]) -> list[Tensor]:
        """Where each box lands in the output, unclipped (clipping and dropping: :mod:`stressors.boxes`).

        The default: a photometric stressor (``moves_pixels`` false) returns the boxes
        unchanged; a geometric one maps each box's 4 corners with :meth:`map_points`
        and returns their axis-aligned hull (the exact bounding box of the moved box
        when the map takes lines to lines: affine maps and homographies).

        Args:
            boxes: per sample, ``(K_i, 4)`` float64 xyxy in the input's pixel frame.
            params: drawn by :meth:`sample_params` for the same samples.
            size: the images' ``(H, W)``.

        Returns:
            per sample, ``(K_i, 4)`` float64 xyxy in the output's pixel frame.
        """
        if not self.moves_pixels:
            return [b.to(torch.float64) for b in boxes]
        counts = [int(b.shape[0]) for b in boxes]
        k_max = max(counts, default=0)
        if k_max == 0:
            return [b.to(torch.float64) for b in boxes]
        corners = torch.zeros((len(boxes), 4 * k_max, 2), dtype=torch.float64)
        for i, b in enumerate(boxes):
            if counts[i]:
                b = b.to(torch.float64)
                x1, y1, x2, y2 = b.unbind(1)
                pts = torch.stack(
                    [torch.stack(p, dim=1) for p in ((x1, y1), (x2, y1), (x2, y2), (x1, y2))], dim=1
                )  # (K, 4, 2)
                corners[i, : 4 * counts[i]] = pts.reshape(-1, 2)
        mapped = self.map_points(corners, params, size).to(torch.float64)
        out = []
        for i, k in enumerate(counts):
            pts = mapped[i, : 4 * k].reshape(k, 4, 2)
            lo, hi = pts.amin(dim=1), pts.amax(dim=1)
            out.append(torch.cat([lo, hi], dim=1))
        return out

    def map_points(self, points: Tensor, params: Params, size: tuple[int, int]) -> Tensor:
        """Where points of the input images land in the output (geometric stressors implement it).

        Args:
            points: ``(N, P, 2)`` float64 ``(x, y)`` in the input's continuous pixel frame.
            params: drawn by :meth:`sample_params` for the same samples.
            size: the images' ``(H, W)``.

        Returns:
            ``(N, P, 2)`` float64 positions in the output's pixel frame (possibly outside it).
        """
        if not self.moves_pixels:
            return points
        raise NotImplementedError(f"{self.name}: moves pixels but implements neither map_points nor transform_boxes")

    def object_measures(
        self, boxes: Sequence[Tensor], params: Params, size: tuple[int, int]
    ) -> dict[str, list[Tensor]]:
        """Per-box quantities of this stress, e.g. ``{"occluded_fraction": [(K_i,) float64, ...]}`` (default none)."""
        return {}

    def _sample(self, seeds: list[int], severity: int) -> dict[str, Tensor]:
        return {}

    def _sample_with_boxes(self, seeds: list[int], severity: float, boxes: list[Tensor]) -> dict[str, Tensor]:
        """``_sample`` of a stressor that :attr:`needs_boxes` (per sample, its ``(K_i, 4)`` boxes in pixels)."""
        raise NotImplementedError(f"{self.name}: needs_boxes is set but _sample_with_boxes is not implemented")

    def _apply(self, images: Tensor, params: Params) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError
