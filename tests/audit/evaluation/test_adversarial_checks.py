"""Tests of the Carlini et al. 2019 sanity checks over results conditions."""

from __future__ import annotations

import pytest

from audit.evaluation.adversarial_checks import (
    CHECKS,
    ENSEMBLE_STRONGEST,
    ITERATIVE_STRONGER,
    LARGE_EPSILON,
    MEANING,
    MONOTONE,
    RANDOMISED,
    WHITE_BOX_STRONGER,
    ZERO_EPSILON,
    ZERO_GRADIENTS,
    noise_tolerance,
    sanity_checks,
)
from stressors.adversarial import PGD


def cond(stressor, severity, accuracy, n=1000):
    cid = "clean" if stressor is None else f"{stressor}@{severity:.4g}"
    return {"id": cid, "stressor": stressor, "severity": severity, "metrics": {"n": n, "accuracy": accuracy}}


def healthy():
    return [
        cond(None, 0, 0.95),
        cond("pgd", 0.0, 0.95),
        cond("pgd", 2 / 255, 0.60),
        cond("pgd", 8 / 255, 0.20),
        cond("pgd", 0.5, 0.0),
        cond("fgsm", 2 / 255, 0.70),
        cond("fgsm", 8 / 255, 0.40),
        cond("night", 3, 0.90),
    ]


def find(findings, check, attack):
    (hit,) = [f for f in findings if f["check"] == check and f["attack"] == attack]
    return hit


def test_healthy_evaluation_passes():
    findings = sanity_checks(healthy())
    autoattack_flags = {ENSEMBLE_STRONGEST, WHITE_BOX_STRONGER, ZERO_GRADIENTS, RANDOMISED}
    assert {f["check"] for f in findings} == set(CHECKS) - autoattack_flags  # no ensemble, black-box or details
    pgd = [f for f in findings if f["attack"] == "pgd"]
    assert [f["status"] for f in pgd] == ["pass"] * 4
    assert all(set(f) == {"check", "status", "attack", "observed", "message"} for f in findings)
    assert find(findings, LARGE_EPSILON, "pgd")["observed"] == 0.0


def test_rising_accuracy_fails_monotonicity():
    conditions = healthy() + [cond("pgd", 16 / 255, 0.45)]
    finding = find(sanity_checks(conditions), MONOTONE, "pgd")
    assert finding["status"] == "fail"
    assert finding["observed"] == pytest.approx(0.45 - 0.20)


def test_rise_within_sampling_noise_passes():
    conditions = [cond(None, 0, 0.9, n=50), cond("pgd", 0.01, 0.50, n=50), cond("pgd", 0.02, 0.54, n=50)]
    assert find(sanity_checks(conditions), MONOTONE, "pgd")["status"] == "pass"
    assert find(sanity_checks(conditions, tolerance=0.01), MONOTONE, "pgd")["status"] == "fail"


def test_clean_anchors_the_curve_when_there_is_no_zero_epsilon():
    conditions = [cond(None, 0, 0.5), cond("pgd", 0.01, 0.9), cond("pgd", 0.02, 0.8)]
    assert find(sanity_checks(conditions), MONOTONE, "pgd")["status"] == "fail"


def test_accuracy_far_from_zero_at_large_epsilon_suggests_gradient_masking():
    conditions = healthy()
    conditions[4] = cond("pgd", 0.5, 0.40)
    finding = find(sanity_checks(conditions), LARGE_EPSILON, "pgd")
    assert finding["status"] == "fail" and "gradient masking" in finding["message"]


def test_no_large_epsilon_probe_is_insufficient_data():
    conditions = [c for c in healthy() if c["severity"] != 0.5]
    finding = find(sanity_checks(conditions), LARGE_EPSILON, "pgd")
    assert finding["status"] == "insufficient_data" and "pgd@0.5" in finding["message"]
    assert not [f for f in sanity_checks(conditions) if f["check"] == LARGE_EPSILON and f["attack"] == "fgsm"]


def test_pgd_weaker_than_fgsm_fails():
    conditions = healthy()
    conditions[3] = cond("pgd", 8 / 255, 0.55)
    finding = find(sanity_checks(conditions), ITERATIVE_STRONGER, "pgd")
    assert finding["status"] == "fail" and finding["observed"] == pytest.approx(0.15)


def test_zero_epsilon_must_match_clean():
    conditions = healthy()
    conditions[1] = cond("pgd", 0.0, 0.93)
    assert find(sanity_checks(conditions), ZERO_EPSILON, "pgd")["status"] == "fail"
    conditions[1] = cond("pgd", 0.0, 0.949)  # one sample in 1000
    assert find(sanity_checks(conditions), ZERO_EPSILON, "pgd")["status"] == "pass"


