"""Policy rules over a detector's per-object breaking points (``section: detection.breaking_points``):
judged as a classifier's breaking-point rules are, and refused before the run when they can never match."""

from __future__ import annotations

import pytest
from detection_results import _condition, detection_results

from audit.contract.plan import PlannedCondition
from policies import check_policy
from policies.errors import PolicyError
from policies.gate import PolicyGate
from policies.schema import Policy
from tests.policies.test_detection_policy import runner_plan

SECTION = "detection.breaking_points"


def _entry(attribute, value, s1, s3, *, ci=0.05, median=3, n=120, small=False):
    return {
        "id": "night" if attribute is None else f"night:{attribute}={value}",
        "stressor": "night",
        "measure": "severity",
        "attribute": attribute,
        "level": "all" if attribute is None else ("object" if attribute.startswith("object.") else "image"),
        "value": value,
        "n": n,
        "n_images": n // 2,
        "missed_on_clean": 7,
        "broken": n - n // 3 - 1,
        "never": n // 3,
        "dropped": 1,
        "median": median,
        "median_ci": [1, None],
        "median_censored": False,
        "insufficient_data": small,
        "survival": [
            {
                "severity": lv,
                "condition": f"night@{lv}",
                "surviving": s,
                "surviving_ci": [s - ci, min(1.0, s + ci)],
                "at_risk": n,
                "broken": 5,
                "dropped": 1,
            }
            for lv, s in ((1, s1), (3, s3))
        ],
    }


def _with_breaking(d):
    d["detection"]["conditions"].insert(1, _condition("night@1", "night", 1, 0.45, 0.65, (0.70, 0.60)))
    d["detection"]["breaking_points"] = {
        "score_threshold": 0.5,
        "iou_threshold": 0.5,
        "n_bootstrap": 200,
        "entries": [
            _entry(None, None, 0.8, 0.55),
            _entry("camera", "A", 0.9, 0.7),
            _entry("camera", "B", 0.7, 0.4, ci=0.12, median=1),
            _entry("camera", "C", 0.2, 0.1, n=5, small=True),
            _entry("object.size", "small", 0.6, 0.45),
        ],
        "disparity": [
            {
                "id": "night:camera",
                "stressor": "night",
                "attribute": "camera",
                "level": "image",
                "groups_compared": 2,
                "disparity": 0.3,
                "disparity_ci": [0.05, 0.55],
                "at_severity": 3,
                "worst_group": "B",
                "best_group": "A",
                "median_gap": 2.0,
                "excluded": ["C"],
            }
        ],
    }


def _policy(*rules: dict, **settings) -> Policy:
    return Policy.model_validate({"version": 1, "name": "det", "rules": list(rules), **settings})


def _one(rule: dict, results=None, **settings) -> dict:
    results = results or detection_results(_with_breaking)
    outcome = check_policy(results, _policy({"id": "r", "section": SECTION, **rule}, **settings), findings=[])
    return outcome["rules"][0]


def _plan(**changes):
    conditions = (
        PlannedCondition("clean"),
        PlannedCondition("night@1", "night", 1.0),
        PlannedCondition("night@3", "night", 3.0),
    )
    return runner_plan(**{"conditions": conditions, **changes})


def test_minimum_survival_at_a_level_per_subgroup():
    rule = {"entry": "night:camera=*", "metric": "survival[severity=3].surviving", "min": 0.5}
    got = _one(rule, on_insufficient_data="warn")
    assert (got["status"], got["observed"], got["condition"]) == ("fail", 0.4, f"{SECTION}[night:camera=B]")
    statuses = {e["condition"]: e["status"] for e in got["evaluations"]}
    assert statuses == {
        f"{SECTION}[night:camera=A]": "pass",
        f"{SECTION}[night:camera=B]": "fail",
        f"{SECTION}[night:camera=C]": "insufficient_data",  # 5 objects: flagged
    }
    assert _one({**rule, "entry": "night:camera=A"})["status"] == "pass"
    assert _one({**rule, "metric": "survival[condition=night@1].surviving", "entry": "night:camera=[AB]"})[
        "status"
    ] == ("pass")


def test_a_small_group_fails_closed_by_default():
    got = _one({"entry": "night:camera=C", "metric": "median", "min": 0})
    assert (got["status"], got["n"]) == ("fail", 5)
    assert got["message"].startswith("insufficient data for median") and "on_insufficient_data=fail" in got["message"]


def test_interval_ends_are_judged():
    got = _one({"entry": "night:camera=B", "metric": "survival[severity=3].surviving", "min": 0.3, "judge": "ci_lower"})
    assert got["status"] == "fail" and got["observed"] == pytest.approx(0.28)
    got = _one(
        {"entry": "night:camera=B", "metric": "survival[severity=3].surviving", "min": 0.25, "judge": "ci_lower"}
    )
    assert got["status"] == "pass"


def test_median_breaking_severity():
    got = _one({"entry": "night:camera=[AB]", "metric": "median", "min": 2})
    assert (got["status"], got["observed"]) == ("fail", 1)
    assert _one({"entry": "night", "metric": "median", "min": 2})["status"] == "pass"


def test_maximum_gap_in_survival_between_subgroups():
    got = _one({"entry": "night:camera", "metric": "disparity", "max": 0.2})
    assert (got["status"], got["observed"]) == ("fail", 0.3)
    got = _one({"entry": "night:camera", "metric": "disparity", "max": 0.2, "judge": "ci_lower"})
    assert (got["status"], got["observed"]) == ("pass", 0.05)  # the data do not show the gap above 0.2


