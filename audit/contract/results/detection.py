"""The ``detection`` section of results.json: an object detector's audit (``task: detection``, schema 1.3).

Per condition (clean first, then every stressor × severity) and per subgroup:

- COCO metrics through faster-coco-eval (``map`` = AP@[.5:.95], ``map_50``, ``map_75``, ``map_small``,
  ``map_medium``, ``map_large``, ``ar_1``, ``ar_10``, ``ar_100``);
- the operating point at ``detection.score_threshold`` / ``detection.iou_threshold``: ``precision``,
  ``recall``, ``f1``, ``fp_per_image``, ``missed_per_image`` with their TP / FP / FN counts;
- per condition, the TIDE error decomposition and the detection calibration error (D-ECE);
- over the stressor conditions, corruption robustness (mPC, rPC; Michaelis et al. 2019).

Subgroups are **image-level** (a manifest attribute, e.g. ``camera``: every metric over that group's
images) or **object-level** (``object.size``, ``object.class`` and the named annotation keys
``object.<key>``: recall over that group's objects; for size and class also COCO AP).
Intervals (``<metric>_ci``) come from a cluster bootstrap over images.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from audit.contract.results.base import Interval, Node, Rate

__all__ = [
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
    "GroundTruthInfo",
    "ObjectBreakingDisparity",
    "ObjectBreakingEntry",
    "ObjectSurvivalPoint",
    "RecallGapPair",
    "SkippedAnnotationRow",
    "StressorRobustness",
    "TideError",
]


class DetectionMetrics(Node):
    """The metrics of one condition over one set of images (or, object-level, one set of objects)."""

    n_images: int = Field(ge=0, description="images evaluated")
    n_objects: int = Field(ge=0, description="ground-truth objects (crowd regions excluded)")
    map: float | None = Field(default=None, description="COCO AP@[.5:.95]; null without ground truth")
    map_50: float | None = Field(default=None, description="COCO AP at IoU 0.5")
    map_75: float | None = Field(default=None, description="COCO AP at IoU 0.75")
    map_small: float | None = Field(default=None, description="COCO AP of small objects (area < 32²)")
    map_medium: float | None = Field(default=None, description="COCO AP of medium objects (32² ≤ area < 96²)")
    map_large: float | None = Field(default=None, description="COCO AP of large objects (area ≥ 96²)")
    ar_1: float | None = Field(default=None, description="COCO AR with 1 detection per image")
    ar_10: float | None = Field(default=None, description="COCO AR with 10 detections per image")
    ar_100: float | None = Field(default=None, description="COCO AR with 100 detections per image")
    tp: int | None = Field(default=None, ge=0, description="operating point: matched detections")
    fp: int | None = Field(default=None, ge=0, description="operating point: unmatched detections")
    fn: int = Field(ge=0, description="operating point: missed objects")
    precision: Rate = Field(default=None, description="tp / (tp + fp); null without detections")
    recall: Rate = Field(default=None, description="tp / (tp + fn); null without objects")
    f1: Rate = Field(default=None, description="2 tp / (2 tp + fp + fn)")
    fp_per_image: float | None = Field(default=None, ge=0.0, description="false positives per image")
    missed_per_image: float | None = Field(default=None, ge=0.0, description="missed objects per image")
    precision_ci: Interval | None = Field(default=None, description="95 % cluster-bootstrap interval of precision")
    recall_ci: Interval | None = Field(default=None, description="95 % cluster-bootstrap interval of recall")
    f1_ci: Interval | None = Field(default=None, description="95 % cluster-bootstrap interval of f1")
    fp_per_image_ci: Interval | None = Field(
        default=None, description="95 % cluster-bootstrap interval of fp_per_image"
    )
    missed_per_image_ci: Interval | None = Field(
        default=None, description="95 % cluster-bootstrap interval of missed_per_image"
    )


class DetectionGroup(Node):
    """One subgroup under one condition."""

    attribute: str = Field(
        description="an image attribute (e.g. 'camera') or 'object.size', 'object.class', 'object.<key>'"
    )
    level: Literal["image", "object"] = Field(description="image: the group's images; object: the group's objects")
    value: str = Field(description="the group's value")
    metrics: DetectionMetrics
    insufficient_data: bool = Field(
        description="true when the group has fewer than evaluation.min_group_size objects: shown, but left out "
        "of every gap"
    )


class TideError(Node):
    """One TIDE error type (Bolya et al. 2020): how often it occurs and the AP it costs."""

    error: Literal["classification", "localisation", "both", "duplicate", "background", "missed"] = Field(
        description="the error type"
    )
    count: int = Field(ge=0, description="occurrences (detections, or missed objects)")
    dap: float = Field(description="AP50 gained (a fraction, as map) if this error type alone were fixed")


class DetectionReliabilityBin(Node):
    """One confidence bin of the reliability diagram."""

    low: float = Field(ge=0.0, le=1.0, description="the bin's lower edge")
    high: float = Field(ge=0.0, le=1.0, description="the bin's upper edge")
    count: int = Field(ge=0, description="detections in the bin")
    confidence: float | None = Field(description="mean score; null when empty")
    precision: float | None = Field(description="share matched (IoU ≥ detection.iou_threshold); null when empty")


class DetectionCalibration(Node):
    """Detection calibration error (D-ECE, Küppers et al. 2020) at the operating point's IoU."""

    iou_threshold: float = Field(gt=0.0, le=1.0, description="the IoU a detection needs to count as matched")
    bins: int = Field(ge=1, description="equal-width confidence bins (detection.calibration_bins)")
    detections: int = Field(ge=0, description="detections scored (score ≥ detection.score_threshold)")
    dece: float | None = Field(description="Σ_bins n_b / N · |precision_b - confidence_b|; null without detections")
    reliability: list[DetectionReliabilityBin]


