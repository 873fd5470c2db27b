"""The adversarial section's headline (the ensemble's robust accuracy), the chart's strongest attack and the
meanings of the sanity checks, on hand-made results (duck-typed: only the fields these functions read)."""

from __future__ import annotations

from types import SimpleNamespace as NS

import audit.evaluation.adversarial_checks as evaluation_checks
from audit.contract.adversarial_meaning import CHECKS, ENSEMBLE_STRONGEST, MEANING, MONOTONE, ZERO_GRADIENTS
from reports.ensemble_view import ensemble_headline, ensemble_labels
from reports.html.curves import strongest
from reports.html.sections.measures import check_meanings


def _cond(stressor: str, eps: float, acc: float, probe: bool = False) -> NS:
    return NS(
        id=f"{stressor}@{eps:g}",
        stressor=stressor,
        severity=eps,
        probe=probe,
        metrics=NS(accuracy=acc, accuracy_ci=[acc - 0.05, acc + 0.05]),
    )


def _linf(*eps: float) -> dict[str, str]:
    """severity_meaning as results.json records it for an L∞ attack."""
    return {f"{e:g}": f"L-inf perturbation <= {e:.4g} per pixel ({e * 255:.3g}/255 grey levels)" for e in eps}


def _results() -> NS:
    stressors = [
        NS(
            name="pgd",
            model_aware=True,
            options={"epsilons": [0.0, 0.01, 0.03, 0.1], "steps": 20},
            severity_meaning=_linf(0.0, 0.01, 0.03, 0.1),
        ),
        # one attack: no members
        NS(name="apgd", model_aware=True, options={"epsilons": [0.01], "n_iter": 100}, severity_meaning=_linf(0.01)),
        # an ensemble, by its record
        NS(
            name="aa",
            model_aware=True,
            options={"members": ["apgd-ce", "apgd-t"]},
            severity_meaning=_linf(0.01, 0.03, 0.5),
        ),
        NS(name="night", model_aware=False, options={}, severity_meaning={"3": "night level 3"}),
    ]
    conditions = [
        NS(id="clean", stressor=None, severity=0, probe=None, metrics=NS(accuracy=0.95, accuracy_ci=None)),
        _cond("night", 3, 0.7),
        _cond("pgd", 0.0, 0.95, probe=True),
        _cond("pgd", 0.01, 0.85),
        _cond("pgd", 0.03, 0.56),
        _cond("pgd", 0.1, 0.12),
        _cond("apgd", 0.01, 0.84),
        _cond("aa", 0.5, 0.0, probe=True),
        _cond("aa", 0.03, 0.53),
        _cond("aa", 0.01, 0.84),
    ]
    return NS(stressors=stressors, conditions=conditions)


def test_the_ensemble_is_recognised_by_its_recorded_members_not_its_name():
    assert ensemble_labels(_results()) == ["aa"]


def test_headline_rows_in_epsilon_order_with_probes_marked_and_the_other_attacks_beside():
    [h] = ensemble_headline(_results(), {"pgd", "apgd", "aa"})
    assert h["attack"] == "aa" and h["members"] == ["apgd-ce", "apgd-t"] and h["others"] == ["apgd", "pgd"]
    assert [(r["condition"], r["probe"], r["robust_accuracy"]) for r in h["rows"]] == [
        ("aa@0.01", False, 0.84),
        ("aa@0.03", False, 0.53),
        ("aa@0.5", True, 0.0),
    ]
    assert h["rows"][0]["others"] == {"apgd": 0.84, "pgd": 0.85}
    assert h["rows"][1]["others"] == {"apgd": None, "pgd": 0.56}  # apgd did not run ε = 0.03
    assert h["rows"][1]["ci"] == [0.53 - 0.05, 0.53 + 0.05]


def test_no_headline_without_an_ensemble():
    results = _results()
    results.stressors = [s for s in results.stressors if s.name != "aa"]
    results.conditions = [c for c in results.conditions if c.stressor != "aa"]
    assert ensemble_headline(results, {"pgd", "apgd"}) == []


def test_strongest_attack_is_compared_at_the_budgets_every_attack_ran():
    base = (0.0, 0.95)
    curves = {
        "autoattack": [base, (0.01, 0.84), (0.03, 0.53)],
        "pgd": [base, (0.01, 0.85), (0.03, 0.56), (0.1, 0.12)],  # lower mean only thanks to ε = 0.1
    }
    assert strongest(curves) == "autoattack"
    # no shared ε above 0: each attack's own points, as before
    assert strongest({"a": [base, (0.01, 0.5)], "b": [base, (0.1, 0.2)]}) == "b"


def test_check_meanings_once_per_check_in_the_checks_order():
    checks = [NS(check=ZERO_GRADIENTS), NS(check=MONOTONE), NS(check=MONOTONE), NS(check=ENSEMBLE_STRONGEST)]
    assert check_meanings(checks) == [
        {"check": c, "meaning": MEANING[c]} for c in (MONOTONE, ENSEMBLE_STRONGEST, ZERO_GRADIENTS)
    ]
    assert set(MEANING) == set(CHECKS)
    # the evaluator's findings and the report read the same words
    assert evaluation_checks.MEANING is MEANING and evaluation_checks.CHECKS is CHECKS


def test_attacks_of_another_norm_are_not_set_beside_the_ensemble():
    """An L2 ensemble at ε 0.5 next to L∞ PGD at ε 0.5 would read as the ensemble being the weaker attack."""
    l2 = {"0.5": "L2 norm of the perturbation <= 0.5 (pixel units of [0, 1])"}
    results = NS(
        stressors=[
            NS(name="aa_l2", model_aware=True, options={"members": ["apgd-ce"]}, severity_meaning=l2),
            NS(name="pgd", model_aware=True, options={}, severity_meaning=_linf(0.5)),
            NS(name="pgd_l2", model_aware=True, options={}, severity_meaning=l2),
        ],
        conditions=[_cond("aa_l2", 0.5, 0.60), _cond("pgd", 0.5, 0.0), _cond("pgd_l2", 0.5, 0.62)],
    )
    [h] = ensemble_headline(results, {"aa_l2", "pgd", "pgd_l2"})
    assert h["rows"][0]["others"] == {"pgd": None, "pgd_l2": 0.62}
