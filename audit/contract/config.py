"""The audit configuration (``cvaudit run config.yaml``), parsed by pydantic.

The keys are part of cvaudit's contract (docs/running.md); unknown keys are an error. Paths in the file
are relative to the config file and are resolved by :func:`load_config`.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, field_validator, model_validator

from audit.contract.conditions import parse_severity
from audit.contract.corruption_suite import ALEXNET_ERRORS, CORRUPTIONS, SEVERITIES
from audit.contract.errors import AuditError, echo
from audit.contract.image_properties import PROPERTY_COLUMNS
from audit.contract.intervals import IntervalMethod
from audit.contract.keys import unknown_key_message
from audit.contract.predictions import PREDICTIONS_COLUMNS
from audit.contract.slices import WatchedSlice
from audit.contract.text import valid_text
from audit.contract.yaml_loader import load_yaml, read_yaml_file


class _Strict(BaseModel):
    # use_attribute_docstrings: the string under each field is its description (the configuration reference)
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


#: Resampling filters of ``model.interpolation``; the torch backend has the first three.
INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "lanczos", "box", "hamming")


class ModelConfig(_Strict):
    """How to load the model and prepare its input.

    Give exactly one of ``path`` and ``factory``. Preprocessing (docs/running.md, "Preprocessing"): an
    image is resized (``resize``), then center-cropped to ``input_size``; the ``mean``/``std``
    normalisation happens inside the model wrapper, after the stressors. With ``format: huggingface``
    every preprocessing key left out is taken from the folder's image-processor config.
    """

    path: Path | None = None
    """The model file (TorchScript, a ``torch.export`` program ``.pt2`` or ONNX ``.onnx``), or with
    ``format: huggingface`` a ``save_pretrained`` folder; give this or ``factory``."""
    format: Literal["huggingface"] | None = None
    """``huggingface``: ``path`` is a Hugging Face ``save_pretrained`` folder (extra ``cvaudit[hf]``);
    null: ``path`` is a model file."""
    factory: str | None = None
    """A ``package.module:function`` returning the ``torch.nn.Module`` to audit, looked up in the config's
    folder first, then the working directory and the installed packages; give this or ``path``."""
    weights: Path | None = None
    """A ``state_dict`` file loaded into the module that ``factory`` returns (needs ``factory``); null: the
    module as the factory returns it."""
    outputs: Literal["logits", "probabilities"] = "logits"
    """What the model emits: ``logits``, or ``probabilities`` (each row checked to be finite, non-negative
    and to sum to 1 within 1e-3)."""
    input_size: tuple[PositiveInt, PositiveInt] = (224, 224)
    """``[H, W]`` in pixels: the size the model sees, after the resize and the center crop."""
    resize: PositiveInt | tuple[PositiveInt, PositiveInt] | None = None
    """The resize before the center crop: an int sets the shorter edge in pixels (aspect ratio kept),
    ``[H, W]`` an exact size; null: straight to ``input_size`` (aspect ratio not kept)."""
    interpolation: Literal["bilinear", "bicubic", "nearest", "lanczos", "box", "hamming"] = "bilinear"
    """The resampling filter of the resize; ``lanczos``, ``box`` and ``hamming`` need ``resize_backend: pil``."""
    resize_backend: Literal["torch", "pil"] = "torch"
    """``torch``: the float image is resized with antialiasing (``torch.nn.functional.interpolate``);
    ``pil``: 8-bit images are resized in 8 bits by Pillow, as PIL-based pipelines do."""
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    """The mean subtracted from pixels in [0, 1] inside the model wrapper, after the stressors: one value
    or one per channel (default: ImageNet's)."""
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    """The standard deviation pixels are divided by after ``mean`` is subtracted: one value or one per
    channel (default: ImageNet's)."""
    channels: Literal[1, 3] = 3
    """The channels the model takes: 3 (RGB) or 1 (grayscale; colour images become BT.601 luma)."""
    class_names: list[str] | None = None
    """The names of the model's classes in output order, which labels may use instead of indices; null:
    a Hugging Face folder's ``id2label``, an image folder's sorted folder names, else ``0`` to ``K-1``."""

    @model_validator(mode="after")
    def _one_source(self) -> ModelConfig:
        if (self.path is None) == (self.factory is None):
            raise ValueError("give exactly one of model.path or model.factory")
        if self.format == "huggingface" and self.path is None:
            raise ValueError("model.format huggingface needs model.path (the saved model's folder)")
        if self.resize_backend == "torch" and self.interpolation not in INTERPOLATIONS[:3]:
            raise ValueError(f"model.interpolation {self.interpolation} needs model.resize_backend: pil")
        if self.weights is not None and self.factory is None:
            raise ValueError("model.weights needs model.factory")
        if self.factory is not None and ":" not in self.factory:
            raise ValueError("model.factory must look like 'package.module:function'")
        if len(self.mean) != len(self.std):
            raise ValueError("model.mean and model.std must have the same length")
        if len(self.mean) not in (1, self.channels):
            raise ValueError(f"model.mean and model.std need 1 or {self.channels} values (model.channels)")
        if not all(math.isfinite(v) for v in (*self.mean, *self.std)):
            raise ValueError("model.mean and model.std must be finite numbers")
        if any(s <= 0 for s in self.std):
            raise ValueError("model.std must be positive")
        if self.class_names is not None and len(set(self.class_names)) != len(self.class_names):
            raise ValueError("model.class_names contains a name twice")
        return self

    @field_validator("class_names")
    @classmethod
    def _valid_class_names(cls, value: list[str] | None) -> list[str] | None:
        """Class names as valid UTF-8 text: a lone surrogate becomes its visible escape (:func:`valid_text`)."""
        return None if value is None else [valid_text(name) for name in value]


#: Default ``data.max_image_pixels``: 64 megapixels (e.g. 8000 x 8000, larger than most camera
#: sensors). Decoding one RGB image this size peaks near 2 GB (benchmarks/bench_limits.py), once
#: per DataLoader worker; the 12000 x 12000 RGB image of issue 13 took 4.1 GB.
DEFAULT_MAX_IMAGE_PIXELS = 64_000_000

#: Default ``data.image_formats``: the Pillow formats cvaudit decodes user images with. Any other
#: file (whatever its name says) is "not a readable image": Pillow never tries its other plugins.
DEFAULT_IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF")

#: Formats ``data.image_formats`` refuses, with why: their decoders start a program. Pillow's EPS
#: plugin runs Ghostscript (``gs``, looked up on PATH) to render PostScript; PostScript and PDF are
#: the same interpreter's input. (In Pillow 13 no other opener starts a program.)
REFUSED_IMAGE_FORMATS = {
    "EPS": "Pillow runs Ghostscript (gs) to decode it",
    "PS": "PostScript is rendered by running Ghostscript (gs)",
    "PDF": "PDF is rendered by running a program (Ghostscript)",
}

_FORMAT_ALIASES = {"JPG": "JPEG", "TIF": "TIFF", "POSTSCRIPT": "PS"}


def check_image_formats(value: list[str]) -> list[str]:
    """``data.image_formats`` as Pillow format names (upper case, ``JPG`` -> ``JPEG``, repeats dropped).

    Raises:
        ValueError: one line: no format, a format whose decoder starts a program
            (:data:`REFUSED_IMAGE_FORMATS`), or one Pillow cannot open.
    """
    from PIL import Image

    if not value:
        raise ValueError("give at least one image format, e.g. [PNG, JPEG]")
    Image.init()
    names: list[str] = []
    for given in value:
        name = _FORMAT_ALIASES.get(str(given).strip().upper(), str(given).strip().upper())
        if name in REFUSED_IMAGE_FORMATS:
            raise ValueError(f"{echo(given)} is never decoded: {REFUSED_IMAGE_FORMATS[name]}")
        if name not in Image.OPEN:
            known = ", ".join(sorted(set(Image.OPEN) - set(REFUSED_IMAGE_FORMATS)))
            raise ValueError(f"{echo(given)} is not an image format Pillow can open (one of {known})")
        if name not in names:
            names.append(name)
    return names


class DataConfig(_Strict):
    """Where the images, labels and subgroup attributes come from.

    Give exactly one of ``manifest``, ``images`` and ``npz``. Every image path of a manifest or an
    image folder, once ``..`` and symbolic links are resolved, must lie inside ``root`` unless
    ``allow_outside_root`` is true. ``exif`` and ``alpha`` say how orientation and transparency are
    decoded (:meth:`decoding_for`).
    """

    manifest: Path | None = None
    """A CSV or JSONL file with one row per image: its path (relative to the manifest), its label and
    the attribute columns."""
    images: Path | None = None
    """An ImageFolder tree (one sub-folder of images per class), read instead of a manifest."""
    npz: Path | None = None
    """An ``.npz`` file with the arrays ``images``, ``labels``, optionally ``sample_ids``, and one array per
    attribute, read instead of a manifest."""
    attributes: list[str] = Field(default_factory=list)
    """The subgroup attributes (manifest columns or npz arrays) whose groups are measured and compared; a
    missing value becomes the group ``<missing>``."""
    intersections: list[list[str]] = Field(default_factory=list)
    """Combinations of two or more ``attributes`` whose joint groups are measured too, e.g.
    ``[[camera, ink]]``."""
    on_bad_image: Literal["error", "skip"] = "error"
    """A missing or corrupt image: ``error`` stops the run (exit 2); ``skip`` leaves it out, counted in
    results.json and listed in ``skipped.csv``."""
    id_column: str = "sample_id"
    """The manifest column of sample ids; a manifest without it uses the image path as the id (an error
    when this key is set)."""
    path_column: str = Field(default="path", min_length=1)
    """The manifest column of image paths."""
    label_column: str = Field(default="label", min_length=1)
    """The manifest column of labels (class indices or class names)."""
    allow_duplicate_paths: bool = False
    """true: several manifest rows may name the same image; false: two rows naming one image (after
    ``.``, ``..`` and repeated separators are removed) stop the run, as it would be counted twice."""
    num_workers: int | None = Field(default=None, ge=0)
    """DataLoader worker processes that decode the images; null: chosen from the CPU cores and the image
    size."""
    root: Path | None = None
    """The folder every image must lie inside; null: the manifest's folder, or the image folder."""
    allow_outside_root: bool = False
    """true: images are read anywhere (symbolic links and ``../`` included), not only inside ``root``."""
    max_image_pixels: int = Field(default=DEFAULT_MAX_IMAGE_PIXELS, ge=1)
    """The largest width x height, in pixels, that is decoded (default 64 megapixels); a larger image is a
    bad image (``on_bad_image``), refused before decoding."""
    exif: Literal["apply", "ignore"] | None = None
    """``apply``: each image is turned upright by its EXIF Orientation tag; ``ignore``: the pixels as stored;
    null: ``apply`` for Hugging Face models (as transformers does), ``ignore`` otherwise."""
    alpha: Literal["drop", "composite_white"] | None = None
    """Transparent images: ``drop`` the alpha channel, or ``composite_white`` over white; null: ``drop``
    for Hugging Face models (as transformers does), ``composite_white`` otherwise."""
    image_formats: list[str] = Field(default_factory=lambda: list(DEFAULT_IMAGE_FORMATS))
    """The Pillow formats images are decoded with (default PNG, JPEG, WEBP, BMP, TIFF, GIF), whatever a
    file's name says; a file of another format is a bad image (``on_bad_image``). EPS, PS and PDF are
    refused: decoding them runs Ghostscript."""

    @field_validator("image_formats")
    @classmethod
    def _image_formats(cls, value: list[str]) -> list[str]:
        return check_image_formats(value)

    @model_validator(mode="after")
    def _one_source(self) -> DataConfig:
        given = [k for k in ("manifest", "images", "npz") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of data.manifest, data.images or data.npz")
        if self.path_column == self.label_column:
            raise ValueError(f"data.path_column and data.label_column are both {self.path_column!r}")
        if len(set(self.attributes)) != len(self.attributes):
            raise ValueError("data.attributes names an attribute twice")
        reserved = set(PREDICTIONS_COLUMNS)
        clash = [a for a in self.attributes if a in reserved]
        if clash:
            raise ValueError(f"data.attributes: {clash[0]!r} is a predictions.csv column; rename the attribute")
        seen_combos: set[frozenset[str]] = set()
        for combo in self.intersections:
            if len(set(combo)) != len(combo):
                raise ValueError(f"data.intersections: {combo} names an attribute twice")
            if frozenset(combo) in seen_combos:
                raise ValueError(f"data.intersections: {combo} is listed twice")
            seen_combos.add(frozenset(combo))
            if len(combo) < 2:
                raise ValueError(f"data.intersections: {combo} needs at least two attributes")
            missing = [a for a in combo if a not in self.attributes]
            if missing:
                raise ValueError(f"data.intersections: {missing} not listed in data.attributes")
        return self

    def decoding_for(self, model: ModelConfig) -> DataConfig:
        """This section with ``exif`` and ``alpha`` decided: each one left out as ``model``'s own pipeline decodes.

        A Hugging Face model's pipeline (``transformers.image_utils.load_image``, which its pipelines and an image
        processor given a file path use) applies the EXIF orientation and drops the alpha channel; for other
        models cvaudit decodes as it always has: orientation ignored (as ``Image.open(path).convert("RGB")`` in
        torchvision's and timm's loaders), transparency composited over white.
        """
        hf = model.format == "huggingface"
        exif = self.exif or ("apply" if hf else "ignore")
        alpha = self.alpha or ("drop" if hf else "composite_white")
        return self.model_copy(update={"exif": exif, "alpha": alpha})


def _levels(value: Any) -> Any:
    """Severities and epsilons may be written as fractions (``2/255``), as condition ids may."""
    if isinstance(value, list):
        out = []
        for item in value:
            if isinstance(item, str):
                try:
                    item = parse_severity(item)
                except ValueError:
                    raise ValueError(f"{item!r} is not a number or a fraction such as 2/255") from None
            out.append(item)
        return out
    return value


class StressorConfig(BaseModel):
    """One stressor entry; keys other than ``name``/``severities``/``epsilons`` are its options.

    ``severities`` and ``epsilons`` take numbers or fractions (``8/255``).
    """

    model_config = ConfigDict(extra="allow", frozen=True, use_attribute_docstrings=True)

    name: str
    """The stressor: a registered name (``cvaudit stressors list``) or ``albumentations:<Transform>``."""
    severities: list[float] | None = None
    """The severities to run, as numbers or fractions such as ``8/255``; null: the stressor's own levels."""
    label: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.:-]+$")
    """The name condition ids use (``label@severity``) in place of ``name``, so that one stressor can run
    twice (e.g. two blur kinds); null: ``name``."""

    @model_validator(mode="before")
    @classmethod
    def _fractions(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = {k: (_levels(v) if k in ("severities", "epsilons") else v) for k, v in data.items()}
        return data

    @property
    def options(self) -> dict[str, Any]:
        opts = dict(self.model_extra or {})
        if self.label is not None:
            opts["label"] = self.label
        if self.severities is not None:
            opts["severities"] = [int(s) if float(s).is_integer() else s for s in self.severities]
        return opts


ENGLISH_TAG = re.compile(r"en(-[A-Za-z0-9]{1,8})*")
"""BCP 47 tags of English (``en``, ``en-GB``, ``en-US``...): the language the report text is written in."""


class ReportConfig(_Strict):
    """The report files a run writes and what they may show."""

    formats: list[Literal["html", "pdf"]] = Field(default_factory=lambda: ["html", "pdf"])
    """The report files written: ``html`` for report.html, ``pdf`` for report.pdf."""
    images: Literal["none", "anonymized", "raw"] = "none"
    """The sample images the report may show: ``none``, ``anonymized`` (pixelated) or ``raw``; the policy
    may lower it."""
    sign_key: Path | None = None
    """A key folder made by ``cvaudit keygen``: the PDF is signed and an attestation written; null:
    unsigned."""
    language: str = "en"
    """The BCP 47 language tag declared in report.html and report.pdf for screen readers; English tags
    only (``en``, ``en-GB``, ``en-US``...), as the report text is English."""

    @field_validator("language")
    @classmethod
    def _language(cls, value: str) -> str:
        # The tag is declared in report.html (<html lang>) and report.pdf (/Lang, dc:language), so that a
        # screen reader picks the right voice; declaring another language over English text would mislead it.
        if not ENGLISH_TAG.fullmatch(value):
            raise ValueError(
                f"{value!r} is not available: the report text is written in English only; "
                "use an English language tag such as en, en-GB or en-US"
            )
        return value


class EvaluationConfig(_Strict):
    """Evaluator settings (docs/running.md shows them with their defaults).

    ``interval`` is the method of the intervals of proportions (docs/statistics.md);
    ``early_stop`` evaluates samples in a seeded stratified order and stops each condition as
    soon as every blocking rule on it is decided by an anytime-valid test.
    """

    n_bootstrap: int = Field(default=1000, ge=0)
    """Poisson-bootstrap replicates for the intervals of ECE, Brier, NLL, macro F1 and balanced accuracy
    (and of proportions with ``interval: bootstrap``); 0: no bootstrap."""
    interval: IntervalMethod = "wilson"
    """The interval of proportions (accuracies, top-k accuracy, per-class FNR and FPR): ``wilson``,
    ``clopper-pearson`` or ``bootstrap``."""
    min_group_size: int = Field(default=30, ge=1)
    """The "too small to judge" size in samples: smaller groups are shown but not compared."""
    top_k: int | None = Field(default=None, ge=1)
    """The k of a top-k accuracy reported besides accuracy; null: none."""
    attack_samples: int | None = Field(default=None, ge=1)
    """Attacks run on a seeded subset of this many samples, stratified by group values and class (also
    ``--attack-samples``); null: on every sample."""
    early_stop: bool = False
    """true: each condition stops as soon as every blocking rule on it is decided (one process only);
    false: every sample is evaluated."""
    early_stop_min_samples: int = Field(default=200, ge=1)
    """With ``early_stop``: the samples every condition evaluates before it may stop (a condition no
    blocking rule reads stops there)."""

    @model_validator(mode="after")
    def _bootstrap_interval(self) -> EvaluationConfig:
        if self.interval == "bootstrap" and self.n_bootstrap == 0:
            raise ValueError("evaluation.interval bootstrap needs evaluation.n_bootstrap > 0")
        return self


class MlflowConfig(_Strict):
    """``tracking.mlflow``: log each run to MLflow (the ``cvaudit[mlflow]`` extra)."""

    experiment: str = Field(min_length=1)
    """The MLflow experiment the run is logged to, created when it does not exist (``--mlflow`` overrides
    it)."""
    run_name: str | None = None
    """The name of the MLflow run; null: MLflow names it."""
    tracking_uri: str | None = None
    """The MLflow tracking URI (a plain path is relative to the config file); null:
    ``MLFLOW_TRACKING_URI``, else MLflow's default."""
    timeout_s: int | None = Field(default=None, ge=1, le=600)
    """Whole seconds MLflow's HTTP client waits to connect or for an answer, per attempt; null: the
    environment's ``MLFLOW_HTTP_REQUEST_TIMEOUT``, else 5."""
    max_retries: int | None = Field(default=None, ge=0, le=10)
    """Further attempts after a failed HTTP request; null: ``MLFLOW_HTTP_REQUEST_MAX_RETRIES``, else 1."""


class TrackingConfig(_Strict):
    """Where runs are also recorded besides the output folder."""

    mlflow: MlflowConfig | None = None
    """Log each run to MLflow (section ``tracking.mlflow``); null: not logged."""


class BreakingPointsConfig(_Strict):
    """Refine per-sample breaking points beyond the evaluated levels (``breaking_points:``).

    Image stressors with fractional severities are bisected between the evaluated levels down to
    ``resolution``; ``deepfool`` reports the size of its minimal perturbation; ``pgd``, ``pgd_l2``
    and ``fgsm`` are bisected over ε down to ``epsilon_resolution``.
    """

    stressors: list[str] = Field(default_factory=list)
    """The stressor entries (their label when given) whose breaking points are refined; empty: none."""
    resolution: float = Field(default=0.25, gt=0, le=1)
    """The bisection resolution of image stressors, in severity units (2.75 rather than level 3)."""
    epsilon_resolution: float = Field(default=0.001, gt=0, le=1)
    """The bisection resolution of ``pgd``, ``pgd_l2`` and ``fgsm``, in ε (pixel units of [0, 1])."""
    max_steps: int = Field(default=8, ge=1, le=20)
    """The cost bound: the most extra evaluations (attack runs) of a sample per bisection."""


class BenchmarkConfig(_Strict):
    """A built-in corruption benchmark (``benchmark:``, docs/imagenet-c.md): the suite expands to one
    stressor entry per corruption, ``<corruption>@<severity>`` conditions beside those of ``stressors[]``,
    and results.json gets the benchmark's summary (``imagenet_c``: CE, mCE, relative mCE; mPC, rPC for
    a detector).
    """

    suite: Literal["imagenet-c"] = "imagenet-c"
    """The suite: ``imagenet-c`` (Hendrycks & Dietterich 2019: 15 corruptions plus 4 held-out ones)."""
    corruptions: list[str] | None = None
    """The corruptions run, by stressor name; null: all 19 (the 15 of mCE, then speckle_noise,
    gaussian_blur, spatter and saturate). Each must be a registered stressor of this installation."""
    severities: list[float] = Field(default_factory=lambda: [float(s) for s in SEVERITIES], min_length=1)
    """The severities run for every corruption: ImageNet-C's levels, whole numbers 1-5 (the clean
    condition, 0, is always run); default 1-5."""
    baseline: str = "alexnet"
    """What CE divides by: ``alexnet`` (the published AlexNet errors; severities 1-5 only, no relative
    CE) or the path of a baseline run's results.json (same dataset, same suite conditions), relative to
    the config file."""

    @field_validator("corruptions")
    @classmethod
    def _known(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("name at least one corruption, or leave the key out for all 19")
        for name in value:
            if name not in CORRUPTIONS:
                raise ValueError(f"unknown corruption {echo(name)} (the suite has: {', '.join(CORRUPTIONS)})")
        if len(set(value)) != len(value):
            twice = next(n for n in value if value.count(n) > 1)
            raise ValueError(f"corruption {twice!r} is named twice")
        return value

    @field_validator("severities", mode="before")
    @classmethod
    def _severities(cls, value: Any) -> Any:
        # ImageNet-C defines five levels; the suite's CE sums over them, so only whole levels 1-5 are
        # runs of the benchmark (every corruption's stressor refuses fractions and 0 as suite levels).
        value = _levels(value)
        if isinstance(value, list):
            for item in value:
                if isinstance(item, bool) or not isinstance(item, (int, float)):
                    raise ValueError(f"severity {echo(repr(item))} is not a number (severities are whole levels 1-5)")
                if not 0 <= item <= 5:
                    raise ValueError(f"severity {item:g} is outside 0-5")
                if item == 0:
                    raise ValueError("severity 0 is the clean condition, which the suite always runs; name levels 1-5")
                if not float(item).is_integer():
                    raise ValueError(f"severity {item:g} is not a whole level (ImageNet-C's levels are 1-5)")
            if len(set(value)) != len(value):
                raise ValueError("a severity is named twice")
        return value

    @model_validator(mode="after")
    def _alexnet_levels(self) -> BenchmarkConfig:
        if self.baseline == "alexnet":
            other = [s for s in self.severities if s not in SEVERITIES]
            if other:
                raise ValueError(
                    f"baseline alexnet has published errors at severities 1-5 only, not {other[0]:g} "
                    "(use a baseline run's results.json)"
                )
        return self

    @property
    def names(self) -> list[str]:
        """The corruptions run, in the suite's order."""
        return list(self.corruptions) if self.corruptions is not None else list(CORRUPTIONS)

    @property
    def levels(self) -> list[int | float]:
        """The severities as the stressors take them (integers as integers), ascending."""
        return sorted(int(s) if float(s).is_integer() else s for s in self.severities)

    def stressor_entries(self) -> list[StressorConfig]:
        """One stressor entry per corruption, at :attr:`levels` (its condition ids: ``name@severity``)."""
        return [StressorConfig(name=name, severities=self.levels) for name in self.names]

    @property
    def alexnet(self) -> dict[str, tuple[float, ...]]:
        """The published AlexNet errors of the suite's corruptions (severities 1-5)."""
        return {name: ALEXNET_ERRORS[name] for name in self.names}


class DetectionConfig(_Strict):
    """Object detection (``task: detection``): the ground truth, how the detector's output is read, and the
    operating point (docs/detection.md).

    Give exactly one of ``annotations`` (a COCO instances JSON) and ``yolo`` (a YOLO-format folder). The
    annotations are joined to ``data.manifest`` by image path: the manifest gives the image-level attributes
    (``data.attributes``) and the governance columns, as for classifiers. The detector's class ``k`` is the
    ``k``-th class of the annotations (COCO: by ascending category id; YOLO: ``data.yaml``'s order).
    """

    annotations: Path | None = None
    """A COCO instances JSON: ``images`` (``id``, ``file_name``, ``width``, ``height``), ``annotations``
    (``bbox`` as ``[x, y, w, h]`` pixels, ``category_id``, ``iscrowd``, ``area``) and ``categories``."""
    images_root: Path | None = None
    """The folder the COCO ``file_name`` s are relative to; null: the annotation file's folder."""
    yolo: Path | None = None
    """A YOLO-format folder: ``images/``, ``labels/`` (one ``class cx cy w h`` line per object, normalised)
    and ``data.yaml`` with the class ``names``."""
    object_attributes: list[str] = Field(default_factory=list)
    """Annotation keys kept as object-level subgroups (e.g. ``occluded``, ``truncated``; COCO only), besides
    the size class (small / medium / large by area, as COCO) and the class, which every run has."""
    on_bad_annotation: Literal["error", "skip"] = "error"
    """A bad annotation (a box outside the image or of non-positive size, an unknown category, an image
    missing from the manifest): ``error`` stops the run with one line naming it (exit 2); ``skip`` drops it,
    lists it in skipped.csv and counts it in the report."""
    output: Literal["boxes", "yolo"] = "boxes"
    """What the detector returns: ``boxes`` (decoded detections per image: boxes xyxy in input pixels,
    scores, labels) or ``yolo`` (the Ultralytics export layout ``(B, 4 + C, A)``, decoded with cvaudit's NMS)."""
    resize: Literal["letterbox", "resize"] = "letterbox"
    """How an image is brought to ``model.input_size``: ``letterbox`` (aspect ratio kept, padded with grey
    114, as Ultralytics) or ``resize`` (stretched). Boxes are mapped back to the original pixels exactly."""
    score_threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    """The operating point: detections scoring at least this count for precision, recall, F1, false
    positives and missed objects per image (COCO mAP uses every detection)."""
    iou_threshold: float = Field(default=0.5, gt=0.0, le=1.0)
    """The IoU at which a detection matches an object, at the operating point and for the calibration error."""
    nms_iou_threshold: float = Field(default=0.7, gt=0.0, le=1.0)
    """``output: yolo``: NMS suppresses a box overlapping a kept box of its class by more than this IoU."""
    nms_score_threshold: float = Field(default=0.001, ge=0.0, lt=1.0)
    """``output: yolo``: candidates scoring at most this are dropped before NMS (Ultralytics' validation
    default)."""
    multi_label: bool = False
    """``output: yolo``: an anchor becomes one candidate per class whose score passes (not only its best
    class), as Ultralytics' validation does with ``multi_label``."""
    max_detections: int = Field(default=100, ge=1, le=10_000)
    """The most detections kept per image (the best scores); COCO's AP counts 100."""
    calibration_bins: int = Field(default=10, ge=2, le=100)
    """Equal-width confidence bins of the detection calibration error (D-ECE) and its reliability diagram."""
    min_visibility: float = Field(default=0.3, ge=0.0, le=1.0)
    """A geometric stressor (one that moves pixels: rotation, translation, zoom ...) moves the ground-truth
    boxes with the image; an object whose visible share of its moved box (inside the image) falls below this
    is dropped from that condition's ground truth and counted (``dropped_objects``). 0 keeps every sliver as
    an object to find (Albumentations' default); 1 keeps only objects wholly inside."""

    @model_validator(mode="after")
    def _one_source(self) -> DetectionConfig:
        if (self.annotations is None) == (self.yolo is None):
            raise ValueError("give exactly one of detection.annotations (COCO JSON) or detection.yolo (folder)")
        if self.images_root is not None and self.annotations is None:
            raise ValueError("detection.images_root needs detection.annotations (a YOLO folder holds its images)")
        if self.yolo is not None and self.object_attributes:
            raise ValueError("detection.object_attributes needs detection.annotations (YOLO labels have no keys)")
        if len(set(self.object_attributes)) != len(self.object_attributes):
            raise ValueError("detection.object_attributes names an attribute twice")
        reserved = [a for a in self.object_attributes if a in ("size", "class")]
        if reserved:
            raise ValueError(f"detection.object_attributes: {reserved[0]!r} is built in (object.size, object.class)")
        return self


#: The metrics a slice is measured (and searched) with: the means of a per-sample value of predictions.csv.
SLICE_METRICS = ("accuracy", "brier", "nll")


#: The object columns a watched slice of a detection run can name besides ``object.<key>`` (per
#: ``detection.object_attributes``), ``data.attributes`` and the image properties: objects.csv's class, size class and
#: box geometry, and the derived centre distance (:mod:`audit.evaluation.slices.run_folder`).
DETECTION_OBJECT_COLUMNS = ("class", "size", "area_share", "center_x", "center_y", "center_distance")


class SlicesConfig(_Strict):
    """Slices of the data the run searches for (``search``) and measures (``watch``): docs/slices.md."""

    search: bool = False
    """``on``: at the end of the run, search the clean predictions and the image properties for slices worse than
    the rest of the data (held-out confirmation, family-wise error controlled; docs/slices.md); writes slices.csv
    and the results' ``slice_search``. ``off`` (the default): no search (``cvaudit slices RUN_DIR`` can run it later)."""
    depth: int = Field(default=3, ge=1, le=4)
    """The most predicates (attributes) of one searched slice, 1 to 4."""
    tolerance: float = Field(default=0.0, ge=0.0, le=1.0)
    """How much worse than the rest a slice must be to be reported (in the metric's units), 0 to 1."""
    min_size: int = Field(default=50, ge=2)
    """The fewest samples of a searched slice."""
    metric: Literal["accuracy", "brier", "nll"] = "accuracy"
    """The metric slices are searched and measured with (a mean of a per-sample value of predictions.csv)."""
    condition: str = Field(default="clean", min_length=1)
    """The condition whose predictions the search reads (a condition id of the run, e.g. ``night@3``); the image
    properties are the clean image's. Watched slices are always measured on ``clean``."""
    alpha: float = Field(default=0.05, gt=0.0, lt=1.0)
    """The family-wise error rate of the search's reported slices."""
    protected: list[str] | None = None
    """Protected attributes (of ``data.attributes``): a found slice that names one is marked a fairness finding;
    null: every ``data.attributes`` column (each is measured as a fairness attribute), as ``cvaudit slices``."""
    watch: list[WatchedSlice] = Field(default_factory=list)
    """Slices every run measures on the clean images (``cvaudit slices RUN_DIR --promote N`` prints one): each an
    ``id`` and ``all``, a list of predicates ``{attribute, equals}`` or ``{attribute, min, max}`` (half-open,
    ``min <= x < max``) on ``data.attributes`` or image properties (image_properties.csv); results.json
    ``slices`` holds one entry per id, which a policy rule ``section: slices, entry: <id>`` judges. With ``task:
    detection`` a slice is a set of ground-truth objects (present on the clean images) and may also name the object
    columns (:data:`DETECTION_OBJECT_COLUMNS`, ``object.<key>``); it is measured by recall."""

    @field_validator("watch")
    @classmethod
    def _unique_ids(cls, value: list[WatchedSlice]) -> list[WatchedSlice]:
        seen: set[str] = set()
        for k, entry in enumerate(value):
            if entry.id in seen:
                raise ValueError(f"watch[{k}]: id {entry.id!r} is given twice")
            seen.add(entry.id)
        return value


class AuditConfig(_Strict):
    """The whole ``config.yaml``."""

    task: Literal["classification", "detection"] = "classification"
    """What the model does: ``classification`` (one label per image) or ``detection`` (boxes; needs the
    ``detection`` section and ``data.manifest``)."""
    seed: int = 0
    """The seed of every random draw (stressor and attack randomness per condition and sample id, bootstrap
    replicates, the attack subset, the early-stop order); also ``--seed``."""
    device: str = "auto"
    """Where the model runs: ``auto`` (CUDA when available, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``;
    also ``--device``."""
    batch_size: int = Field(default=64, ge=1)
    """Images per forward pass of the model (also ``--batch-size``); a sample is stressed the same whatever
    the batch size."""
    threads: int | None = Field(default=None, ge=1)
    """torch intra-op threads on the CPU; null: the cores the DataLoader workers leave."""
    allocator: Literal["retain", "system"] | None = None
    """``retain``: while the audit evaluates, glibc's allocator keeps memory freed by a batch for the next
    (``mallopt``; set back on exit, see ``audit.evaluation.allocator``); ``system``: the allocator as it is;
    null: ``cvaudit run`` and ``cvaudit demo`` use retain, and the Python API (``audit.runner.run``) and the
    pytest plugin leave the allocator as it is."""
    model: ModelConfig
    """How the model is loaded and its input prepared (section ``model``)."""
    data: DataConfig
    """Where the images, labels and subgroup attributes come from (section ``data``)."""
    stressors: list[StressorConfig] = Field(default_factory=list)
    """The stressors applied, one entry each (section ``stressors[]``); empty: only the clean condition."""
    policy: str = "ci-gate"
    """The policy that judges the run: a built-in name (``cvaudit policy list``) or the path of a policy
    YAML (``.yaml`` or ``.yml``, relative to the config file)."""
    report: ReportConfig = Field(default_factory=ReportConfig)
    """The report files written and what they may show (section ``report``)."""
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    """How metrics and intervals are computed and which samples are evaluated (section ``evaluation``)."""
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    """Where runs are also recorded besides the output folder (section ``tracking``)."""
    breaking_points: BreakingPointsConfig = Field(default_factory=BreakingPointsConfig)
    """The refinement of per-sample breaking points between the evaluated levels (section
    ``breaking_points``); by default none is refined."""
    detection: DetectionConfig | None = None
    """The ground truth and operating point of a detector (section ``detection``); only with ``task: detection``."""
    benchmark: BenchmarkConfig | None = None
    """A built-in corruption benchmark run beside ``stressors[]`` (section ``benchmark``, docs/imagenet-c.md);
    null: none."""
    slices: SlicesConfig = Field(default_factory=SlicesConfig)
    """The slice search and the watched slices (section ``slices``; with ``task: detection`` only ``watch``, over
    the ground-truth objects)."""

    @property
    def condition_stressors(self) -> list[StressorConfig]:
        """The stressor entries the run evaluates: ``stressors[]``, then the benchmark's corruptions."""
        return list(self.stressors) + (self.benchmark.stressor_entries() if self.benchmark is not None else [])

    @model_validator(mode="after")
    def _task(self) -> AuditConfig:
        if self.task == "detection":
            if self.detection is None:
                raise ValueError(
                    "task: detection needs the detection section (detection.annotations or detection.yolo)"
                )
            if self.data.manifest is None:
                raise ValueError(
                    "task: detection needs data.manifest (image paths, image attributes and governance columns)"
                )
            if self.data.intersections:
                raise ValueError("data.intersections are not supported with task: detection yet")
        elif self.detection is not None:
            raise ValueError("the detection section needs task: detection")
        if self.task == "detection" and self.slices.search:
            raise ValueError(
                "slices.search is not supported with task: detection yet (slices.watch is); search the finished "
                "run folder with 'cvaudit slices RUN_DIR'"
            )
        return self

    @model_validator(mode="after")
    def _watched_attributes(self) -> AuditConfig:
        for name in self.slices.protected or []:
            if name not in self.data.attributes:
                raise ValueError(
                    f"slices.protected: {name!r} is not in data.attributes ({', '.join(self.data.attributes) or 'none'})"
                )
        properties = [c for c in PROPERTY_COLUMNS if c != "id"]
        known = [*self.data.attributes, *properties]
        if self.task == "detection" and self.detection is not None:
            objects = [*DETECTION_OBJECT_COLUMNS, *(f"object.{key}" for key in self.detection.object_attributes)]
            for name in self.data.attributes if self.slices.watch else ():
                if name in objects or name in properties or name.startswith("object."):
                    # the table the watched slices are measured on (cvaudit slices's) holds one column per name
                    raise ValueError(
                        f"data.attributes: {name!r} is also the name of an object column or image property of a "
                        "detection run, so slices.watch could not tell them apart; rename the manifest column"
                    )
            known += objects
        attributes = ", ".join(self.data.attributes) or "none"
        properties_text = ", ".join(properties)
        for k, entry in enumerate(self.slices.watch):
            for j, predicate in enumerate(entry.all):
                if predicate.attribute in known:
                    continue
                where = f"slices.watch[{k}].all[{j}].attribute: {predicate.attribute!r} (slice {entry.id!r}) is "
                if self.task == "detection" and self.detection is not None:
                    raise ValueError(
                        where
                        + f"not a column of this detection run's objects: an object column ({', '.join(objects)}), "
                        f"data.attributes ({attributes}) or an image property ({properties_text})"
                    )
                raise ValueError(
                    where + f"neither in data.attributes ({attributes}) nor an image property ({properties_text})"
                )
        return self

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if value in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", value):
            return value
        raise ValueError("device must be auto, cpu, cuda or cuda:N")


def _format_validation_error(path: Path, err: ValidationError) -> str:
    errors = err.errors()
    # an unknown key first: a misspelt key also makes its correct spelling "missing"
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    key = ".".join(str(p) for p in first["loc"]) or "(top level)"
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = unknown_key_message(AuditConfig, first["loc"])
    elif first["type"] == "missing":
        msg = "required key is missing"
    elif first["type"] == "value_error" and not first["loc"] and msg.startswith("Value error, slices."):
        return f"{path}: {msg.removeprefix('Value error, ')}"  # the message names its key
    return f"{path}: {key}: {msg}"


def _resolve(base: Path, value: Path | None, *, source: Path | None = None, key: str = "path") -> Path | None:
    if value is None:
        return None
    try:
        value = Path(value).expanduser()
    except RuntimeError:  # "~user/..." for a user this machine does not know
        raise AuditError(f"{source}: {key}: cannot expand the home folder in {echo(str(value))}") from None
    if "\x00" in str(value):
        raise AuditError(f"{source}: {key}: a path cannot contain a NUL character")
    return value if value.is_absolute() else (base / value)


def parse_config(raw: dict[str, Any], *, source: Path, base_dir: Path) -> AuditConfig:
    """Validate a config mapping and resolve its paths against ``base_dir``.

    Raises:
        AuditError: one line naming ``source``, the key and the problem.
    """
    if not isinstance(raw, dict):
        raise AuditError(f"{source}: the config must be a YAML mapping")
    try:
        cfg = AuditConfig.model_validate(raw)
    except ValidationError as err:
        raise AuditError(_format_validation_error(source, err)) from None
    model = cfg.model.model_copy(
        update={
            k: _resolve(base_dir, getattr(cfg.model, k), source=source, key=f"model.{k}") for k in ("path", "weights")
        }
    )
    data = cfg.data.model_copy(
        update={
            k: _resolve(base_dir, getattr(cfg.data, k), source=source, key=f"data.{k}")
            for k in ("manifest", "images", "npz", "root")
        }
    )
    report = cfg.report.model_copy(
        update={"sign_key": _resolve(base_dir, cfg.report.sign_key, source=source, key="report.sign_key")}
    )
    policy = cfg.policy
    if policy.endswith((".yaml", ".yml")):
        policy = str(_resolve(base_dir, Path(policy), source=source, key="policy"))
    update: dict[str, Any] = {"model": model, "data": data, "report": report, "policy": policy}
    if cfg.benchmark is not None and cfg.benchmark.baseline != "alexnet":
        baseline = _resolve(base_dir, Path(cfg.benchmark.baseline), source=source, key="benchmark.baseline")
        update["benchmark"] = cfg.benchmark.model_copy(update={"baseline": str(baseline)})
    if cfg.detection is not None:
        update["detection"] = cfg.detection.model_copy(
            update={
                k: _resolve(base_dir, getattr(cfg.detection, k), source=source, key=f"detection.{k}")
                for k in ("annotations", "images_root", "yolo")
            }
        )
    return cfg.model_copy(update=update)


def load_config(path: str | Path, **overrides: Any) -> AuditConfig:
    """Read and validate ``config.yaml``; ``overrides`` (seed, device, batch_size, attack_samples) win.

    The file is opened once, checked on its descriptor and read with the bound
    :data:`audit.contract.yaml_loader.MAX_BYTES` (:func:`~audit.contract.yaml_loader.read_yaml_file`):
    a larger file, a folder, a device such as ``/dev/zero``, a FIFO or a socket is refused before a
    byte is read.

    Raises:
        AuditError: the file is missing, unreadable, not a regular file, larger than
            ``MAX_BYTES``, or does not match the schema.
        YamlError: the file is not acceptable YAML (alias expansion, syntax).
    """
    path = Path(path)
    raw = load_yaml(read_yaml_file(path, what="config file", error=AuditError), source=str(path))
    if isinstance(raw, dict):
        given = {k: v for k, v in overrides.items() if v is not None}
        nested = {"attack_samples": "evaluation"}  # command-line options that live in a section
        raw = {**raw, **{k: v for k, v in given.items() if k not in nested}}
        for key, section in nested.items():
            if key in given:
                base = raw.get(section) if isinstance(raw.get(section), dict) else {}
                raw[section] = {**base, key: given[key]}
    return parse_config(raw, source=path, base_dir=path.parent.resolve())
