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
from audit.contract.errors import AuditError, echo
from audit.contract.intervals import IntervalMethod
from audit.contract.keys import unknown_key_message
from audit.contract.predictions import PREDICTIONS_COLUMNS
from audit.contract.yaml_loader import load_yaml


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


#: Resampling filters of ``model.interpolation``; the torch backend has the first three.
INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "lanczos", "box", "hamming")


class ModelConfig(_Strict):
    """How to load the model and prepare its input.

    Preprocessing (docs/running.md, "Preprocessing"): an image is resized, then center-cropped to
    ``input_size`` (H, W). Without ``resize`` it is resized straight to ``input_size``; an int
    ``resize`` sets the shorter edge (aspect ratio kept), ``[H, W]`` an exact size. ``resize_backend``
    ``torch`` resizes the float image with antialiasing; ``pil`` resizes 8-bit images in 8 bits with
    Pillow, as PIL-based pipelines (Hugging Face image processors) do. With ``format: huggingface``
    every preprocessing key left out is taken from the folder's image-processor config.
    """

    path: Path | None = None
    format: Literal["huggingface"] | None = None
    factory: str | None = None
    weights: Path | None = None
    outputs: Literal["logits", "probabilities"] = "logits"
    input_size: tuple[PositiveInt, PositiveInt] = (224, 224)
    resize: PositiveInt | tuple[PositiveInt, PositiveInt] | None = None
    interpolation: Literal["bilinear", "bicubic", "nearest", "lanczos", "box", "hamming"] = "bilinear"
    resize_backend: Literal["torch", "pil"] = "torch"
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    channels: Literal[1, 3] = 3
    class_names: list[str] | None = None

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


#: Default ``data.max_image_pixels``: 64 megapixels (e.g. 8000 x 8000, larger than most camera
#: sensors). Decoding one RGB image this size peaks near 2 GB (benchmarks/bench_limits.py), once
#: per DataLoader worker; the 12000 x 12000 RGB image of issue 13 took 4.1 GB.
DEFAULT_MAX_IMAGE_PIXELS = 64_000_000


class DataConfig(_Strict):
    """Where the images, labels and subgroup attributes come from.

    ``root`` bounds where images may be read from: every image path of a
    manifest or an image folder, once ``..`` and symbolic links are resolved,
    must lie inside it (default: the manifest's folder, or the image folder)
    unless ``allow_outside_root`` is true. ``max_image_pixels`` is the largest
    width x height decoded; a larger image is a bad image (``on_bad_image``).
    ``exif`` and ``alpha`` say how orientation and transparency are decoded (:meth:`decoding_for`).
    A manifest's image paths and labels are in ``path_column`` and ``label_column``;
    two rows naming the same image (after ``.``, ``..`` and repeated separators are
    removed) are an error unless ``allow_duplicate_paths`` is true.
    """

    manifest: Path | None = None
    images: Path | None = None
    npz: Path | None = None
    attributes: list[str] = Field(default_factory=list)
    intersections: list[list[str]] = Field(default_factory=list)
    on_bad_image: Literal["error", "skip"] = "error"
    id_column: str = "sample_id"
    path_column: str = Field(default="path", min_length=1, description="the manifest column of image paths")
    label_column: str = Field(default="label", min_length=1, description="the manifest column of labels")
    allow_duplicate_paths: bool = False
    num_workers: int | None = Field(
        default=None, ge=0, description="DataLoader workers; null: from the cores and the image size"
    )
    root: Path | None = None
    allow_outside_root: bool = False
    max_image_pixels: int = Field(default=DEFAULT_MAX_IMAGE_PIXELS, ge=1)
    exif: Literal["apply", "ignore"] | None = Field(
        default=None,
        description="apply: turn each image upright by its EXIF Orientation tag; ignore: the pixels as stored; "
        "null: apply for Hugging Face models (as transformers does), ignore otherwise",
    )
    alpha: Literal["drop", "composite_white"] | None = Field(
        default=None,
        description="transparent images: drop the alpha channel, or composite them over white; "
        "null: drop for Hugging Face models (as transformers does), composite_white otherwise",
    )

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

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str
    severities: list[float] | None = None
    label: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.:-]+$")

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
    formats: list[Literal["html", "pdf"]] = Field(default_factory=lambda: ["html", "pdf"])
    images: Literal["none", "anonymized", "raw"] = "none"
    sign_key: Path | None = None
    language: str = "en"

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
    interval: IntervalMethod = "wilson"
    min_group_size: int = Field(default=30, ge=1)
    top_k: int | None = Field(default=None, ge=1)
    attack_samples: int | None = Field(default=None, ge=1)
    early_stop: bool = False
    early_stop_min_samples: int = Field(default=200, ge=1)

    @model_validator(mode="after")
    def _bootstrap_interval(self) -> EvaluationConfig:
        if self.interval == "bootstrap" and self.n_bootstrap == 0:
            raise ValueError("evaluation.interval bootstrap needs evaluation.n_bootstrap > 0")
        return self


