"""The policy façade a run uses (:class:`policies.PolicyGate`): the same answers as the modules it calls."""

from __future__ import annotations

import datetime as dt

import pytest
from conftest import typed

from audit.contract.manifest import chunks_of_rows
from audit.contract.plan import PlannedCondition, RunPlan
from policies import (
    PolicyError,
    PolicyGate,
    check_governance,
    check_policy,
    load_policy,
    parse_policy,
    report_image_mode,
)
from policies.early_stop import stop_targets
from policies.findings import judge_findings

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
PLAN = RunPlan(
    source="config.yaml",
    conditions=(PlannedCondition("clean"), PlannedCondition("night@3", "night", 3.0)),
    attributes={"camera": ("A", "B")},
    intervals=frozenset({"accuracy"}),
)
ROWS = [
    {"sample_id": "s1", "captured_at": "2000-01-01", "consent": "yes", "region": "eu-west"},
    {"sample_id": "s2", "captured_at": "2025-06-01", "consent": "", "region": "us-east"},
]


def test_a_gate_on_nothing_is_refused_when_the_policy_is_loaded():
    nothing = (
        "version: 1\nname: n\nrules:\n  - {id: r, condition: clean, metric: accuracy, min: 0.5, blocking: false}\n"
    )
    with pytest.raises(PolicyError, match="gate would pass on nothing"):
        PolicyGate(parse_policy(nothing))
    assert PolicyGate.load("ci-gate").name == "ci-gate"


def test_plan_refuses_a_rule_that_can_never_match_before_the_run():
    policy = "version: 1\nname: p\nrules:\n  - {id: fog, condition: 'fog@*', metric: accuracy, min: 0.5}\n"
    with pytest.raises(PolicyError, match="fog"):
        PolicyGate(parse_policy(policy)).plan(PLAN)
    matching = "version: 1\nname: p\nrules:\n  - {id: night, condition: 'night@*', metric: accuracy, min: 0.5}\n"
    assert PolicyGate(parse_policy(matching)).plan(PLAN) == {}


def test_stop_targets_are_the_early_stop_module_s():
    policy = load_policy("ci-gate")
    assert PolicyGate(policy).stop_targets(PLAN) == stop_targets(policy, PLAN)


def test_the_scan_while_reading_finds_what_check_governance_finds():
    policy = load_policy("demo")
    reading = PolicyGate(policy).scan(id_column="sample_id", now=NOW)
    for chunk in chunks_of_rows(ROWS, rows_per_chunk=1):
        reading.on_chunk(chunk)
    affected: list[dict] = []
    expected = judge_findings(check_governance(ROWS, policy=policy, now=NOW, affected=affected), policy)
    assert reading.findings() == expected and any(f["count"] for f in expected)
    assert reading.affected == affected and affected
    assert reading.image_mode(expected, "raw") == report_image_mode(policy, expected, "raw") != "raw"


def test_a_policy_without_governance_scans_nothing():
    policy = "version: 1\nname: p\nrules:\n  - {id: c, condition: clean, metric: accuracy, min: 0.5}\n"
    reading = PolicyGate(parse_policy(policy)).scan(id_column=None, now=NOW)
    assert reading.on_chunk is None and reading.findings() == [] and reading.affected == []


def test_judge_is_check_policy(results):
    policy = load_policy("ci-gate")
    section = PolicyGate(policy).judge(typed(results), findings=[])
    assert section == check_policy(typed(results), policy, findings=[]) and section["verdict"] in ("pass", "fail")
