"""The results.json contract: typed models of every key, from which the JSON Schema is generated.

``results.json`` is cvaudit's public API: policies address its keys by path;
the reports, the pytest plugin, ``policy check``, ``verify`` and users' own
scripts read it. :class:`Results` is the model the evaluator builds the results
with and :func:`audit.contract.load_results` validates them against; the
shipped ``audit/contract/schema/results.schema.json`` is generated from it
(``python -m audit.contract.schema``) and a test fails if the two drift.

Versioning (semver, ``schema_version`` = ``MAJOR.MINOR``):

- a new key, always optional for readers: the MINOR version goes up, and a
  reader of any later minor version of the same major still loads the file;
- a key renamed or removed, a type or a meaning changed: the MAJOR version goes
  up, and a reader refuses files of another major version;
- a reader loads a file of a newer minor version by ignoring the keys it does
  not know (it says so).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PrivateAttr, model_validator

from audit.contract.results.base import Node
from audit.contract.results.benchmark import BenchmarkBaseline, BenchmarkCorruption, BenchmarkPreview, ImageNetCResults
from audit.contract.results.breaking_points import BreakingPointDisparity, BreakingPointSummary, SurvivalPoint
from audit.contract.results.conditions import (
    AttackDetails,
    AttackMember,
    ConditionResult,
    ConfusionPair,
    EarlyStop,
    ErrorTypes,
    FitBudget,
    GroupMetrics,
    GroupResult,
    Metrics,
    PhysicalAttack,
    Reliability,
    ReliabilityBin,
    StopDecision,
)
from audit.contract.results.detection import (
    AttackCheckFinding,
    AttackCurvePoint,
    DetectionAttack,
    DetectionBox,
    DetectionBreakingPoints,
    DetectionCalibration,
    DetectionCondition,
    DetectionExample,
    DetectionGapTest,
    DetectionGroup,
    DetectionMetrics,
    DetectionReliabilityBin,
    DetectionResults,
    DetectionRobustness,
    DetectionSettings,
    GroundTruthInfo,
    ObjectBreakingDisparity,
    ObjectBreakingEntry,
    ObjectSurvivalPoint,
    RecallGapPair,
    SkippedAnnotationRow,
    StressorRobustness,
    TideError,
)
from audit.contract.results.identity import (
    CodeExecuted,
    DatasetInfo,
    ErrorThumbnail,
    ErrorThumbnails,
    EvaluationSettings,
    GalleryItem,
    ModelInfo,
    Provenance,
    ReportSettings,
    SkippedImage,
    StressorInfo,
    Tool,
)
from audit.contract.results.slices import (
    SliceExample,
    SliceFinding,
    SliceSearchResult,
    SliceSide,
    WatchedSliceResult,
)
from audit.contract.results.summaries import (
    AdversarialCheck,
    AttackReference,
    BaselineRow,
    CorruptionError,
    CorruptionSummary,
    DisparityRow,
    ErrorShift,
    ErrorShiftPair,
    Exclusion,
    FairnessEntry,
    GapTest,
    RateDriver,
    RobustnessRow,
)
from audit.contract.results.verdict import Evaluation, Governance, GovernanceFinding, PolicyOutcome, RuleResult

__all__ = [
    "CLASSIFICATION_KEYS",
    "SCHEMA_VERSION",
    "AdversarialCheck",
    "AttackCheckFinding",
    "AttackCurvePoint",
    "AttackDetails",
    "AttackMember",
    "AttackReference",
    "BaselineRow",
    "BenchmarkBaseline",
    "BenchmarkCorruption",
    "BenchmarkPreview",
    "BreakingPointDisparity",
    "BreakingPointSummary",
    "CodeExecuted",
    "ConditionResult",
    "ConfusionPair",
    "CorruptionError",
    "CorruptionSummary",
    "DatasetInfo",
    "DetectionAttack",
    "DetectionBox",
    "DetectionBreakingPoints",
    "DetectionCalibration",
    "DetectionCondition",
    "DetectionExample",
    "DetectionGapTest",
    "DetectionGroup",
    "DetectionMetrics",
    "DetectionReliabilityBin",
    "DetectionResults",
    "DetectionRobustness",
    "DetectionSettings",
    "DisparityRow",
    "EarlyStop",
    "ErrorShift",
    "ErrorShiftPair",
    "ErrorThumbnail",
    "ErrorThumbnails",
    "ErrorTypes",
    "Evaluation",
    "EvaluationSettings",
    "Exclusion",
    "FairnessEntry",
    "FitBudget",
    "GalleryItem",
    "GapTest",
    "Governance",
    "GovernanceFinding",
    "GroundTruthInfo",
    "GroupMetrics",
    "GroupResult",
    "ImageNetCResults",
    "Metrics",
    "ModelInfo",
    "ObjectBreakingDisparity",
    "ObjectBreakingEntry",
    "ObjectSurvivalPoint",
    "PhysicalAttack",
    "PolicyOutcome",
    "Provenance",
    "RateDriver",
    "RecallGapPair",
    "Reliability",
    "ReliabilityBin",
    "ReportSettings",
    "Results",
    "RobustnessRow",
    "RuleResult",
    "SkippedAnnotationRow",
    "SkippedImage",
    "SliceExample",
    "SliceFinding",
    "SliceSearchResult",
    "SliceSide",
    "StopDecision",
    "StressorInfo",
    "StressorRobustness",
    "SurvivalPoint",
    "TideError",
    "Tool",
    "WatchedSliceResult",
]

#: The keys of a classification audit (present exactly when ``task`` is classification).
CLASSIFICATION_KEYS = (
    "conditions",
    "fairness",
    "robustness",
    "robustness_summary",
    "robustness_disparity",
    "error_shift",
    "adversarial_checks",
)

#: The version this cvaudit writes; see the module docstring for the rules.
SCHEMA_VERSION = "1.7"


class Results(Node):
    """A whole results.json."""

    schema_version: str = Field(pattern=r"^\d+\.\d+$", description="MAJOR.MINOR of this schema (semver rules above)")
    tool: Tool
    seed: int = Field(description="the audit's seed: every random draw is derived from it and the sample ids")
    model: ModelInfo
    dataset: DatasetInfo
    evaluation: EvaluationSettings
    stressors: list[StressorInfo] = Field(description="what each stressor and severity means")
    task: Literal["classification", "detection"] = Field(
        default="classification",
        description="what the model does (config task); absent before 1.3: classification. The classification "
        "keys (conditions ... adversarial_checks) are present exactly when the task is classification; a "
        "detection audit's results are under 'detection'",
    )
    conditions: list[ConditionResult] | None = Field(
        default=None, description="'clean' first, then every stressor × severity (classification)"
    )
    fairness: list[FairnessEntry] | None = Field(
        default=None, description="one entry per condition and attribute or intersection (classification)"
    )
    robustness: list[RobustnessRow] | None = Field(default=None, description="classification")
    robustness_summary: CorruptionSummary | None = Field(default=None, description="classification")
    robustness_disparity: list[DisparityRow] | None = Field(default=None, description="classification")
    error_shift: list[ErrorShift] | None = Field(default=None, description="classification")
    detection: DetectionResults | None = Field(
        default=None, description="an object detector's audit (task detection; schema 1.3)"
    )
    attack_reference: AttackReference | None = Field(default=None, description="present when attacks ran on a subset")
    baseline_comparison: list[BaselineRow] | None = Field(default=None, description="present with --baseline")
    adversarial_checks: list[AdversarialCheck] | None = Field(default=None, description="classification")
    breaking_points: list[BreakingPointSummary] | None = Field(
        default=None,
        description="per stressor with two or more severities, over all samples and per group: survival curve and median breaking point (per sample: breaking_points.csv)",
    )
    breaking_point_disparity: list[BreakingPointDisparity] | None = Field(
        default=None, description="per stressor and attribute: how far the groups' survival curves lie apart"
    )
    imagenet_c: ImageNetCResults | None = Field(
        default=None,
        description="present when the config names a benchmark (benchmark.suite imagenet-c): CE, mCE and relative "
        "mCE (classification) or mPC and rPC (detection) over the suite's conditions; absent before 1.6",
    )
    slices: list[WatchedSliceResult] | None = Field(
        default=None,
        description="present when config slices.watch names slices: one entry per watched slice, measured on the "
        "clean images (absent before 1.6)",
    )
    slice_search: SliceSearchResult | None = Field(
        default=None,
        description="present when config slices.search is on: the weak slices the search confirmed (as slices.csv; "
        "absent before 1.6)",
    )
    governance: Governance
    gallery: list[GalleryItem] | None = Field(default=None, description="present when the policy allows images")
    error_thumbnails: list[ErrorThumbnails] | None = Field(
        default=None,
        description="present when the policy allows images and a rule failed or warned: per failing condition and "
        "group, thumbnails of the misclassified samples the report names (up to 5, selected from predictions.csv)",
    )
    provenance: Provenance
    report: ReportSettings | None = Field(
        default=None, description="how the reports are rendered (config report.*); absent: English ('en')"
    )
    policy: PolicyOutcome | None = Field(default=None, description="the verdict (absent only while results are built)")

    _notes: list[str] = PrivateAttr(default_factory=list)

    @model_validator(mode="after")
    def _task_sections(self) -> Results:
        given = [k for k in CLASSIFICATION_KEYS if getattr(self, k) is not None]
        if self.task == "classification":
            missing = [k for k in CLASSIFICATION_KEYS if k not in given]
            if missing:
                raise ValueError(f"classification results need the key {missing[0]!r}")
            if self.detection is not None:
                raise ValueError("the key 'detection' needs task 'detection'")
        else:
            if self.detection is None:
                raise ValueError("detection results need the key 'detection'")
            if given:
                raise ValueError(f"the key {given[0]!r} is a classification key; task is 'detection'")
        return self

    def require_classification(self, what: str) -> None:
        """Refuse detection results where only classification results can be read (``what`` names the reader).

        Raises:
            ValueError: one line: ``what`` does not read detection results yet.
        """
        if self.task != "classification":
            raise ValueError(f"{what} reads classification results; these are {self.task} results")

    @property
    def notes(self) -> list[str]:
        """What the reader had to say about the file (e.g. newer keys it ignored)."""
        return self._notes

    @property
    def verdict(self) -> str | None:
        """``pass`` or ``fail``; None before a policy judged the results."""
        return None if self.policy is None else self.policy.verdict