class MlflowConfig(_Strict):
    """``tracking.mlflow``: log each run to MLflow (the ``cvaudit[mlflow]`` extra)."""

    experiment: str = Field(min_length=1)
    run_name: str | None = None
    tracking_uri: str | None = None
    #: Whole seconds MLflow's HTTP client waits to connect or for an answer, per attempt (None: the
    #: environment's ``MLFLOW_HTTP_REQUEST_TIMEOUT``, else 5).
    timeout_s: int | None = Field(default=None, ge=1, le=600)
    #: Further attempts after a failed HTTP request (None: ``MLFLOW_HTTP_REQUEST_MAX_RETRIES``, else 1).
    max_retries: int | None = Field(default=None, ge=0, le=10)


class TrackingConfig(_Strict):
    """Where runs are also recorded besides the output folder."""

    mlflow: MlflowConfig | None = None


class BreakingPointsConfig(_Strict):
    """Refine per-sample breaking points beyond the evaluated levels (``breaking_points:``).

    ``stressors`` names stressor entries (their label when given): image
    stressors with fractional severities are bisected between the evaluated
    levels down to ``resolution``; ``deepfool`` reports the size of its minimal
    perturbation; ``pgd``, ``pgd_l2`` and ``fgsm`` are bisected over ε down to
    ``epsilon_resolution``. Each bisection takes at most ``max_steps`` extra
    evaluations of a sample (the cost bound).
    """

    stressors: list[str] = Field(default_factory=list)
    resolution: float = Field(default=0.25, gt=0, le=1)
    epsilon_resolution: float = Field(default=0.001, gt=0, le=1)
    max_steps: int = Field(default=8, ge=1, le=20)


class AuditConfig(_Strict):
    """The whole ``config.yaml``."""

    seed: int = 0
    device: str = "auto"
    batch_size: int = Field(default=64, ge=1)
    threads: int | None = Field(
        default=None, ge=1, description="torch intra-op threads on the CPU; null: the cores the workers leave"
    )
    allocator: Literal["retain", "system"] | None = Field(
        default=None,
        description=(
            "retain: while the audit evaluates, glibc's allocator keeps memory freed by a batch for the next "
            "(mallopt; set back on exit, see audit.evaluation.allocator); system: the allocator as it is; "
            "unset (null): cvaudit run and cvaudit demo use retain, and the Python API (audit.runner.run) "
            "and the pytest plugin leave the allocator as it is"
        ),
    )
    model: ModelConfig
    data: DataConfig
    stressors: list[StressorConfig] = Field(default_factory=list)
    policy: str = "ci-gate"
    report: ReportConfig = Field(default_factory=ReportConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)

    breaking_points: BreakingPointsConfig = Field(default_factory=BreakingPointsConfig)

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
    return cfg.model_copy(update={"model": model, "data": data, "report": report, "policy": policy})


def load_config(path: str | Path, **overrides: Any) -> AuditConfig:
    """Read and validate ``config.yaml``; ``overrides`` (seed, device, batch_size, attack_samples) win.

    Raises:
        AuditError: the file is missing or does not match the schema.
        YamlError: the file is not acceptable YAML (size, alias expansion, syntax).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise AuditError(f"{path}: config file not found") from None
    except OSError as err:
        raise AuditError(f"{path}: cannot read config: {err.strerror}") from None
    raw = load_yaml(data, source=str(path))
    if isinstance(raw, dict):
        given = {k: v for k, v in overrides.items() if v is not None}
        nested = {"attack_samples": "evaluation"}  # command-line options that live in a section
        raw = {**raw, **{k: v for k, v in given.items() if k not in nested}}
        for key, section in nested.items():
            if key in given:
                base = raw.get(section) if isinstance(raw.get(section), dict) else {}
                raw[section] = {**base, key: given[key]}
    return parse_config(raw, source=path, base_dir=path.parent.resolve())
