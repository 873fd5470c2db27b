"""results.json ``slices`` (the watched slices, measured every run) and ``slice_search`` (what a search found).

Both absent before 1.6; on a detection run ``slices`` (watched slices of ground-truth objects, by recall) is
absent before 1.7. A slice's definition is :class:`audit.contract.slices.SliceDefinition`; its id is the one
of config ``slices.watch`` (watched) or :func:`audit.contract.slices.slice_id` (found by the search).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from audit.contract.results.base import Interval, Node

__all__ = [
    "SliceDefinitionResult",
    "SliceExample",
    "SliceFinding",
    "SlicePredicateResult",
    "SliceSearchResult",
    "SliceSide",
    "WatchedSliceResult",
]

#: A metric value, its interval (``<metric>_ci``), or null where undefined.
MetricValue = float | Interval | None


class SlicePredicateResult(Node):
    attribute: str = Field(
        description="a data.attributes column or an image property (image_properties.csv); on a detection run also "
        "an object column (class, size, area_share, center_x, center_y, center_distance, object.<key>; absent before 1.7)"
    )
    equals: str | None = Field(default=None, description="categorical: the attribute's text is exactly this")
    min: float | None = Field(default=None, description="numeric: the value is at least this (absent: no lower end)")
    max: float | None = Field(default=None, description="numeric: the value is below this (absent: no upper end)")


class SliceDefinitionResult(Node):
    all: list[SlicePredicateResult] = Field(
        min_length=1, max_length=4, description="the predicates, all of which hold (AND; audit.contract.slices)"
    )


class SliceSide(Node):
    n: int = Field(
        ge=0, description="samples (decoded, clean condition); on a detection run the ground-truth objects present"
    )
    metrics: dict[str, MetricValue] = Field(
        description="accuracy, brier and nll (means of the per-sample values of predictions.csv) and the interval "
        "of each ('<metric>_ci': Wilson for accuracy, the normal interval of the mean for brier and nll); null: no "
        "sample. On a detection run (absent before 1.7) recall (objects found / objects, objects.csv) and recall_ci, "
        "the 95 % cluster-robust interval by image of cvaudit slices' slices.csv"
    )


class WatchedSliceResult(Node):
    id: str = Field(description="the slice's id in config slices.watch (a policy rule's 'entry')")
    text: str = Field(description="the definition as text ('camera = B AND brightness < 0.21')")
    definition: SliceDefinitionResult = Field(description="the predicates (all of them hold: AND)")
    condition: Literal["clean"] = Field(default="clean", description="the condition it is measured on")
    n: int = Field(ge=0, description="samples in the slice (a detection run: ground-truth objects)")
    metrics: dict[str, MetricValue] = Field(description="the slice's metrics (as SliceSide.metrics)")
    rest: SliceSide = Field(description="every other decoded sample of the clean condition")
    gap: dict[str, float | None] = Field(
        description="per metric, how much worse the slice is than the rest: rest - slice for accuracy, slice - rest "
        "for brier and nll (positive: the slice is worse); null when either side is empty. A detection run "
        "(absent before 1.7): recall, rest - slice"
    )
    insufficient_data: bool = Field(
        description="fewer samples than evaluation.min_group_size in the slice or in the rest (a detection run: "
        "objects, or either side's objects in fewer than 10 images, the slice search's least): a rule judges it "
        "insufficient_data"
    )


class SliceExample(Node):
    sample_id: str = Field(description="a misclassified sample of the slice (the sample_id of predictions.csv)")
    image: str = Field(
        description="a data:image/png;base64 URI of the image as the model saw it under the searched condition, "
        "anonymized or raw as report.images"
    )


class SliceFinding(Node):
    id: str = Field(description="slice- and 10 hex digits of the definition's SHA-256 (the same in every run)")
    text: str = Field(description="the definition as text")
    definition: SliceDefinitionResult = Field(description="the predicates, all of which hold (AND)")
    n: int = Field(ge=0, description="samples of the slice in the whole run")
    value: float = Field(description="the metric on the slice's confirmation half")
    interval: Interval | None = Field(description="its 95 % interval")
    rest_value: float = Field(description="the metric on the rest of the confirmation half")
    rest_interval: Interval | None = Field(description="its 95 % interval")
    effect: float = Field(description="how much worse the slice is than the rest (positive: worse)")
    p_value: float = Field(ge=0.0, le=1.0, description="the confirmation p-value after Holm's correction")
    fairness: bool = Field(description="the definition names a protected attribute (config slices.protected)")
    examples: list[SliceExample] = Field(
        default_factory=list, description="up to 3 misclassified samples of the slice (when report.images allows)"
    )


class SliceSearchResult(Node):
    metric: str = Field(description="the metric searched (config slices.metric)")
    condition: str = Field(description="the condition whose predictions were searched (config slices.condition)")
    depth: int = Field(ge=1, le=4, description="the most predicates of a searched slice")
    tolerance: float = Field(ge=0.0, le=1.0, description="how much worse than the rest a reported slice is at least")
    min_size: int = Field(ge=2, description="the fewest samples of a searched slice")
    alpha: float = Field(gt=0.0, lt=1.0, description="the family-wise error rate controlled over the reported slices")
    attributes: list[str] = Field(description="the attributes and image properties searched")
    candidates: int = Field(ge=0, description="the slices tested on the discovery half")
    findings: list[SliceFinding] = Field(description="the confirmed slices, worst first (as slices.csv)")
