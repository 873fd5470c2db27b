"""The ids of the adversarial sanity checks and what a raised one means for the verdict.

The checks are computed by :mod:`audit.evaluation.adversarial_checks` and stored in results.json
``adversarial_checks``; policy rules name them by these ids, and the report lists each with its
meaning. They live in the contract so that judging and reporting stored results (which may not
import the evaluator) read the same words as the findings' messages.
"""

from __future__ import annotations

__all__ = [
    "CHECKS",
    "ENSEMBLE_STRONGEST",
    "ITERATIVE_STRONGER",
    "LARGE_EPSILON",
    "MEANING",
    "MONOTONE",
    "RANDOMISED",
    "WHITE_BOX_STRONGER",
    "ZERO_EPSILON",
    "ZERO_GRADIENTS",
]

MONOTONE = "adversarial.monotone_in_epsilon"
LARGE_EPSILON = "adversarial.large_epsilon_zero_accuracy"
ITERATIVE_STRONGER = "adversarial.iterative_stronger_than_single_step"
ZERO_EPSILON = "adversarial.zero_epsilon_matches_clean"
ENSEMBLE_STRONGEST = "adversarial.ensemble_at_least_as_strong"
WHITE_BOX_STRONGER = "adversarial.white_box_stronger_than_black_box"
ZERO_GRADIENTS = "adversarial.zero_gradients"
RANDOMISED = "adversarial.randomised_model"
CHECKS = (
    MONOTONE,
    LARGE_EPSILON,
    ITERATIVE_STRONGER,
    ZERO_EPSILON,
    ENSEMBLE_STRONGEST,
    WHITE_BOX_STRONGER,
    ZERO_GRADIENTS,
    RANDOMISED,
)

#: Check id -> what a failing (or warning) finding means for the verdict (shown with the finding).
MEANING = {
    MONOTONE: "the attack did not converge; its robust accuracy at the larger ε is an overestimate",
    LARGE_EPSILON: "gradient masking or a broken attack; every robust accuracy of this attack is suspect",
    ITERATIVE_STRONGER: "the iterative attack is misconfigured or gradients are masked; do not trust its numbers",
    ZERO_EPSILON: "the attack path changes clean images; all its numbers are off by that difference",
    ENSEMBLE_STRONGEST: "the ensemble is not the worst case; report the lowest accuracy of any attack instead",
    WHITE_BOX_STRONGER: "gradient masking: gradient attacks overstate robustness; judge on the lowest accuracy found",
    ZERO_GRADIENTS: "samples with zero gradients look robust to gradient attacks without being robust",
    RANDOMISED: "a randomised model: without EoT robust accuracy is overstated; with EoT it varies between runs",
}
