"""What a model card states about an object detector (``task: detection``), from results.json's ``detection``.

:func:`detection_facts` is called by :func:`reports.model_card.facts.card_facts` for detection results; the
renderers read :class:`DetectionFacts` only. Metrics stay the typed results' own objects
(:class:`~audit.contract.results.detection.DetectionMetrics`), so a card's number is results.json's number;
the only values computed here are differences of two of them (the drop of mAP and recall from clean).
"""

from __future__ import annotations

from dataclasses import dataclass

from audit.contract.results import Results
from audit.contract.results.detection import (
    DetectionCalibration,
    DetectionGapTest,
    DetectionGroup,
    DetectionMetrics,
    DetectionRobustness,
    DetectionSettings,
    GroundTruthInfo,
    TideError,
)

__all__ = ["DetectionConditionFacts", "DetectionFacts", "detection_facts"]


@dataclass(frozen=True)
class DetectionConditionFacts:
    """One evaluated condition of a detection audit with its groups and its drop from clean."""

    id: str
    stressor: str | None
    severity: int | float
    meaning: str | None
    metrics: DetectionMetrics
    groups: list[DetectionGroup]
    tide: list[TideError] | None
    calibration: DetectionCalibration | None
    map_drop: float | None = None
    recall_drop: float | None = None

    @property
    def dece(self) -> float | None:
        """The detection calibration error; None without calibration or detections."""
        return None if self.calibration is None else self.calibration.dece


@dataclass(frozen=True)
class DetectionFacts:
    """The detection section as the cards state it."""

    settings: DetectionSettings
    class_names: list[str]
    ground_truth: GroundTruthInfo
    num_skipped_annotations: int
    conditions: list[DetectionConditionFacts]
    robustness: DetectionRobustness | None
    gap_tests: list[DetectionGapTest]

    @property
    def clean(self) -> DetectionConditionFacts:
        return self.conditions[0]

    @property
    def stressed(self) -> list[DetectionConditionFacts]:
        """Every condition but clean."""
        return self.conditions[1:]

    @property
    def operating_point(self) -> str:
        """``score ≥ 0.5, IoU ≥ 0.5``: when a detection counts and when it matches an object."""
        return f"score ≥ {self.settings.score_threshold:g}, IoU ≥ {self.settings.iou_threshold:g}"


def _drop(clean: float | None, value: float | None) -> float | None:
    return None if clean is None or value is None else clean - value


def detection_facts(results: Results) -> DetectionFacts:
    """The detection facts of ``results`` (task ``detection``), conditions in results order (clean first).

    Raises:
        ValueError: ``results`` are not detection results.
    """
    section = results.detection
    if results.task != "detection" or section is None:
        raise ValueError(f"detection facts need detection results; these are {results.task} results")
    meanings = {
        s.name: {str(k): v for k, v in s.severity_meaning.items()} for s in results.stressors if s.severity_meaning
    }
    clean = next((c.metrics for c in section.conditions if c.id == "clean"), None)
    conditions = []
    for c in section.conditions:
        stressed = c.id != "clean" and clean is not None
        conditions.append(
            DetectionConditionFacts(
                id=c.id,
                stressor=c.stressor,
                severity=c.severity,
                meaning=meanings.get(c.stressor or "", {}).get(str(c.severity)) if c.stressor else None,
                metrics=c.metrics,
                groups=list(c.groups),
                tide=list(c.tide) if c.tide is not None else None,
                calibration=c.calibration,
                map_drop=_drop(clean.map, c.metrics.map) if stressed else None,
                recall_drop=_drop(clean.recall, c.metrics.recall) if stressed else None,
            )
        )
    return DetectionFacts(
        settings=section.settings,
        class_names=list(section.class_names),
        ground_truth=section.ground_truth,
        num_skipped_annotations=len(section.skipped_annotations),
        conditions=conditions,
        robustness=section.robustness,
        gap_tests=list(section.gap_tests),
    )
