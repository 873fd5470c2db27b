"""Training augmentation from an audit's recipe (``cvaudit recipe``), in torch and Albumentations.

::

    from stressors.recipe import load

    augment = load("recipe.yaml")          # a torch.nn.Module
    x = augment(x)                         # (C, H, W) or (N, C, H, W) float in [0, 1], any device
    aug = augment.albumentations()         # an albumentations ImageOnlyTransform (HWC uint8)
    pipeline = A.Compose([A.HorizontalFlip(), aug])

Each image is augmented with probability ``probability``: one stressor is
drawn with the recipe's weights, then a severity uniformly in its range
(continuous for stressors with fractional severities, else one of the integer
levels in the range). Every random draw comes from the training pipeline: the
torch module draws from ``generator`` (default: torch's global generator,
which a DataLoader seeds per worker), the Albumentations transform from the
generator ``A.Compose(..., seed=...)`` gives it; the stressor's own random
layout is keyed by a seed drawn the same way, never by the audit's per-sample keys.

Detectors (a recipe with a ``detection`` section, written by ``cvaudit recipe`` from a
detection run)::

    augment = load("recipe.yaml")
    out = augment.with_boxes(images, boxes)   # images (N, C, H, W); boxes: N tensors (K_i, 4) xyxy pixels
    out.images, out.boxes, out.kept            # kept[i]: which input boxes survived (filter labels with it)
    pipeline = augment.albumentations_pipeline(seed=0)   # A.Compose with A.BboxParams
    y = pipeline(image=hwc_uint8, bboxes=xyxy_pixels, labels=labels)

``with_boxes`` stresses each image through :func:`stressors.boxes.stress_with_boxes`: a
photometric stressor leaves the boxes as they are; a geometric one (``moves_pixels``) moves
them with the pixels, clips them to the frame and drops those whose visible share falls below
``min_visibility`` (the recipe's, from the audit). The Albumentations transform is then a
``DualTransform``: it moves the boxes with the stressor's ``transform_boxes`` and leaves the
clipping and the ``min_visibility`` filter to Albumentations' ``BboxParams`` (the same
definition: clipped area over the transformed box's area).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from torch import Tensor, nn

from audit.contract.yaml_loader import load_yaml, read_yaml_file
from stressors.base import StressorError
from stressors.registry import get

__all__ = ["Recipe", "load"]

_MASK = (1 << 62) - 1


class _Entry(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str
    stressor: str
    options: dict[str, Any] = Field(default_factory=dict)
    severity: tuple[float, float]
    fractional: bool = False
    weight: float = Field(gt=0)

    @model_validator(mode="after")
    def _range(self) -> _Entry:
        if self.severity[0] > self.severity[1]:
            raise ValueError("severity must be [low, high] with low <= high")
        return self


class _Detection(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    bbox_format: Literal["pascal_voc"] = "pascal_voc"
    label_fields: list[str] = Field(default_factory=lambda: ["labels"])
    min_visibility: float = Field(ge=0, le=1)


class _RecipeFile(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    version: int
    probability: float = Field(default=0.5, gt=0, le=1)
    stressors: list[_Entry] = Field(min_length=1)
    detection: _Detection | None = None


@dataclass(frozen=True)
class _Choice:
    stressor: Any
    low: float
    high: float
    fractional: bool
    levels: tuple[int, ...]


@dataclass(frozen=True)
class _Draw:
    """What one image gets: a stressor (index), a severity and a seed; ``index`` -1 means unchanged."""

    index: int
    severity: float
    seed: int


class Recipe(nn.Module):
    """The recipe's augmentation as a torch module (see the module docstring).

    Args:
        entries: the parsed recipe stressors.
        probability: share of images augmented.
        detection: the recipe's ``detection`` section (boxes), or None.
        resolve: builds a stressor from its name and options (default: the registry's ``get``).

    Shape:
        (C, H, W) or (N, C, H, W) float in [0, 1]; returns the same shape, dtype and device.
    """

    def __init__(
        self, entries: list[_Entry], probability: float, detection: _Detection | None = None, resolve: Any = get
    ) -> None:
        super().__init__()
        self.probability = probability
        self.detection = detection
        self.names = [e.name for e in entries]
        weights = torch.tensor([e.weight for e in entries], dtype=torch.float64)
        self.register_buffer("weights", weights / weights.sum(), persistent=False)
        self._choices = []
        for e in entries:
            stressor = resolve(e.stressor, **e.options)
            fractional = e.fractional and getattr(stressor, "fractional_severities", False)
            levels = tuple(lv for lv in stressor.severities if e.severity[0] <= lv <= e.severity[1])
            if not fractional and not levels:
                raise StressorError(f"recipe: {e.name}: no integer severity of {e.stressor} in {list(e.severity)}")
            self._choices.append(_Choice(stressor, e.severity[0], e.severity[1], fractional, levels))

    def draw(self, uniforms: Tensor | np.ndarray) -> _Draw:
        """Turn four uniform numbers in [0, 1) into one image's augmentation."""
        u = [float(v) for v in uniforms]
        if u[0] >= self.probability:
            return _Draw(-1, 0.0, 0)
        index = int(torch.searchsorted(self.weights.cpu().cumsum(0), torch.tensor(u[1], dtype=torch.float64)))
        index = min(index, len(self._choices) - 1)
        choice = self._choices[index]
        if choice.fractional:
            severity = choice.low + u[2] * (choice.high - choice.low)
        else:
            severity = float(choice.levels[min(int(u[2] * len(choice.levels)), len(choice.levels) - 1)])
        return _Draw(index, severity, int(u[3] * _MASK))

    def draw_params(self, draw: _Draw, boxes: Tensor | None = None) -> Any:
        """The stressor's parameters for one image's ``draw`` (``boxes`` (K, 4) for a stressor that needs them)."""
        choice = self._choices[draw.index]
        severity = draw.severity if choice.fractional else int(draw.severity)
        extra = {"boxes": [boxes]} if boxes is not None and getattr(choice.stressor, "needs_boxes", False) else {}
        return choice.stressor.sample_params(
            torch.tensor([draw.seed], dtype=torch.int64), severity, seed=0, fractional=choice.fractional, **extra
        )

    def apply_draw(self, image: Tensor, draw: _Draw) -> Tensor:
        """One (C, H, W) image stressed as ``draw`` says."""
        if draw.index < 0:
            return image
        return self._choices[draw.index].stressor.apply(image[None], self.draw_params(draw))[0]

    def with_boxes(
        self,
        images: Tensor,
        boxes: list[Tensor],
        *,
        generator: torch.Generator | None = None,
        min_visibility: float | None = None,
    ) -> Any:
        """Augment a (N, C, H, W) batch and its boxes (N tensors (K_i, 4), xyxy pixels): a
        :class:`stressors.boxes.BoxedBatch` whose ``kept[i]`` says which input boxes of image ``i`` survived
        (its ``measures`` are empty: the images of a batch draw different stressors).

        Each image draws as :meth:`forward` does (four uniforms from ``generator`` per image, the same
        sequence) and is stressed by :func:`stressors.boxes.stress_with_boxes` with ``min_visibility``
        (default: the recipe's ``detection.min_visibility``; 0 for a recipe without one).

        Raises:
            StressorError: boxes that do not fit the batch, a stressor that does not declare how it moves pixels.
        """
        from stressors.boxes import BoxedBatch, check_boxes, check_min_visibility, stress_with_boxes

        if images.ndim != 4:
            raise StressorError(f"recipe: with_boxes takes a (N, C, H, W) batch, got shape {tuple(images.shape)}")
        size = (int(images.shape[-2]), int(images.shape[-1]))
        boxes = check_boxes(boxes, int(images.shape[0]), size, "recipe")
        if min_visibility is None:
            min_visibility = self.detection.min_visibility if self.detection is not None else 0.0
        min_visibility = check_min_visibility(min_visibility, "recipe")
        u = torch.rand((images.shape[0], 4), generator=generator, dtype=torch.float64)
        out_images, out_boxes, kept, visibility = [], [], [], []
        for x, b, row in zip(images, boxes, u):
            draw = self.draw(row)
            if draw.index < 0:
                out_images.append(x)
                out_boxes.append(b)
                kept.append(torch.ones(len(b), dtype=torch.bool))
                visibility.append(torch.ones(len(b), dtype=torch.float64))
                continue
            choice = self._choices[draw.index]
            severity = draw.severity if choice.fractional else int(draw.severity)
            done = stress_with_boxes(
                choice.stressor,
                x[None],
                [b],
                sample_ids=torch.tensor([draw.seed], dtype=torch.int64),
                severity=severity,
                seed=0,
                min_visibility=min_visibility,
                fractional=choice.fractional,
            )
            out_images.append(done.images[0])
            out_boxes.append(done.boxes[0])
            kept.append(done.kept[0])
            visibility.append(done.visibility[0])
        return BoxedBatch(torch.stack(out_images), out_boxes, kept, visibility, {})

    def forward(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Augment a (C, H, W) image or a (N, C, H, W) batch (each image drawn on its own)."""
        single = images.ndim == 3
        batch = images[None] if single else images
        u = torch.rand((batch.shape[0], 4), generator=generator, dtype=torch.float64)
        out = torch.stack([self.apply_draw(x, self.draw(row)) for x, row in zip(batch, u)])
        return out[0] if single else out

    def albumentations(self, p: float = 1.0) -> Any:
        """The same augmentation as an Albumentations ``ImageOnlyTransform`` over HWC uint8 images
        (a recipe with a ``detection`` section: a ``DualTransform`` that moves ``bboxes`` too)."""
        if self.detection is not None:
            from stressors.boxes import box_support

            supports = [box_support(c.stressor) for c in self._choices]  # fails closed for an undeclared plugin
            return _albumentations_box_class()(self, supports, p=p)
        return _albumentations_class()(self, p=p)

    def albumentations_pipeline(self, *before: Any, seed: int | None = None) -> Any:
        """``A.Compose([*before, self.albumentations()], ...)``: for a detection recipe with
        ``bbox_params=A.BboxParams(format="pascal_voc", label_fields=<the recipe's>, min_visibility=<the recipe's>)``."""
        import albumentations as A

        extra: dict[str, Any] = {}
        if self.detection is not None:
            extra["bbox_params"] = A.BboxParams(
                format=self.detection.bbox_format,
                label_fields=list(self.detection.label_fields),
                min_visibility=self.detection.min_visibility,
            )
        return A.Compose([*before, self.albumentations()], seed=seed, **extra)


def _albumentations_class() -> type:
    import albumentations as A

    class RecipeTransform(A.ImageOnlyTransform):
        """An audit recipe over HWC uint8 (or float in [0, 1]) images; draws from the Compose generator."""

        def __init__(self, recipe: Recipe, p: float = 1.0) -> None:
            super().__init__(p=p)
            self.recipe = recipe

        def get_params(self) -> dict[str, Any]:
            return {"draw": self.recipe.draw(self.random_generator.random(4))}

        def apply(self, img: np.ndarray, draw: _Draw | None = None, **params: Any) -> np.ndarray:
            if draw is None or draw.index < 0:
                return img
            uint8 = img.dtype == np.uint8
            x = torch.from_numpy(np.ascontiguousarray(img)).float()
            x = (x / 255.0 if uint8 else x).reshape(img.shape[0], img.shape[1], -1).permute(2, 0, 1)
            y = self.recipe.apply_draw(x, draw).permute(1, 2, 0)
            out = (y * 255.0).round().clamp(0, 255).to(torch.uint8) if uint8 else y
            return out.numpy().reshape(img.shape)

        def get_transform_init_args_names(self) -> tuple[str, ...]:
            return ()

    return RecipeTransform


def _albumentations_box_class() -> type:
    import albumentations as A

    class RecipeBoxTransform(A.DualTransform):
        """An audit recipe over HWC uint8 (or float) images and their boxes; draws from the Compose generator.

        Boxes arrive in Albumentations' normalised xyxy; a geometric stressor moves them with
        ``transform_boxes`` in pixels; Albumentations' ``BboxParams`` clips them and applies ``min_visibility``.
        """

        def __init__(self, recipe: Recipe, supports: list[str], p: float = 1.0) -> None:
            super().__init__(p=p)
            self.recipe = recipe
            self.supports = supports

        def get_params(self) -> dict[str, Any]:
            return {"draw": self.recipe.draw(self.random_generator.random(4))}

        def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
            draw = params["draw"]
            if draw.index < 0:
                return {"stress": None}
            h, w = params["shape"][:2]
            boxes = data.get("bboxes")
            pixels = None
            if boxes is not None:
                arr = np.asarray(boxes, dtype=np.float64).reshape(-1, np.asarray(boxes).shape[-1] if len(boxes) else 4)
                pixels = torch.from_numpy(arr[:, :4] * np.array([w, h, w, h], dtype=np.float64))
            return {"stress": self.recipe.draw_params(draw, pixels)}

        def apply(self, img: np.ndarray, draw: _Draw | None = None, stress: Any = None, **params: Any) -> np.ndarray:
            if draw is None or draw.index < 0:
                return img
            uint8 = img.dtype == np.uint8
            x = torch.from_numpy(np.ascontiguousarray(img)).float()
            x = (x / 255.0 if uint8 else x).reshape(img.shape[0], img.shape[1], -1).permute(2, 0, 1)
            y = self.recipe._choices[draw.index].stressor.apply(x[None], stress)[0].permute(1, 2, 0)
            out = (y * 255.0).round().clamp(0, 255).to(torch.uint8) if uint8 else y
            return out.numpy().reshape(img.shape)

        def apply_to_bboxes(
            self, bboxes: np.ndarray, draw: _Draw | None = None, stress: Any = None, **params: Any
        ) -> np.ndarray:
            if draw is None or draw.index < 0 or self.supports[draw.index] != "geometric" or not len(bboxes):
                return bboxes
            h, w = params["shape"][:2]
            scale = np.array([w, h, w, h], dtype=np.float64)
            pixels = torch.from_numpy(np.asarray(bboxes[:, :4], dtype=np.float64) * scale)
            moved = self.recipe._choices[draw.index].stressor.transform_boxes([pixels], stress, (h, w))[0]
            out = np.array(bboxes, dtype=np.float64, copy=True)
            out[:, :4] = moved.detach().cpu().double().numpy().reshape(-1, 4) / scale
            return out.astype(bboxes.dtype, copy=False)

        def get_transform_init_args_names(self) -> tuple[str, ...]:
            return ()

    return RecipeBoxTransform


def load(path: str | Path) -> Recipe:
    """Read a recipe file written by ``cvaudit recipe``.

    Raises:
        StressorError: the file is missing, not a recipe, or names an unknown stressor or option.
    """
    path = Path(path)
    raw = load_yaml(read_yaml_file(path, what="recipe file", error=StressorError), source=str(path))
    try:
        parsed = _RecipeFile.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise StressorError(f"{path}: {key}: {first['msg']}") from None
    if parsed.version != 1:
        raise StressorError(f"{path}: version: unsupported recipe version {parsed.version} (this cvaudit reads 1)")
    return Recipe(list(parsed.stressors), parsed.probability, parsed.detection)
