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

from pydantic import Field, PrivateAttr

from audit.contract.results.base import Node
from audit.contract.results.breaking_points import BreakingPointDisparity, BreakingPointSummary, SurvivalPoint
from audit.contract.results.conditions import (
    ConditionResult,
    ConfusionPair,
    EarlyStop,
    ErrorTypes,
    GroupMetrics,
    GroupResult,
    Metrics,
    Reliability,
    ReliabilityBin,
    StopDecision,
)
from audit.contract.results.identity import (
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
    "SCHEMA_VERSION",
    "AdversarialCheck",
    "AttackReference",
    "BaselineRow",
    "BreakingPointDisparity",
    "BreakingPointSummary",
    "ConditionResult",
    "ConfusionPair",
    "CorruptionError",
    "CorruptionSummary",
    "DatasetInfo",
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
    "GalleryItem",
    "GapTest",
    "Governance",
    "GovernanceFinding",
    "GroupMetrics",
    "GroupResult",
    "Metrics",
    "ModelInfo",
    "PolicyOutcome",
    "Provenance",
    "RateDriver",
    "Reliability",
    "ReliabilityBin",
    "ReportSettings",
    "Results",
    "RobustnessRow",
    "RuleResult",
    "SkippedImage",
    "StopDecision",
    "StressorInfo",
    "SurvivalPoint",
    "Tool",
]

#: The version this cvaudit writes; see the module docstring for the rules.
SCHEMA_VERSION = "1.2"


class Results(Node):
    """A whole results.json."""

    schema_version: str = Field(pattern=r"^\d+\.\d+$", description="MAJOR.MINOR of this schema (semver rules above)")
    tool: Tool
    seed: int = Field(description="the audit's seed: every random draw is derived from it and the sample ids")
    model: ModelInfo
    dataset: DatasetInfo
    evaluation: EvaluationSettings
    stressors: list[StressorInfo] = Field(description="what each stressor and severity means")
    conditions: list[ConditionResult] = Field(description="'clean' first, then every stressor × severity")
    fairness: list[FairnessEntry] = Field(description="one entry per condition and attribute or intersection")
    robustness: list[RobustnessRow]
    robustness_summary: CorruptionSummary
    robustness_disparity: list[DisparityRow]
    error_shift: list[ErrorShift]
    attack_reference: AttackReference | None = Field(default=None, description="present when attacks ran on a subset")
    baseline_comparison: list[BaselineRow] | None = Field(default=None, description="present with --baseline")
    adversarial_checks: list[AdversarialCheck]
    breaking_points: list[BreakingPointSummary] | None = Field(
        default=None,
        description="per stressor with two or more severities, over all samples and per group: survival curve and median breaking point (per sample: breaking_points.csv)",
    )
    breaking_point_disparity: list[BreakingPointDisparity] | None = Field(
        default=None, description="per stressor and attribute: how far the groups' survival curves lie apart"
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

    @property
    def notes(self) -> list[str]:
        """What the reader had to say about the file (e.g. newer keys it ignored)."""
        return self._notes

    @property
    def verdict(self) -> str | None:
        """``pass`` or ``fail``; None before a policy judged the results."""
        return None if self.policy is None else self.policy.verdict