def test_attack_subset_compares_with_clean_by_sampling_noise_and_warns():
    conditions = [cond(None, 0, 0.95, n=1000), cond("pgd", 0.0, 0.80, n=100), cond("pgd", 0.03, 0.1, n=100)]
    assert find(sanity_checks(conditions), ZERO_EPSILON, "pgd")["status"] == "warn"
    conditions[1] = cond("pgd", 0.0, 0.92, n=100)
    assert find(sanity_checks(conditions), ZERO_EPSILON, "pgd")["status"] == "pass"


def test_missing_data_and_labels():
    assert sanity_checks([cond(None, 0, 0.9), cond("night", 1, 0.8)]) == []
    findings = sanity_checks([cond("pgd_strong", 0.01, 0.5)], attacks={"pgd_strong": PGD})
    statuses = {f["check"]: f["status"] for f in findings}
    assert statuses == {
        MONOTONE: "insufficient_data",
        LARGE_EPSILON: "insufficient_data",
        ZERO_EPSILON: "insufficient_data",
    }


def test_noise_tolerance_matches_hand_computation():
    assert noise_tolerance(0.5, 100, 0.5, 100) == pytest.approx(1.96 * (0.005**0.5) + 0.01)


# ------------------------------------------------------------------- AutoAttack's flags


def details(attacked, zero=0, randomised=False, eot=1):
    return {
        "n": attacked,
        "randomised_model": randomised,
        "eot_samples": eot,
        "zero_gradient_samples": zero,
        "members": [{"member": "apgd-ce", "attacked": attacked, "robust": 0, "seconds": 1.0}],
    }


def test_every_check_says_what_it_means_for_the_verdict():
    assert set(MEANING) == set(CHECKS)


def test_an_ensemble_weaker_than_a_single_attack_fails():
    conditions = [cond(None, 0, 0.95), cond("autoattack", 0.03, 0.40), cond("pgd", 0.03, 0.20)]
    hit = find(sanity_checks(conditions), ENSEMBLE_STRONGEST, "autoattack")
    assert hit["status"] == "fail" and hit["observed"] == pytest.approx(0.20)
    assert MEANING[ENSEMBLE_STRONGEST] in hit["message"]
    ok = [cond(None, 0, 0.95), cond("autoattack", 0.03, 0.18), cond("pgd", 0.03, 0.20)]
    assert find(sanity_checks(ok), ENSEMBLE_STRONGEST, "autoattack")["status"] == "pass"


def test_a_black_box_attack_stronger_than_a_white_box_one_warns():
    conditions = [cond(None, 0, 0.95), cond("pgd", 0.03, 0.60), cond("hopskipjump", 0.03, 0.30)]
    hit = find(sanity_checks(conditions), WHITE_BOX_STRONGER, "pgd")
    assert hit["status"] == "warn" and hit["observed"] == pytest.approx(0.30)
    assert "gradient masking" in hit["message"]
    ok = [cond(None, 0, 0.95), cond("pgd", 0.03, 0.30), cond("hopskipjump", 0.03, 0.60)]
    assert find(sanity_checks(ok), WHITE_BOX_STRONGER, "pgd")["status"] == "pass"


def test_zero_gradients_and_randomised_models_are_flagged_from_attack_details():
    zero = cond("apgd", 0.03, 0.5) | {"attack_details": details(100, zero=7)}
    hit = find(sanity_checks([cond(None, 0, 0.9), zero]), ZERO_GRADIENTS, "apgd")
    assert hit["status"] == "warn" and hit["observed"] == pytest.approx(0.07)
    no_eot = cond("apgd", 0.03, 0.5) | {"attack_details": details(100, randomised=True)}
    assert find(sanity_checks([cond(None, 0, 0.9), no_eot]), RANDOMISED, "apgd")["status"] == "fail"
    eot = cond("apgd", 0.03, 0.5) | {"attack_details": details(100, randomised=True, eot=20)}
    hit = find(sanity_checks([cond(None, 0, 0.9), eot]), RANDOMISED, "apgd")
    assert hit["status"] == "warn" and "20 gradient samples" in hit["message"]
    plain = cond("apgd", 0.03, 0.5) | {"attack_details": details(100)}
    findings = sanity_checks([cond(None, 0, 0.9), plain])
    assert find(findings, RANDOMISED, "apgd")["status"] == "pass"
    assert find(findings, ZERO_GRADIENTS, "apgd")["status"] == "pass"