class DetectionCondition(Node):
    """One condition: all images, the subgroups, the error types and the calibration."""

    id: str = Field(description="'clean' or '<stressor>@<severity>'")
    stressor: str | None = Field(description="stressor name (its label); null for clean")
    severity: int | float = Field(description="the severity level; 0 for clean")
    metrics: DetectionMetrics
    groups: list[DetectionGroup]
    tide: list[TideError] | None = Field(default=None, description="the TIDE decomposition (all images)")
    calibration: DetectionCalibration | None = None
    dropped_objects: int | None = Field(
        default=None,
        ge=0,
        description="ground-truth objects (crowd regions excluded) a geometric stressor moved out of view "
        "(visible share below detection.min_visibility), left out of this condition's truth; absent when the "
        "stressor moves no pixels (the condition is scored against the clean truth)",
    )


class StressorRobustness(Node):
    """One stressor's mean mAP over its severities."""

    stressor: str = Field(description="stressor name (its label)")
    mean_map: float | None = Field(description="mean mAP over the stressor's severities")
    relative: float | None = Field(description="mean_map / clean mAP")


class DetectionRobustness(Node):
    """Corruption robustness over the stressor conditions (Michaelis et al. 2019, as mmdetection computes it)."""

    clean_map: float | None = Field(description="P_clean: mAP on the clean images")
    mpc: float | None = Field(description="mean over stressors of the mean mAP over severities")
    rpc: float | None = Field(description="mpc / clean_map")
    stressors: list[StressorRobustness]


class RecallGapPair(Node):
    """One pair of groups of a gap test: the recall difference and its cluster-robust standard error."""

    higher: str = Field(description="the group of higher recall")
    lower: str = Field(description="the group of lower recall")
    gap: float = Field(ge=0.0, description="recall(higher) - recall(lower)")
    se: float = Field(ge=0.0, description="its standard error: delete-one-image jackknife (images are the clusters)")
    p_value: float = Field(
        ge=0.0, le=1.0, description="H0: the two groups have the same recall (two-sided normal test)"
    )
    p_holm: float = Field(
        ge=0.0, le=1.0, description="p_value adjusted by Holm over every pair of the condition's gap tests"
    )


class DetectionGapTest(Node):
    """The recall gap between the subgroups of one attribute under one condition, with a Holm-adjusted p-value."""

    condition: str = Field(description="condition id")
    attribute: str = Field(description="an image attribute or an object grouping (object.size ...)")
    level: Literal["image", "object"] = Field(description="image: groups of images; object: groups of objects")
    recalls: dict[str, float | None] = Field(description="eligible group -> its recall at the operating point")
    objects: dict[str, int] = Field(description="eligible group -> its objects")
    worst_group: str | None = Field(description="the eligible group of lowest recall")
    best_group: str | None = Field(description="the eligible group of highest recall")
    gap: float | None = Field(description="best recall - worst recall; null with fewer than two eligible groups")
    gap_ci: Interval | None = Field(
        default=None,
        description="the best - worst pair's 95 % Wald interval (gap ± 1.96 se); selected after looking, so "
        "rules decide by the pairs' tests, not by it",
    )
    p_value: float | None = Field(description="the smallest pair p_value (H0: every group has the same recall)")
    p_holm: float | None = Field(
        description="the smallest pair p_holm: the attribute's gap shown at level α when below α"
    )
    excluded: list[str] = Field(description="groups below evaluation.min_group_size objects")
    pairs: list[RecallGapPair] = Field(
        default_factory=list, description="every pair of eligible groups: what a policy's tested gap rule decides from"
    )


