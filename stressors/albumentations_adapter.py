"""Any Albumentations transform as a stressor: ``stressors.get("albumentations:RandomSunFlare", params=...)``.

Albumentations works on uint8 HWC numpy arrays on the CPU, one image at a
time. The adapter copies each image to the CPU, quantises it to 8 bits, runs
the transform with a seed drawn for that sample (``transform.set_random_seed``,
which in Albumentations 2 re-seeds the transform's numpy and Python
generators), and copies the result back to the input's device and dtype. The
output of a sample therefore depends only on (seed, name, severity, sample id),
as for the built-in stressors, but it is computed on the CPU: expect it to be
much slower than a built-in on a GPU.

Boxes (object detection, :mod:`stressors.boxes`): an ``ImageOnlyTransform``
(sun flare, noise, colour) is photometric, ``moves_pixels = False``, and leaves
boxes where they are. A ``DualTransform`` (affine, flip, perspective, elastic ...)
is geometric, ``moves_pixels = True``: :meth:`AlbumentationsStressor.transform_boxes`
moves each box with Albumentations' own box code, replaying the sample's seed,
so box and pixels share the same random draws. The draws are replayed on a
3-channel probe image of the image's size (the boxes' stage never sees the
pixels); each call is checked three ways and refused with a
:class:`~stressors.base.StressorError` when one fails: the probe's image with
boxes equals its image without (the draws do not depend on the boxes), the
transform returns exactly one box per input box in order (no splitting,
merging or dropping), and the moved boxes, clipped to the frame, equal those of
``Compose([transform], bbox_params=BboxParams(format="pascal_voc"))`` (what an
Albumentations user gets). The boxes returned are unclipped, so
:func:`~stressors.boxes.stress_with_boxes` measures how much of each left the
frame. A transform that cannot move boxes at all (neither image-only nor dual,
no ``bboxes`` target, or parameters computed from masks or other targets) does
not declare ``moves_pixels`` (it is ``None``) and is refused for detection up
front; :attr:`AlbumentationsStressor.box_refusal` says why.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from stressors.base import ImageStressor, Params, StressorError


class AlbumentationsStressor(ImageStressor):
    """Wraps an Albumentations image transform, with its parameters set per severity.

    Args:
        transform: the class name in the ``albumentations`` namespace, e.g. ``"RandomSunFlare"``.
        params: severity -> keyword arguments of the transform, e.g.
            ``{1: {"src_radius": 40}, 5: {"src_radius": 160}}`` (keys may be
            strings, as read from YAML). Default: one severity, 1, with the
            transform's defaults. ``p`` is always 1.
        severities: subset of the severities in ``params`` to run.

    Raises:
        StressorError: albumentations missing, unknown transform, a transform
            that is not an image transform, unknown or invalid parameters.
    """

    devices = "cpu (images are copied to the CPU and back)"

    def __init__(
        self,
        *,
        transform: str,
        params: Mapping[Any, Mapping[str, Any]] | None = None,
        severities: Sequence[int] | None = None,
    ) -> None:
        self.name = f"albumentations:{transform}"  # type: ignore[misc]
        cls = _transform_class(self.name, transform)
        table = _severity_table(self.name, params)
        self.severity_meaning = {  # type: ignore[misc]
            level: f"{transform}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})"
            for level, kwargs in table.items()
        }
        super().__init__(severities=severities)
        self.transform_name = transform
        self.params = table
        self._transforms = {level: _build(self.name, cls, level, kwargs) for level, kwargs in table.items()}
        self._cls = cls
        #: Why this transform is refused for detection (None when boxes are supported).
        self.box_refusal: str | None = _box_refusal(cls, self._transforms)
        #: False: image-only (photometric); True: dual (geometric); None: refused for detection.
        self.moves_pixels = None if self.box_refusal else _is_dual(cls)  # type: ignore[misc]
        self._box_pipelines: dict[int, tuple[Any, Any]] = {}

    @property
    def options(self) -> dict[str, Any]:
        return {
            "transform": self.transform_name,
            "params": {k: dict(v) for k, v in self.params.items()},
            **super().options,
        }

    def _apply(self, images: Tensor, params: Params) -> Tensor:
        transform = self._transforms[int(params.severity)]
        arrays = (images.detach().to("cpu", torch.float32).clamp(0, 1) * 255 + 0.5).to(torch.uint8)
        arrays = arrays.permute(0, 2, 3, 1).numpy()
        outs = []
        for array, seed in zip(arrays, params.seeds):
            transform.set_random_seed(seed)
            try:
                out = transform(image=np.ascontiguousarray(array))["image"]
            except Exception as exc:  # the user's chosen transform (OpenCV's cv2.error, numpy's errors, ...)
                raise StressorError(f"{self.name}: the transform failed on a {array.shape} image: {exc}") from exc
            out = np.asarray(out)
            if out.ndim == 2:
                out = out[..., None]
            if out.shape != array.shape:
                raise StressorError(f"{self.name}: the transform changed the image shape {array.shape} -> {out.shape}")
            if out.dtype != np.uint8:
                out = np.clip(np.round(out.astype(np.float64) * (255 if out.dtype.kind == "f" else 1)), 0, 255)
            outs.append(torch.from_numpy(np.array(out, dtype=np.uint8)))
        stacked = torch.stack(outs).permute(0, 3, 1, 2).to(torch.float32) / 255.0
        return stacked.to(images.device)

    def transform_boxes(self, boxes: Sequence[Tensor], params: Params, size: tuple[int, int]) -> list[Tensor]:
        """Each box moved as the transform moves the pixels of its sample (see the module docstring).

        Args:
            boxes: per sample, ``(K_i, 4)`` xyxy in pixels of the ``size`` frame.
            params: drawn by :meth:`sample_params` for the same samples (their seeds).
            size: the images' ``(H, W)``.

        Returns:
            per sample, ``(K_i, 4)`` float64 xyxy, unclipped (an image-only transform: unchanged).

        Raises:
            StressorError: a transform refused for detection, or one whose boxes
                cannot be followed exactly for this sample (see the module docstring).
        """
        if self.box_refusal:
            raise StressorError(f"{self.name}: refused for detection: {self.box_refusal}")
        if not self.moves_pixels:
            return [b.detach().to("cpu", torch.float64) for b in boxes]
        if len(boxes) != len(params.seeds):
            raise StressorError(f"{self.name}: {len(boxes)} box lists for params of {len(params.seeds)} samples")
        level = int(params.severity)
        if level not in self._box_pipelines:
            self._box_pipelines[level] = _box_pipeline(self._cls, self.params[level])
        height, width = int(size[0]), int(size[1])
        probe = _probe(height, width)
        return [
            self._move(b.detach().to("cpu", torch.float64), seed, probe, level) for b, seed in zip(boxes, params.seeds)
        ]

    def _move(self, boxes: Tensor, seed: int, probe: np.ndarray, level: int) -> Tensor:
        from albumentations.core.bbox_utils import (
            convert_bboxes_from_albumentations,
            convert_bboxes_to_albumentations,
        )

        k = int(boxes.shape[0])
        if k == 0:
            return boxes.reshape(0, 4)
        height, width = probe.shape[:2]
        shape = {"height": height, "width": width}
        frame = torch.tensor([width, height, width, height], dtype=torch.float64)
        given = torch.minimum(boxes.clamp(min=0.0), frame).numpy()  # within FRAME_TOLERANCE of the frame
        index = np.arange(k, dtype=np.float64)
        transform, (boxed, compose) = self._transforms[level], self._box_pipelines[level]
        try:
            transform.set_random_seed(seed)
            alone = transform(image=probe)["image"]
            boxed.set_random_seed(seed)
            moved = boxed(
                image=probe,
                bboxes=convert_bboxes_to_albumentations(np.c_[given, index], "pascal_voc", shape),
            )
            areas = (given[:, 2] - given[:, 0]) * (given[:, 3] - given[:, 1])
            solid = np.flatnonzero(areas > 0)  # Albumentations refuses zero-area boxes
            boxed.set_random_seed(seed)
            reference = compose(image=probe, bboxes=given[solid], cvaudit_index=solid.tolist())
        except Exception as exc:  # the user's chosen transform (OpenCV, numpy, albumentations' checks)
            raise StressorError(f"{self.name}: the transform failed on boxes of a {probe.shape} image: {exc}") from exc
        if not np.array_equal(np.asarray(moved["image"]), np.asarray(alone)):
            raise StressorError(
                f"{self.name}: refused for detection: its random draws depend on the boxes (the image changes with them)"
            )
        rows = np.asarray(moved["bboxes"], dtype=np.float64).reshape(-1, 5)
        if rows.shape[0] != k or not np.array_equal(rows[:, 4], index):
            raise StressorError(
                f"{self.name}: refused for detection: it splits, merges or drops boxes ({k} in, {rows.shape[0]} out)"
            )
        out = torch.from_numpy(np.asarray(convert_bboxes_from_albumentations(rows[:, :4], "pascal_voc", shape)))
        out = out.to(torch.float64)
        clipped = torch.minimum(out.clamp(min=0.0), frame)
        labels = [int(v) for v in reference["cvaudit_index"]]
        ref = torch.as_tensor(np.asarray(reference["bboxes"], dtype=np.float64).reshape(-1, 4))
        tolerance = 1e-4 * max(height, width) + 1e-3  # Albumentations computes boxes in float32
        dropped = sorted(set(solid.tolist()) - set(labels))
        if (
            len(set(labels)) != len(labels)
            or any(float((clipped[j, 2] - clipped[j, 0]) * (clipped[j, 3] - clipped[j, 1])) > 1e-6 for j in dropped)
            or (labels and float((clipped[labels] - ref).abs().max()) > tolerance)
        ):
            raise StressorError(
                f"{self.name}: refused for detection: its boxes differ from those of Albumentations' own "
                "BboxParams(format='pascal_voc') pipeline"
            )
        return out


def _is_dual(cls: type) -> bool:
    import albumentations as A

    return issubclass(cls, A.DualTransform)


def _box_refusal(cls: type, transforms: Mapping[int, Any]) -> str | None:
    """Why ``cls`` cannot move boxes exactly, or None (image-only, or a dual transform of boxes)."""
    import albumentations as A

    if issubclass(cls, A.ImageOnlyTransform):
        return None
    if not issubclass(cls, A.DualTransform):
        return "it is neither an image-only nor a dual (image and boxes) transform"
    for transform in transforms.values():
        if "bboxes" not in transform.targets:
            return "it does not transform bounding boxes"
        needs = list(transform.targets_as_params)
        if needs:
            return f"its parameters are computed from {needs}, which an image stressor does not have"
    return None


def _box_pipeline(cls: type, kwargs: Mapping[str, Any]) -> tuple[Any, Any]:
    """A fresh instance for the boxes and Albumentations' own pipeline around it (its box processor)."""
    import albumentations as A

    boxed = cls(**{**kwargs, "p": 1.0})
    params = A.BboxParams(format="pascal_voc", label_fields=["cvaudit_index"], min_visibility=0.0, min_area=0.0)
    compose = A.Compose([boxed], bbox_params=params)
    return boxed, compose


