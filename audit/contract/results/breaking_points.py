"""results.json ``breaking_points`` and ``breaking_point_disparity``: per-sample breaking points, summarised.

A sample's breaking point under one stressor is the lowest severity (or attack
ε) at which its prediction is wrong, given that it is right on the clean image.
Per sample they are in ``breaking_points.csv``; results.json carries, per
stressor and per group, the survival curve (the share of the samples right on
clean that are still right at each severity), the median breaking point with a
95 % interval, and how far the groups' curves lie apart.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from audit.contract.results.base import Node, Rate

__all__ = ["BreakingPointDisparity", "BreakingPointSummary", "SurvivalPoint"]

_UNIT = "in the stressor's severity units (attacks: ε in pixel units of [0, 1]; the patch: its share of the image area)"


class SurvivalPoint(Node):
    """One point of a survival curve: the share of samples still right at one severity."""

    severity: float = Field(description=f"the severity {_UNIT}")
    condition: str | None = Field(description="the condition id evaluated at that severity")
    surviving: Rate = Field(
        description="share of the samples right on clean whose breaking point lies above this severity; null when n = 0"
    )
    n_surviving: int = Field(ge=0, description="how many samples that is")


class BreakingPointSummary(Node):
    """Breaking points of one stressor, over all samples or over one group."""

    id: str = Field(description="'<stressor>' for all samples, '<stressor>:<attribute>=<value>' for one group")
    stressor: str = Field(description="the stressor entry's name (its label when given)")
    measure: Literal["severity", "epsilon", "area_share"] = Field(
        description="severity (image stressors), epsilon (attacks) or area_share (the adversarial patch: its share "
        "of the image area; area_share absent before 1.6)"
    )
    attribute: str | None = Field(description="attribute or intersection; null for all samples")
    value: str | None = Field(description="the group's value; null for all samples")
    method: Literal["grid", "bisection", "deepfool"] = Field(
        description="grid: the lowest evaluated severity that breaks; bisection: refined between the evaluated levels down to 'resolution'; deepfool: the L-inf size of DeepFool's minimal perturbation"
    )
    resolution: float | None = Field(default=None, description=f"bisection resolution {_UNIT}; null otherwise")
    n: int = Field(ge=0, description="samples right on clean (they have a breaking point or never break)")
    n_total: int = Field(ge=0, description="samples evaluated under this stressor, wrong on clean included")
    wrong_on_clean: int = Field(ge=0, description="samples already wrong on the clean image (no breaking point)")
    broken: int = Field(ge=0, description="samples right on clean that break at an evaluated severity")
    never: int = Field(ge=0, description="samples right on clean and right at every evaluated severity")
    median: float | None = Field(
        description=f"median breaking point of the n samples (lower median; 'never' counts as above every severity) {_UNIT}; when more than half never break, the highest severity evaluated (median_censored); null when n = 0"
    )
    median_ci: list[float | None] | None = Field(
        default=None,
        min_length=2,
        max_length=2,
        description="95 % distribution-free interval of the median (order statistics, binomial coverage >= 0.95); a bound past the highest severity is null; null when n < 6",
    )
    median_censored: bool = Field(
        description="true when the median lies above the highest severity evaluated (median is then a lower bound)"
    )
    insufficient_data: bool = Field(
        description="true when n < evaluation.min_group_size: shown, but left out of disparities and judged insufficient_data by policies"
    )
    survival: list[SurvivalPoint] = Field(description="one point per evaluated severity, in increasing order")


class BreakingPointDisparity(Node):
    """How far the survival curves of the groups of one attribute lie apart under one stressor."""

    id: str = Field(description="'<stressor>:<attribute>'")
    stressor: str = Field(description="the stressor entry's name")
    attribute: str = Field(description="attribute or intersection")
    groups_compared: int = Field(ge=0, description="groups with n >= evaluation.min_group_size")
    disparity: float | None = Field(
        description="the largest gap, over the evaluated severities, between the highest and the lowest surviving share of the groups compared (0..1); null with fewer than two"
    )
    at_severity: float | None = Field(description=f"the severity of that largest gap {_UNIT}")
    worst_group: str | None = Field(description="the group with the lowest surviving share there")
    best_group: str | None = Field(description="the group with the highest surviving share there")
    median_gap: float | None = Field(
        description=f"highest minus lowest median breaking point of the groups compared {_UNIT}"
    )
    excluded: list[str] = Field(description="groups left out (n below evaluation.min_group_size)")