class GroundTruthInfo(Node):
    """Where the ground truth came from."""

    path: str = Field(description="the COCO instances JSON or the YOLO folder")
    sha256: str | None = Field(description="SHA-256 of the COCO file; null for a YOLO folder")
    format: Literal["coco", "yolo"] = Field(description="coco (instances JSON) or yolo (folder)")
    num_images: int = Field(ge=0, description="images joined to the manifest")
    num_objects: int = Field(ge=0, description="annotations kept, crowd regions included")
    num_crowd: int = Field(ge=0, description="crowd regions (iscrowd 1)")
    object_attributes: list[str] = Field(description="detection.object_attributes")


class SkippedAnnotationRow(Node):
    """An annotation (or image) dropped under ``detection.on_bad_annotation: skip``."""

    source: str = Field(description="the annotation file, folder or manifest")
    id: str = Field(description="which entry: annotation id, image id, line")
    reason: str = Field(description="why it was dropped")


class DetectionSettings(Node):
    """The operating point and decoding the run used (config ``detection``)."""

    score_threshold: float = Field(description="detection.score_threshold: the operating point's score")
    iou_threshold: float = Field(description="detection.iou_threshold: the IoU of a match")
    output: Literal["boxes", "yolo"] = Field(description="detection.output: how the detector's output was decoded")
    resize: Literal["letterbox", "resize"] = Field(description="detection.resize: how images reached the input size")
    nms_iou_threshold: float | None = Field(description="output yolo: NMS IoU; null for boxes")
    nms_score_threshold: float | None = Field(description="output yolo: the pre-NMS score floor; null for boxes")
    max_detections: int = Field(description="detection.max_detections: detections kept per image")
    min_visibility: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="detection.min_visibility: the visible share below which a geometric stressor's moved object is "
        "dropped from its condition's truth; absent when no stressor moves pixels",
    )


class DetectionBox(Node):
    """A box drawn on an example image, in the example image's pixels."""

    box: list[float] = Field(min_length=4, max_length=4, description="x1, y1, x2, y2 in the example's pixels")
    label: str = Field(description="the class name")
    score: float | None = Field(default=None, description="the detection's score; null for ground truth")
    outcome: Literal["tp", "fp", "matched", "missed", "crowd"] = Field(
        description="detection: tp (matched an object) or fp; ground truth: matched, missed, or crowd (a crowd region)"
    )


class DetectionExample(Node):
    """An image the report shows with its ground truth and the detections at the operating point."""

    condition: str = Field(description="the condition the image was seen under")
    sample_id: str = Field(description="the image's sample id")
    reason: str = Field(description="why it is shown, e.g. 'most missed objects under night@3'")
    image: str = Field(description="a data:image/png;base64 URI (anonymized or raw, as the policy allows)")
    width: int = Field(ge=1, description="the example image's width in pixels")
    height: int = Field(ge=1, description="the example image's height in pixels")
    truth: list[DetectionBox]
    detections: list[DetectionBox]


class ObjectSurvivalPoint(Node):
    """One severity of an object survival curve (:mod:`audit.evaluation.detection.object_breaking`)."""

    severity: int | float = Field(description="the severity (or ε) of the level")
    condition: str = Field(description="its condition id")
    surviving: Rate = Field(
        description="S(severity): Kaplan-Meier share of the objects found on clean still found at every "
        "level up to this one (objects dropped by min_visibility censored); null with no object at risk"
    )
    surviving_ci: Interval | None = Field(
        default=None, description="95 % cluster-bootstrap (images) percentile interval of surviving"
    )
    at_risk: int = Field(ge=0, description="objects found at every lower level and present at this one")
    broken: int = Field(ge=0, description="objects first lost at this level")
    dropped: int = Field(ge=0, description="objects censored here: first removed by min_visibility at this level")