def test_results_without_the_section():
    results = detection_results(
        lambda d: d["detection"]["conditions"].insert(1, _condition("night@1", "night", 1, 0.4, 0.6, (0.7, 0.6)))
    )
    with pytest.raises(PolicyError, match="section 'detection.breaking_points' is not in the results"):
        _one({"entry": "night", "metric": "median", "min": 1}, results=results)
    other = {"id": "map", "condition": "clean", "metric": "map", "min": 0.5}
    rule = {"id": "r", "section": SECTION, "entry": "night", "metric": "median", "min": 1, "required": False}
    got = check_policy(results, _policy(rule, other), findings=[])["rules"][0]
    assert got["status"] == "not_applicable"


@pytest.mark.parametrize(
    "rule, key, words",
    [
        ({"entry": "fog", "metric": "median", "min": 1}, "entry", "matches nothing"),
        ({"entry": "night:camera=D", "metric": "median", "min": 1}, "entry", "night:camera=A"),
        ({"metric": "median", "min": 1}, "entry", "name the entry"),
        ({"entry": "night:*", "metric": "median", "min": 1}, "entry", "both subgroups and disparities"),
        ({"entry": "night", "metric": "survival[severity=2].surviving", "min": 0.5}, "metric", "have: 1, 3"),
        ({"entry": "night", "metric": "survival[severity=3.0].surviving", "min": 0.5}, "metric", "have: 1, 3"),
        ({"entry": "night", "metric": "survival[condition=night@2].surviving", "min": 0.5}, "metric", "night@1, night@3"),
        ({"entry": "night", "metric": "survival[severity=3].share", "min": 0.5}, "metric", "unknown key 'share'"),
        ({"entry": "night", "metric": "medain", "min": 1}, "metric", "unknown metric 'medain'"),
        ({"entry": "night:camera", "metric": "median", "min": 1}, "metric", "disparity"),
        ({"entry": "night", "metric": "n", "min": 10, "judge": "ci_lower"}, "judge", "needs an interval 'n_ci'"),
    ],
)  # fmt: skip
def test_a_rule_that_can_never_match_is_an_error_before_the_run(rule, key, words):
    gate = PolicyGate(_policy({"id": "bad-rule", "section": SECTION, **rule}))
    with pytest.raises(PolicyError) as err:
        gate.plan(_plan())
    text = str(err.value)
    assert "\n" not in text and "rule 'bad-rule'" in text and f"key '{key}'" in text and words in text, text


def test_no_stressor_with_two_levels_and_no_intervals():
    rule = {"id": "m", "section": SECTION, "entry": "night", "metric": "median", "min": 1}
    with pytest.raises(PolicyError, match="needs a stressor entry with two or more severities"):
        PolicyGate(_policy(rule)).plan(runner_plan())  # night@3 only
    other = {"id": "map", "condition": "clean", "metric": "map", "min": 0.5}
    assert PolicyGate(_policy({**rule, "required": False}, other)).plan(runner_plan()) == {
        "m": "no stressor entry with two or more severities in this run (required: false)"
    }
    with pytest.raises(PolicyError, match="evaluation.n_bootstrap is 0"):
        PolicyGate(_policy({**rule, "judge": "ci_lower"})).plan(_plan(intervals=frozenset()))
    PolicyGate(_policy(rule)).plan(_plan(intervals=frozenset()))  # a point estimate needs none
    with pytest.raises(PolicyError, match="written by a detection run"):
        PolicyGate(_policy(rule)).plan(_plan(task="classification", attributes={}, intervals=frozenset()))


def test_rule_words():
    from reports.rule_words import rule_in_words

    outcome = check_policy(
        detection_results(_with_breaking),
        _policy(
            {
                "id": "s",
                "section": SECTION,
                "entry": "night:camera=B",
                "metric": "survival[severity=3].surviving",
                "min": 0.5,
            },
            {"id": "m", "section": SECTION, "entry": "night", "metric": "median", "min": 1.5},
            {"id": "d", "section": SECTION, "entry": "night:camera", "metric": "disparity", "max": 0.2},
        ),
        findings=[],
    )
    got = {r["id"]: rule_in_words(r) for r in outcome["rules"]}
    assert got["s"] == (
        f"The share of objects still found at severity 3 in {SECTION}[night:camera=B] must be at least 0.5"
    )
    assert got["m"] == f"The median breaking severity of the objects in {SECTION}[night] must be at least 1.5"
    assert got["d"] == (
        f"The largest gap in object survival between the groups in {SECTION}[night:camera] must be at most 0.2"
    )


def test_the_plan_of_stored_results_leaves_out_an_attacks_epsilon_zero_as_the_run_does():
    """An attack with ε [0, e] has one measured level, so no track: a stored plan must not count ε = 0."""
    from audit.contract.plan import RunPlan
    from policies.detection import _planned_tracks

    def edit(d):
        d["stressors"] = [
            {
                "name": "detection_pgd",
                "stressor": "detection_pgd",
                "model_aware": True,
                "severities": [0, 0.0157],
                "severity_meaning": {},
                "description": "PGD on a detector",
                "options": {},
            }
        ]
        d["detection"]["conditions"][1:1] = [
            _condition("detection_pgd@0", "detection_pgd", 0, 0.62, 0.80, (0.90, 0.70)),
            _condition("detection_pgd@0.0157", "detection_pgd", 0.0157, 0.10, 0.20, (0.20, 0.20)),
        ]

    plan = RunPlan.from_results(detection_results(edit), source="results.json")
    assert [c.model_aware for c in plan.conditions if c.stressor == "detection_pgd"] == [True, True]
    assert _planned_tracks(plan) == []
