"""Policy rules over breaking points: the existing section/entry targets, small groups insufficient."""

from __future__ import annotations

from conftest import typed

from policies import check_policy, parse_policy


def entry(value, median, *, small=False, ci=(1.0, 3.0)):
    return {
        "id": "night" if value is None else f"night:camera={value}",
        "stressor": "night",
        "attribute": None if value is None else "camera",
        "value": value,
        "n": 10 if small else 120,
        "median": median,
        "median_ci": list(ci),
        "insufficient_data": small,
    }


RESULTS = {
    "conditions": [{"id": "clean", "stressor": None, "severity": 0, "metrics": {"n": 200, "accuracy": 0.9}}],
    "breaking_points": [entry(None, 2.5), entry("A", 3.5), entry("B", 1.5), entry("C", 0.5, small=True)],
}

POLICY = """
version: 1
name: bp
on_insufficient_data: {mode}
rules:
  - {{id: night-median, section: breaking_points, entry: "{entry}", metric: median, min: {threshold}, judge: {judge}}}
"""


def judge(threshold: float, judge: str = "point", entry: str = "night:camera=*", mode: str = "warn") -> dict:
    policy = parse_policy(POLICY.format(threshold=threshold, judge=judge, entry=entry, mode=mode))
    return check_policy(typed(RESULTS), policy)["rules"][0]


def test_every_group_must_reach_the_median():
    failed = judge(2.0)
    assert failed["status"] == "fail" and failed["observed"] == 1.5
    assert failed["condition"] == "breaking_points[night:camera=B]"
    assert judge(1.0, entry="night:camera=[AB]")["status"] == "pass"


def test_a_small_group_is_insufficient_data_not_a_failure():
    rule = judge(1.0)
    assert rule["status"] == "insufficient_data"  # what on_insufficient_data: warn makes of it
    assert judge(1.0, mode="fail")["status"] == "fail"  # the default fails closed
    statuses = {e["condition"]: e["status"] for e in rule["evaluations"]}
    assert statuses["breaking_points[night:camera=C]"] == "insufficient_data"
    assert statuses["breaking_points[night:camera=A]"] == "pass"


def test_the_interval_bound_can_be_judged():
    rule = judge(1.5, "ci_lower", entry="night:camera=[AB]")
    assert rule["status"] == "fail" and rule["observed"] == 1.0