class ObjectBreakingEntry(Node):
    """The per-object breaking points of one stressor, over all objects or one subgroup."""

    id: str = Field(description="'<stressor>', or '<stressor>:<attribute>=<value>' for a subgroup")
    stressor: str = Field(description="the stressor entry (its label)")
    measure: Literal["severity", "epsilon"] = Field(description="what the levels are")
    attribute: str | None = Field(
        description="null for all objects; an image attribute, or an object grouping (object.size ...)"
    )
    level: Literal["all", "image", "object"] = Field(description="all objects, an image subgroup or an object subgroup")
    value: str | None = Field(description="the subgroup's value; null for all objects")
    n: int = Field(ge=0, description="eligible objects: found on clean and evaluated at every level")
    n_images: int = Field(ge=0, description="images holding the eligible objects (the bootstrap's clusters)")
    missed_on_clean: int = Field(ge=0, description="objects not found on clean: no breaking point, excluded")
    broken: int = Field(ge=0, description="eligible objects lost at some level")
    never: int = Field(ge=0, description="eligible objects found at every level")
    dropped: int = Field(ge=0, description="eligible objects censored: removed by min_visibility before being lost")
    median: int | float | None = Field(
        description="lowest level with surviving <= 0.5; the highest level when none (median_censored); "
        "null without eligible objects"
    )
    median_ci: list[int | float | None] | None = Field(
        min_length=2,
        max_length=2,
        description="95 % interval of the median from the survival band: [lowest level whose lower end is <= 0.5, "
        "lowest level whose upper end is <= 0.5]; an end is null when beyond the highest level",
    )
    median_censored: bool = Field(description="more than half survive the highest level: the median is above it")
    insufficient_data: bool = Field(description="a subgroup with fewer than evaluation.min_group_size objects")
    survival: list[ObjectSurvivalPoint]


class ObjectBreakingDisparity(Node):
    """The largest gap in object survival between the subgroups of one attribute, for one stressor."""

    id: str = Field(description="'<stressor>:<attribute>'")
    stressor: str = Field(description="the stressor entry (its label)")
    attribute: str = Field(description="an image attribute or an object grouping")
    level: Literal["image", "object"] = Field(description="image or object subgroups")
    groups_compared: int = Field(ge=0, description="subgroups not flagged insufficient_data")
    disparity: float | None = Field(
        description="max over levels of (highest - lowest surviving); null with fewer than two groups"
    )
    disparity_ci: Interval | None = Field(
        description="95 % cluster-bootstrap interval of that pair's gap at that level (not adjusted for the choice)"
    )
    at_severity: int | float | None = Field(description="the level of the largest gap")
    worst_group: str | None = Field(description="the group of lowest survival there")
    best_group: str | None = Field(description="the group of highest survival there")
    median_gap: float | None = Field(description="highest - lowest median breaking level of the groups")
    excluded: list[str] = Field(description="groups flagged insufficient_data")


class DetectionBreakingPoints(Node):
    """Per-object breaking points (results.json ``detection.breaking_points``)."""

    score_threshold: float = Field(description="the operating point's score at which an object counts as found")
    iou_threshold: float = Field(description="the IoU at which an object counts as found")
    n_bootstrap: int = Field(ge=0, description="cluster-bootstrap replicates of the intervals (0: none)")
    entries: list[ObjectBreakingEntry] = Field(description="per stressor: all objects, then every subgroup")
    disparity: list[ObjectBreakingDisparity] = Field(description="per stressor and attribute")


class DetectionResults(Node):
    """Everything a detection audit measured (results.json ``detection``)."""

    settings: DetectionSettings
    class_names: list[str] = Field(description="the detector's classes in index order (the annotations' order)")
    ground_truth: GroundTruthInfo
    skipped_annotations: list[SkippedAnnotationRow]
    conditions: list[DetectionCondition] = Field(description="'clean' first, then every stressor × severity")
    robustness: DetectionRobustness | None = Field(description="null without stressors")
    gap_tests: list[DetectionGapTest]
    examples: list[DetectionExample] | None = Field(
        default=None, description="present when the policy allows images: the images the report draws"
    )
    breaking_points: DetectionBreakingPoints | None = Field(
        default=None, description="per-object breaking points; present with a stressor of two or more levels"
    )
