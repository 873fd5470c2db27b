"""results.json identity sections: tool, model, dataset, evaluation settings, stressors, provenance."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from audit.contract.intervals import IntervalMethod
from audit.contract.results.base import Node

__all__ = [
    "CodeExecuted",
    "DatasetInfo",
    "ErrorThumbnail",
    "ErrorThumbnails",
    "EvaluationSettings",
    "GalleryItem",
    "ModelInfo",
    "Provenance",
    "ReportSettings",
    "SkippedImage",
    "StressorInfo",
    "Tool",
]


class Tool(Node):
    name: str = Field(description="always 'cvaudit'")
    version: str = Field(description="the cvaudit version that wrote the results")


class CodeExecuted(Node):
    """The code a run executed to build and run the model (models are code)."""

    kind: Literal["factory", "torchscript", "torch.export"] = Field(
        description="factory: a Python module imported and its function called; torchscript / torch.export: "
        "the program held in the model file"
    )
    name: str = Field(description="the factory's 'module:function', or the model file's name")
    path: str | None = Field(
        description="the factory module's file (relative to the config's folder, else to the working directory, "
        "when it lies there), or the model file; null for a module without a file"
    )
    sha256: str | None = Field(
        description="SHA-256 (hex) of that file, taken when it was loaded (a factory: the module's own file, "
        "not what it imports); null for a module without a file"
    )

    def to_text(self) -> str:
        """One line for the run log and the reports, e.g. ``code executed: net:make (net.py, sha256 ...)``."""
        digest = f"sha256 {self.sha256}" if self.sha256 else "no file to digest"
        if self.kind == "factory":
            where = f"{self.path}, {digest}" if self.path else digest
            return f"code executed: {self.name} ({where})"
        program = "TorchScript" if self.kind == "torchscript" else "torch.export"
        return f"code executed: {program} program {self.name} ({digest})"


class ModelInfo(Node):
    path: str | None = Field(description="the model file (or the factory 'module:function' when no weights file)")
    sha256: str | None = Field(description="SHA-256 of the model file (hex); null for a factory without weights")
    format: str = Field(description="torchscript | torch.export | onnx | factory | huggingface")
    num_classes: int = Field(description="K, the model's output width", ge=1)
    class_names: list[str] = Field(
        description="class names in output order (default '0'..'K-1'; a Hugging Face model's id2label)"
    )
    files: dict[str, str] | None = Field(
        default=None,
        description="Hugging Face folder: every file that defines the model (config, image-processor config, safetensors weights), by name relative to the folder -> SHA-256 (hex); 'path' is then the weights file",
    )
    code_executed: CodeExecuted | None = Field(
        default=None,
        description="the code the run executed: a factory's module:function with the module file's digest, or "
        "the TorchScript / torch.export program file with its digest; null for ONNX (standard operators, no "
        "custom-operator library) and Hugging Face (safetensors, no remote code); absent before 1.5",
    )


class SkippedImage(Node):
    sample: str = Field(description="sample id")
    reason: str = Field(description="why the image could not be decoded")


class DatasetInfo(Node):
    path: str = Field(description="the manifest, image folder or .npz file")
    sha256: str | None = Field(description="SHA-256 of the manifest or .npz file; null for an image folder")
    num_samples: int = Field(ge=0, description="samples evaluated (skipped images excluded)")
    num_skipped: int = Field(ge=0, description="images that could not be decoded (data.on_bad_image: skip)")
    skipped_share: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="share of the dataset's images that could not be decoded: num_skipped / (num_samples + "
        "num_skipped), in [0, 1] (a policy can bound it: section dataset, metric skipped_share)",
    )
    skipped: list[SkippedImage]
    attributes: dict[str, dict[str, int]] = Field(description="attribute -> value -> number of evaluated samples")
    intersections: list[str] = Field(description="intersections evaluated, e.g. 'camera×ink'")


class EvaluationSettings(Node):
    min_group_size: int = Field(
        ge=1, description="the one 'too small to judge' threshold: smaller groups are shown but take no part in gaps"
    )
    n_bootstrap: int = Field(
        ge=0, description="Poisson-bootstrap replicates behind the intervals of ece, brier, nll, macro_f1 ..."
    )
    confidence_level: float = Field(gt=0.0, lt=1.0, description="coverage of every interval (0.95)")
    interval: IntervalMethod | None = Field(
        default=None,
        description="method of the intervals of proportions (accuracy, top-k accuracy, per-class rates): wilson "
        "(score interval from the counts), clopper-pearson (exact) or bootstrap (percentile); absent in results "
        "written before 1.1 (percentile bootstrap)",
    )
    early_stop: bool | None = Field(
        default=None,
        description="true when conditions stopped as soon as their blocking rules were decided (evaluation.early_stop)",
    )
    early_stop_min_samples: int | None = Field(
        default=None, ge=1, description="with early_stop: samples every condition evaluates before it may stop"
    )
    ece_bins: int = Field(ge=1, description="equal-width bins of ece and the reliability diagram")
    attack_samples: int | None = Field(
        description="size of the stratified attack subset; null when every sample is attacked"
    )
    top_k: int | None = Field(description="k of top_k_accuracy; null when not computed")


class StressorInfo(Node):
    name: str = Field(description="the name condition ids use (the entry's label when given)")
    stressor: str = Field(description="the registered stressor")
    model_aware: bool = Field(description="true for attacks")
    severities: list[int | float] = Field(description="severities (or ε) evaluated")
    severity_meaning: dict[str, str] = Field(description="severity -> its physical meaning")
    description: str = Field(description="first line of the stressor's documentation")
    options: dict[str, Any] = Field(description="the options the stressor was built with")


class GalleryItem(Node):
    condition: str = Field(description="condition id the image shows")
    image: str = Field(description="a data:image/png;base64 URI (anonymized or raw, as the policy allows)")


class ErrorThumbnail(Node):
    sample_id: str = Field(description="a misclassified sample the report names (the sample_id of predictions.csv)")
    image: str = Field(
        description="a data:image/png;base64 URI of the sample as the model saw it under the condition (the "
        "stressed or attacked image), encoded as a gallery image (anonymized or raw, as the policy allows)"
    )


class ErrorThumbnails(Node):
    condition: str = Field(description="the condition id of a failed or warned rule's target")
    attribute: str | None = Field(description="the attribute of the target's group; null for the whole condition")
    value: str | None = Field(description="the group's value of the attribute; null for the whole condition")
    samples: list[ErrorThumbnail] = Field(
        description="the named misclassified samples, lowest probability of the true class first (ties by sample id)"
    )


class Provenance(Node):
    seed: int = Field(description="the audit seed")
    config: str | None = Field(description="the config file")
    config_sha256: str | None = Field(description="SHA-256 of the config file")
    started: str = Field(description="ISO 8601 UTC time the run started")
    finished: str = Field(description="ISO 8601 UTC time the results were assembled")
    device: str = Field(description="the device the model ran on")
    world_size: int = Field(ge=1, description="processes under torchrun (1 when run directly)")
    versions: dict[str, str] = Field(description="python and library versions")
    threads: int | None = Field(
        default=None, ge=1, description="torch intra-op threads of the main process (config threads, or automatic)"
    )
    num_workers: int | None = Field(
        default=None, ge=0, description="DataLoader worker processes (config data.num_workers, or automatic)"
    )
    allocator: Literal["retain", "system"] | None = Field(
        default=None,
        description="retain: glibc kept the memory a batch freed for the next (config allocator); system: the "
        "allocator as it was",
    )
    exif: Literal["apply", "ignore"] | None = Field(
        default=None,
        description="apply: images were turned upright by their EXIF Orientation tag before preprocessing; ignore: "
        "decoded as stored (config data.exif; by default apply for Hugging Face models, as transformers does)",
    )
    alpha: Literal["drop", "composite_white"] | None = Field(
        default=None,
        description="drop: the alpha channel of transparent images was discarded; composite_white: they were "
        "composited over white (config data.alpha; by default drop for Hugging Face models, as transformers does)",
    )


class ReportSettings(Node):
    """How the reports of these results are rendered (config ``report.*``)."""

    language: str = Field(
        pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$",
        description="BCP 47 tag of the report's language, declared in report.html and report.pdf (config "
        "report.language); absent means 'en'",
    )
