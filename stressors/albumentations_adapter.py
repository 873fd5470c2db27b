"""Any Albumentations transform as a stressor: ``stressors.get("albumentations:RandomSunFlare", params=...)``.

Albumentations works on uint8 HWC numpy arrays on the CPU, one image at a
time. The adapter copies each image to the CPU, quantises it to 8 bits, runs
the transform with a seed drawn for that sample (``transform.set_random_seed``,
which in Albumentations 2 re-seeds the transform's numpy and Python
generators), and copies the result back to the input's device and dtype. The
output of a sample therefore depends only on (seed, name, severity, sample id),
as for the built-in stressors, but it is computed on the CPU: expect it to be
much slower than a built-in on a GPU.
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
