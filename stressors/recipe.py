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
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from torch import Tensor, nn

from audit.contract.yaml_loader import load_yaml
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


class _RecipeFile(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    version: int
    probability: float = Field(default=0.5, gt=0, le=1)
    stressors: list[_Entry] = Field(min_length=1)


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

    Shape:
        (C, H, W) or (N, C, H, W) float in [0, 1]; returns the same shape, dtype and device.
    """

    def __init__(self, entries: list[_Entry], probability: float) -> None:
        super().__init__()
        self.probability = probability
        self.names = [e.name for e in entries]
        weights = torch.tensor([e.weight for e in entries], dtype=torch.float64)
        self.register_buffer("weights", weights / weights.sum(), persistent=False)
        self._choices = []
        for e in entries:
            stressor = get(e.stressor, **e.options)
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

    def apply_draw(self, image: Tensor, draw: _Draw) -> Tensor:
        """One (C, H, W) image stressed as ``draw`` says."""
        if draw.index < 0:
            return image
        choice = self._choices[draw.index]
        severity = draw.severity if choice.fractional else int(draw.severity)
        params = choice.stressor.sample_params(
            torch.tensor([draw.seed], dtype=torch.int64), severity, seed=0, fractional=choice.fractional
        )
        return choice.stressor.apply(image[None], params)[0]

    def forward(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Augment a (C, H, W) image or a (N, C, H, W) batch (each image drawn on its own)."""
        single = images.ndim == 3
        batch = images[None] if single else images
        u = torch.rand((batch.shape[0], 4), generator=generator, dtype=torch.float64)
        out = torch.stack([self.apply_draw(x, self.draw(row)) for x, row in zip(batch, u)])
        return out[0] if single else out

    def albumentations(self, p: float = 1.0) -> Any:
        """The same augmentation as an Albumentations ``ImageOnlyTransform`` over HWC uint8 images."""
        return _albumentations_class()(self, p=p)


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


def load(path: str | Path) -> Recipe:
    """Read a recipe file written by ``cvaudit recipe``.

    Raises:
        StressorError: the file is missing, not a recipe, or names an unknown stressor or option.
    """
    path = Path(path)
    try:
        raw = load_yaml(path.read_bytes(), source=str(path))
    except FileNotFoundError:
        raise StressorError(f"{path}: recipe file not found") from None
    try:
        parsed = _RecipeFile.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise StressorError(f"{path}: {key}: {first['msg']}") from None
    if parsed.version != 1:
        raise StressorError(f"{path}: version: unsupported recipe version {parsed.version} (this cvaudit reads 1)")
    return Recipe(list(parsed.stressors), parsed.probability)
