"""results.json summaries computed by the evaluator from the conditions: fairness, robustness, attacks."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from audit.contract.results.base import Node, Rate
from audit.contract.results.conditions import GroupResult, Metrics

__all__ = [
    "AdversarialCheck",
    "AttackReference",
    "BaselineRow",
    "CorruptionError",
    "CorruptionSummary",
    "DisparityRow",
    "ErrorShift",
    "ErrorShiftPair",
    "Exclusion",
    "FairnessEntry",
    "GapTest",
    "RateDriver",
    "RobustnessRow",
]

_GAP = "max - min of the group {m} over the groups that take part (n >= min_group_size); null with fewer than two"
_RATIO = "min / max of the group {m} over the groups that take part; null with fewer than two or max = 0"


class Exclusion(Node):
    """A group left out of a fairness entry, and why."""

    value: str = Field(description="group value")
    n: int = Field(description="its samples", ge=0)
    reason: Literal["empty", "below min_group_size"] = Field(description="empty (n = 0) or below min_group_size")


class RateDriver(Node):
    """What produced an equalized-odds or demographic-parity difference."""

    class_index: int = Field(ge=0, description="the class (index into model.class_names) whose rate gap is largest")
    rate: Literal["tpr", "fpr", "selection"] = Field(
        description="tpr or fpr (equalized odds: among the class's positives or negatives), selection (demographic parity)"
    )
    groups: list[str] = Field(min_length=2, max_length=2, description="[the group with the lower rate, the higher]")
    n: list[int] = Field(
        min_length=2,
        max_length=2,
        description="samples behind the two rates (the class's positives for tpr, negatives for fpr, the group sizes for selection)",
    )


class GapTest(Node):
    """The stored test of one group statistic: do the groups differ at all?"""

    p_value: float = Field(
        ge=0.0,
        le=1.0,
        description="smallest Holm-adjusted p-value over the pairs of groups for 'no difference' (tolerance 0)",
    )
    pairs: int = Field(ge=1, description="pairs of groups tested (times classes and rates for equalized odds)")
    min_detectable: float | None = Field(
        description="the smallest true difference detected with 80 % probability, for the two smallest groups"
    )
    method: Literal["agresti-caffo", "wald-bootstrap-se"] = Field(
        description="agresti-caffo (counts) or a Wald test with standard errors from the groups' bootstrap intervals"
    )


class FairnessEntry(Node):
    """Every group statistic of one condition and one attribute (or intersection).

    Computed once by the evaluator (:func:`audit.contract.groupstats.fairness_summary`);
    policies select these values and the report renders them.
    """

    condition: str = Field(description="condition id")
    attribute: str = Field(description="attribute, or intersection joined by '×'")
    min_group_size: int | None = Field(
        default=None,
        description="the threshold used: groups with fewer samples take no part (evaluation.min_group_size)",
    )
    min_positives: int | None = Field(
        default=None,
        ge=0,
        description="equalized odds leaves out per-class rates with fewer samples behind them (0: undefined rates count as 0, as in fairlearn)",
    )
    groups_compared: int | None = Field(default=None, ge=0, description="how many groups take part")
    worst_group: str | None = Field(description="the value with the lowest accuracy")
    best_group: str | None = Field(default=None, description="the value with the highest accuracy")
    accuracy_gap: float | None = Field(
        description=_GAP.format(m="accuracy") + " (a difference of two shares: ×100 for percentage points)"
    )
    accuracy_ratio: float | None = Field(description=_RATIO.format(m="accuracy"))
    balanced_accuracy_gap: float | None = Field(default=None, description=_GAP.format(m="balanced accuracy"))
    balanced_accuracy_ratio: float | None = Field(default=None, description=_RATIO.format(m="balanced accuracy"))
    macro_f1_gap: float | None = Field(default=None, description=_GAP.format(m="macro F1"))
    macro_f1_ratio: float | None = Field(default=None, description=_RATIO.format(m="macro F1"))
    top_k_accuracy_gap: float | None = Field(default=None, description=_GAP.format(m="top-k accuracy"))
    top_k_accuracy_ratio: float | None = Field(default=None, description=_RATIO.format(m="top-k accuracy"))
    ece_gap: float | None = Field(description=_GAP.format(m="ECE"))
    debiased_l2_ce_gap: float | None = Field(default=None, description=_GAP.format(m="debiased L2 calibration error"))
    brier_gap: float | None = Field(default=None, description=_GAP.format(m="Brier score"))
    nll_gap: float | None = Field(default=None, description=_GAP.format(m="NLL (nats)"))
    equalized_odds_difference: float | None = Field(
        description="max over classes c of the larger of the TPR gap and the FPR gap of the one-vs-rest problem 'label == c'; a rate undefined in a group counts as 0 (fairlearn's convention) unless min_positives leaves it out"
    )
    equalized_odds_driver: RateDriver | None = Field(
        default=None, description="the class, rate, groups and sample counts behind equalized_odds_difference"
    )
    demographic_parity_difference: float | None = Field(
        description="max over classes c of the gap in the rate of 'prediction == c' (tracks base rates: differs when groups differ in their labels)"
    )
    demographic_parity_driver: RateDriver | None = Field(
        default=None, description="the class, groups and group sizes behind demographic_parity_difference"
    )
    tests: dict[str, GapTest] | None = Field(
        default=None,
        description="'<metric>_gap', 'equalized_odds_difference' or 'demographic_parity_difference' -> its test of 'no difference' at evaluation.confidence_level (Holm over the pairs)",
    )
    excluded: list[str] = Field(description="values left out (empty, or fewer samples than min_group_size)")
    exclusions: list[Exclusion] | None = Field(default=None, description="each value left out, with n and the reason")


class RobustnessRow(Node):
    """Accuracy drop of one stressed condition from its reference clean accuracy."""

    condition: str = Field(description="condition id")
    stressor: str = Field(description="stressor name")
    severity: int | float = Field(description="severity or ε")
    accuracy: Rate = Field(description="accuracy under the condition")
    clean_accuracy: Rate = Field(description="clean accuracy of the same samples (the attacked subset for attacks)")
    drop: float | None = Field(description="clean_accuracy - accuracy (positive is worse)")


class CorruptionError(Node):
    """Corruption error of one stressor (ImageNet-C style), E = 1 - accuracy."""

    stressor: str = Field(description="stressor name")
    severities: list[int | float] = Field(description="severities averaged over")
    ce: float | None = Field(description="mean over severities of E_s")
    relative_ce: float | None = Field(description="mean over severities of E_s - E_clean")
    normalized_ce: float | None = Field(description="sum_s E_s / sum_s E_s of a reference model; null without one")
    normalized_relative_ce: float | None = Field(
        description="relative CE normalised by a reference model; null without one"
    )


class CorruptionSummary(Node):
    stressors: list[CorruptionError]
    mce: float | None = Field(description="mean CE over the natural stressors")
    relative_mce: float | None = Field(description="mean relative CE over the natural stressors")
    normalized_mce: float | None = Field(description="mean normalized CE; null without a reference model")
    normalized_relative_mce: float | None = Field(
        description="mean normalized relative CE; null without a reference model"
    )


class DisparityRow(Node):
    """Which group loses most accuracy, from its own clean accuracy, under one condition."""

    condition: str = Field(description="condition id")
    stressor: str = Field(description="stressor name")
    severity: int | float = Field(description="severity or ε")
    attribute: str = Field(description="attribute or intersection")
    worst_group: str | None = Field(
        description="the group with the largest drop; null with fewer than two eligible groups"
    )
    drops: dict[str, float] = Field(description="group value -> its clean accuracy minus its accuracy here")
    disparity: float | None = Field(description="largest drop - smallest drop")
    excluded: list[str] = Field(description="groups below min_group_size in the clean or the stressed condition")


class ErrorShiftPair(Node):
    true: int = Field(description="true class index")
    predicted: int = Field(description="predicted class index")
    clean_share: float | None = Field(description="share of all clean errors that are this pair")
    share: float | None = Field(description="share of this condition's errors that are this pair")
    share_change: float | None = Field(description="share - clean_share")
    clean_rate: float | None = Field(description="count / n on clean images")
    rate: float | None = Field(description="count / n under this condition")


class ErrorShift(Node):
    """The confusions that grow most, as a share of errors, from clean to one condition."""

    condition: str = Field(description="condition id")
    pairs: list[ErrorShiftPair]


class AttackReference(Node):
    """The clean images of the attacked subset (attacks ran on ``attack_subset`` samples)."""

    attack_subset: int | None = Field(description="number of samples attacked")
    metrics: Metrics
    groups: list[GroupResult]


class BaselineRow(Node):
    """Candidate against baseline (``--baseline``) for one condition and group."""

    condition: str = Field(description="condition id")
    attribute: str | None = Field(description="attribute or intersection; null for the whole condition")
    value: str | None = Field(description="the group's value; null for the whole condition")
    n: int | None = Field(description="samples of the candidate's run")
    baseline_n: int | None = Field(description="samples of the baseline's run")
    accuracy: float | None = Field(description="candidate accuracy in [0, 1]; null when n < min_group_size")
    baseline_accuracy: float | None = Field(description="baseline accuracy in [0, 1]; null when its n < min_group_size")
    delta: float | None = Field(description="candidate - baseline accuracy")
    regressed: bool = Field(description="delta < -0.01 (an accuracy drop of more than one percentage point)")
    status: Literal["regressed", "ok", "insufficient_data", "missing_in_baseline", "missing_in_candidate"] = Field(
        description="regressed, ok, insufficient_data (too few samples), or missing on one side"
    )


class AdversarialCheck(Node):
    """A sanity check of an adversarial evaluation (Carlini et al. 2019)."""

    check: str = Field(description="e.g. 'adversarial.large_epsilon_zero_accuracy'")
    status: Literal["pass", "fail", "warn", "insufficient_data"] = Field(
        description="pass, fail (the check failed), warn (failed on a subset, or an AutoAttack flag that weakens the verdict without voiding it), insufficient_data (the run lacks what the check needs)"
    )
    attack: str | None = Field(description="the attack's stressor name (its label when given)")
    observed: float | None = Field(
        description="the measured quantity (accuracy units, in [0, 1]); see the check's message"
    )
    message: str = Field(description="one line saying what was compared and what was found")
