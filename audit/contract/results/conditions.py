"""results.json ``conditions``: metrics per condition, overall and per subgroup."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from audit.contract.results.base import Interval, Node, Rate

__all__ = [
    "AttackDetails",
    "AttackMember",
    "ConditionResult",
    "ConfusionPair",
    "EarlyStop",
    "ErrorTypes",
    "FitBudget",
    "GroupMetrics",
    "GroupResult",
    "Metrics",
    "PhysicalAttack",
    "ReliabilityBin",
    "StopDecision",
]

_N = "number of samples evaluated (images that could not be decoded are not counted)"


class Metrics(Node):
    """The metrics of one slice of samples (a condition, or one group under a condition).

    Every rate is in [0, 1]; each is null when the slice has no sample (n = 0).
    Definitions are in docs/statistics.md ("Metric definitions").
    """

    n: int = Field(ge=0, description=_N)
    accuracy: Rate = Field(
        description="share of samples whose top-1 prediction (argmax, ties to the lower class) equals the label"
    )
    accuracy_ci: Interval | None = Field(
        description="95 % interval of accuracy by evaluation.interval: the Wilson score interval from the counts "
        "(default), Clopper-Pearson, or the percentile Poisson bootstrap; null when n = 0"
    )
    balanced_accuracy: Rate = Field(description="mean recall over the classes present among the labels")
    balanced_accuracy_ci: Interval | None = Field(
        default=None,
        description="95 % percentile Poisson-bootstrap interval of balanced_accuracy; null without replicates or above 100 classes",
    )
    macro_f1: Rate = Field(
        description="mean F1 over the classes in labels ∪ predictions (scikit-learn f1_score average='macro')"
    )
    macro_f1_ci: Interval | None = Field(
        default=None,
        description="95 % percentile Poisson-bootstrap interval of macro_f1; null without replicates or above 100 classes",
    )
    top_k_accuracy: Rate = Field(
        description="share of samples whose label has fewer than k classes with strictly higher probability; null unless evaluation.top_k is set"
    )
    top_k_accuracy_ci: Interval | None = Field(
        default=None, description="95 % interval of top_k_accuracy, by evaluation.interval like accuracy_ci"
    )
    ece: Rate = Field(
        description="plug-in expected calibration error of the top-label confidence: 15 equal-width bins (lo, hi], sum over bins of (n_b / n) |accuracy_b - confidence_b|; biased upwards (of order 1/sqrt(n) for a perfectly calibrated model)"
    )
    ece_ci: Interval | None = Field(
        description="95 % Poisson-bootstrap interval of ece, the percentile interval moved down by the bootstrap estimate of ece's bias (ends clipped at 0); it still rarely reaches 0 for a calibrated model: use debiased_l2_ce_ci to judge calibration"
    )
    debiased_l2_ce: Rate = Field(
        default=None,
        description="debiased L2 calibration error (Kumar et al. 2019) over the same 15 bins: sqrt(max(0, sum_b (n_b/n) [(accuracy_b - confidence_b)^2 - accuracy_b (1 - accuracy_b)/(n_b - 1)])); about 0 for a calibrated model at any n; the value built-in policies judge",
    )
    debiased_l2_ce_ci: Interval | None = Field(
        default=None,
        description="95 % interval of debiased_l2_ce: bias-corrected Poisson-bootstrap interval of the squared estimate, square root of each end (0 when the end is negative)",
    )
    mce: Rate = Field(
        description="maximum calibration error: the largest |accuracy_b - confidence_b| over non-empty bins"
    )
    adaptive_ece: Rate = Field(description="ECE over 15 equal-mass bins (resolution 0.001 in confidence)")
    brier: float | None = Field(
        ge=0.0, le=2.0, description="mean over samples of sum_k (p_k - 1[k = label])^2, in [0, 2]"
    )
    brier_ci: Interval | None = Field(default=None, description="95 % percentile Poisson-bootstrap interval of brier")
    nll: float | None = Field(
        ge=0.0,
        description="negative log-likelihood in nats: -mean log p(label), p clipped at float64 eps (36.04 nats at most)",
    )
    nll_ci: Interval | None = Field(
        default=None, description="95 % percentile Poisson-bootstrap interval of nll (nats)"
    )


class GroupMetrics(Metrics):
    """The metrics of one group, with its confusion matrix (rows = true class, columns = predicted)."""

    confusion: list[list[int]] = Field(description="K x K counts: rows are true classes, columns predicted classes")


class GroupResult(Node):
    """One subgroup (an attribute value, or an intersection such as ``B×thick``) under one condition."""

    attribute: str = Field(description="attribute name, or an intersection of names joined by '×' (e.g. 'camera×ink')")
    value: str = Field(description="the group's value, or the intersection's values joined by '×' (e.g. 'B×thick')")
    insufficient_data: bool = Field(
        description="true when n < evaluation.min_group_size: shown, but left out of every gap, ratio and disparity"
    )
    metrics: GroupMetrics


class ConfusionPair(Node):
    """A (true, predicted) confusion, by class name."""

    true: str = Field(description="true class name")
    predicted: str = Field(description="predicted class name")
    count: int = Field(description="samples of that class predicted as the other", ge=0)


class ErrorTypes(Node):
    """Kinds of error of one condition (overall)."""

    per_class_fnr: dict[str, float | None] = Field(
        description="class name -> false-negative rate FN / (TP + FN); null when the class has no sample"
    )
    per_class_fpr: dict[str, float | None] = Field(
        description="class name -> false-positive rate FP / (FP + TN); null when undefined"
    )
    per_class_fnr_ci: dict[str, Interval | None] | None = Field(
        default=None, description="class name -> 95 % interval of its false-negative rate (evaluation.interval)"
    )
    per_class_fpr_ci: dict[str, Interval | None] | None = Field(
        default=None, description="class name -> 95 % interval of its false-positive rate (evaluation.interval)"
    )
    top_confusions: list[ConfusionPair] = Field(description="the five most frequent (true, predicted) errors")
    overconfident_errors: int = Field(ge=0, description="wrong predictions made with confidence >= 0.9")


class ReliabilityBin(Node):
    """One equal-width confidence bin of the reliability diagram."""

    lo: float = Field(ge=0.0, le=1.0, description="lower edge (exclusive, except the first bin which takes 0)")
    hi: float = Field(ge=0.0, le=1.0, description="upper edge (inclusive)")
    n: int = Field(description="samples in the bin", ge=0)
    accuracy: Rate = Field(description="share correct in the bin; null when empty")
    confidence: Rate = Field(description="mean top-label confidence in the bin; null when empty")


class Reliability(Node):
    bins: list[ReliabilityBin]


class StopDecision(Node):
    """One blocking rule target decided by an anytime-valid test while the condition ran."""

    rule: str = Field(description="the rule id")
    group: str | None = Field(description="'attribute=value' for a group target; null for the whole condition")
    decision: Literal["pass", "fail"] = Field(description="what the test showed at confidence 1 - alpha")
    n: int = Field(ge=0, description="samples of the target when it was decided")
    observed: float = Field(description="the target's accuracy when it was decided, in [0, 1]")
    bound: float = Field(
        ge=0.0,
        le=1.0,
        description="the bound of the anytime-valid confidence sequence (at level alpha per side) that crossed the threshold: its lower bound when the accuracy was shown above, its upper bound when shown below",
    )


class EarlyStop(Node):
    """How much of the data one condition used under evaluation.early_stop."""

    samples_used: int = Field(ge=0, description="samples this condition evaluated (= metrics.n)")
    samples_available: int = Field(ge=0, description="samples the condition would evaluate without early stopping")
    stopped: bool = Field(description="true when the condition stopped before the end of the data")
    reason: str = Field(
        description="one line: every blocking rule decided (after how many samples), or why the condition ran to the end"
    )
    decisions: list[StopDecision] = Field(description="the rule targets decided by the anytime-valid test")


class AttackMember(Node):
    """One member of an attack (of an ensemble such as autoattack: each member, in the order it ran)."""

    member: str = Field(description="the member's name, e.g. 'apgd-ce', 'apgd-t' (absent before 1.6)")
    attacked: int = Field(ge=0, description="samples this member attacked (those still robust when it started)")
    robust: int = Field(ge=0, description="samples still robust after this member (cumulative over the members so far)")
    robust_accuracy: Rate = Field(
        description="robust / n: the ensemble's robust accuracy after this member; null when n = 0"
    )
    seconds: float = Field(ge=0.0, description="wall-clock time this member took, summed over batches and ranks")


class AttackDetails(Node):
    """What an attack that reports details (APGD, APGD-T, autoattack) did on this condition (absent before 1.6)."""

    n: int = Field(ge=0, description="samples the attack was given (clean errors included; they count as not robust)")
    randomised_model: bool = Field(
        description="true when two identical forward passes of the model gave different outputs on some batch "
        "(a randomised model or defence): robust accuracy is then itself random"
    )
    eot_samples: int = Field(
        ge=1,
        description="gradient samples per step (expectation over transformation); 1 = no EoT. The largest used on any batch",
    )
    zero_gradient_samples: int = Field(
        ge=0,
        description="attacked samples whose input gradient at the start was all zero or not finite "
        "(AutoAttack's check_zero_gradients flag: gradient masking, the attack cannot progress there)",
    )
    members: list[AttackMember] = Field(description="each member in the order it ran, with its time")


class FitBudget(Node):
    """What fitting a physical attack spent, per fold (absent before 1.6)."""

    epochs: int = Field(ge=1, description="passes over each fold's fit samples")
    steps: list[int] = Field(description="optimisation steps per fold (fold 0, fold 1): epochs x fit batches")
    fit_batch_size: int = Field(ge=1, description="samples per optimisation step (independent of the run's batch size)")
    step_size: float | None = Field(
        default=None, description="universal: absolute signed-gradient step in pixel units of [0, 1]"
    )
    learning_rate: float | None = Field(
        default=None, description="patch: Adam's learning rate on pixel values in [0, 1]"
    )
    eot_samples: int = Field(ge=1, description="random placements per image per step (expectation over transformation)")
    scale_range: list[float] | None = Field(default=None, description="patch: [min, max] scale during the fit (EoT)")
    max_rotation: float | None = Field(
        default=None, description="patch: largest rotation in degrees, during the fit and the evaluation"
    )


class PhysicalAttack(Node):
    """A cross-fitted physical attack (universal perturbation, adversarial patch) on this condition (absent before 1.6).

    Samples fall in two folds by a hash of (seed, sample id); the perturbation fitted on one fold is applied to the
    other, so every sample is attacked by a perturbation that never saw it.
    """

    threat_model: Literal["universal_linf", "adversarial_patch"] = Field(
        description="'universal_linf': one perturbation within an L-inf epsilon for every image; 'adversarial_patch': "
        "one square patch pasted at a per-sample position and rotation"
    )
    budget: float = Field(
        gt=0,
        description="universal_linf: epsilon in pixel units of [0, 1]; adversarial_patch: the stated share of the image "
        "area (the actual share is area_share)",
    )
    budget_meaning: str = Field(description="the budget in words")
    patch_side: int | None = Field(
        default=None, ge=1, description="adversarial_patch: its side in pixels (fitted image size)"
    )
    area_share: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="adversarial_patch: the patch's actual share of the image area, side^2 / (H * W) (the side is "
        "rounded to whole pixels, so it differs from the stated budget) (absent before 1.6)",
    )
    fit: FitBudget
    fold_sizes: list[int] = Field(description="samples fitted on in fold 0 and fold 1 (at most fit_samples each)")
    n: int = Field(ge=0, description="samples evaluated under the attack")
    changed: int = Field(ge=0, description="evaluated samples whose top-1 prediction differs from the clean prediction")
    fooling_rate: Rate = Field(description="changed / n (Moosavi-Dezfooli et al. 2017); null when n = 0")
    images: list[str] | None = Field(
        default=None,
        description="the perturbation fitted on fold 0 and on fold 1 as data:image/png;base64 URIs (a universal "
        "perturbation scaled for visibility: grey 0, black/white +-epsilon); absent when the policy allows no images",
    )


class ConditionResult(Node):
    """One evaluated condition: the clean images, or one stressor at one severity (or attack at one ε)."""

    id: str = Field(
        description="'clean', or '<stressor>@<severity>' (integer severities: 'night@3'; attack budgets ε in pixel units of [0, 1] with 4 significant digits: 'pgd@0.007843')"
    )
    stressor: str | None = Field(description="the stressor entry's name (its 'label' when given); null for clean")
    severity: int | float = Field(description="the severity level, or the attack's ε; 0 for clean")
    model_aware: bool = Field(description="true for adversarial attacks (they need the model and the labels)")
    probe: bool | None = Field(
        default=None,
        description="true for an attack sanity probe (ε = 0 replay, or the large-ε gradient-masking check), left out of 'hardest condition' summaries and wildcard rules",
    )
    metrics: Metrics
    confusion: list[list[int]] = Field(description="K x K counts: rows are true classes, columns predicted classes")
    error_types: ErrorTypes
    reliability: Reliability
    groups: list[GroupResult] = Field(description="every subgroup and intersection, empty ones included (n = 0)")
    attack_subset: int | None = Field(
        default=None, description="attacks run on a stratified subset: its size (see attack_reference)"
    )
    failed_starts: int | None = Field(
        default=None, ge=0, description="hopskipjump: samples without a starting point (counted as not fooled)"
    )
    attack_details: AttackDetails | None = Field(
        default=None,
        description="attacks that report details (apgd, apgd_t, autoattack, their L2 forms): members run, "
        "robust accuracy and time per member, EoT samples, randomised model, zero gradients (absent before 1.6)",
    )
    physical: PhysicalAttack | None = Field(
        default=None,
        description="cross-fitted physical attacks (universal, patch): threat model, budget, fit, folds and fooling "
        "rate (absent before 1.6)",
    )
    early_stop: EarlyStop | None = Field(
        default=None, description="with evaluation.early_stop: how many samples this condition used and why it stopped"
    )