def _probe(height: int, width: int) -> np.ndarray:
    """A textured uint8 (H, W, 3) image (integer arithmetic only) on which the box stage replays the draws."""
    i = np.arange(height, dtype=np.int64)[:, None, None]
    j = np.arange(width, dtype=np.int64)[None, :, None]
    c = np.arange(3, dtype=np.int64)[None, None, :]
    return ((i * 37 + j * 11 + c * 101 + i * j) % 251).astype(np.uint8)


def _transform_class(name: str, transform: str) -> type:
    try:
        import albumentations as A
    except ImportError as exc:  # pragma: no cover - albumentations is a dependency
        raise StressorError(f"{name}: albumentations is not installed ({exc})") from exc
    cls = getattr(A, transform, None) if transform.isidentifier() else None
    if not (isinstance(cls, type) and issubclass(cls, A.BasicTransform)):
        raise StressorError(f"{name}: option 'transform': albumentations has no transform named {transform!r}")
    return cls


def _severity_table(name: str, params: Mapping[Any, Mapping[str, Any]] | None) -> dict[int, dict[str, Any]]:
    if params is None:
        return {1: {}}
    if not isinstance(params, Mapping) or not params:
        raise StressorError(f"{name}: option 'params' must map severities to keyword arguments, got {params!r}")
    table: dict[int, dict[str, Any]] = {}
    for key, kwargs in params.items():
        try:
            level = int(key)
        except (TypeError, ValueError):
            level = 0
        if isinstance(key, bool) or level < 1 or str(level) != str(key).strip():
            raise StressorError(f"{name}: option 'params' has severity {key!r}; severities are positive integers")
        if not isinstance(kwargs, Mapping):
            raise StressorError(f"{name}: option 'params' at severity {level} must be a mapping, got {kwargs!r}")
        table[level] = dict(kwargs)
    return dict(sorted(table.items()))


def _build(name: str, cls: type, level: int, kwargs: dict[str, Any]) -> Any:
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "p", "always_apply"}
    for key in kwargs:
        if key not in accepted:
            raise StressorError(
                f"{name}: option 'params' at severity {level}: unknown parameter {key!r}; accepted: {sorted(accepted)}"
            )
    try:
        return cls(**{**kwargs, "p": 1.0})
    except (ValueError, TypeError) as exc:  # albumentations validates its arguments (pydantic) into a ValueError
        raise StressorError(f"{name}: option 'params' at severity {level}: {exc}") from exc
