"""results.json ``governance`` and ``policy``: data-governance findings, rule outcomes, the verdict."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from audit.contract.results.base import Node

__all__ = ["Evaluation", "Failure", "Governance", "GovernanceFinding", "PolicyOutcome", "RuleResult", "Status"]

Status = Literal["pass", "fail", "warn", "insufficient_data"]
RuleStatus = Literal["pass", "fail", "warn", "insufficient_data", "not_applicable"]


class GovernanceFinding(Node):
    """One data-governance check over the manifest (retention, consent, PII, region ...)."""

    check: str = Field(description="e.g. 'consent_withdrawn', 'retention_expired', 'pii_columns'")
    status: Status = Field(
        description="fail (blocking and found), warn (found, or cannot tell), pass, insufficient_data"
    )
    blocking: bool = Field(description="whether this check fails the verdict under the policy that judged it")
    count: int | None = Field(ge=0, description="samples affected; null when the check was not run")
    total: int | None = Field(ge=0, description="samples checked")
    sample_ids: list[str] = Field(description="the first affected sample ids (never personal values)")
    message: str = Field(description="one line: how many samples, and what was found")
    clause: str | None = Field(default=None, description="the regulation clause the check serves")
    columns: list[str] | None = Field(default=None, description="manifest columns involved")
    biometric_rows: int | None = Field(default=None, ge=0, description="rows marked biometric (biometric check)")
    informational: bool | None = Field(
        default=None, description="true when the judging policy does not configure this check: it never blocks"
    )
    settings: dict[str, Any] | None = Field(
        default=None,
        description="the settings the count was made with (retention period, allowed regions, columns ...): "
        "a policy with other settings cannot re-judge the count",
    )
    judgeable: bool | None = Field(
        default=None,
        description="false when the check could not be judged (a column it reads is absent, or the count was made "
        "under other settings); its status then follows on_insufficient_data",
    )


class Governance(Node):
    findings: list[GovernanceFinding] = Field(description="one per governance check the policy configures")
    policy: str | None = Field(default=None, description="the policy whose settings the findings were counted with")
    audit_date: str | None = Field(
        default=None, description="ISO 8601 date the checks were run on (retention is measured to it)"
    )


class Evaluation(Node):
    """One target of a rule whose selector matched several (e.g. every condition of 'night@*')."""

    condition: str | None = Field(description="condition id of this target")
    group: str | None = Field(description="group ('attribute=value') or attribute of this target")
    observed: float | None = Field(description="the judged value")
    n: int | None = Field(description="samples behind the value")
    status: Literal["pass", "fail", "insufficient_data", "not_applicable"] = Field(description="this target's outcome")
    p_value: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="tested rules: this target's p-value (detect: smallest Holm-adjusted over all the rule's pairs; demonstrate: largest per-pair)",
    )
    power: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="detect: this target's power against the rule's power_against; absent before 1.6",
    )
    min_detectable: float | None = Field(
        default=None,
        description="tested detect rules: the smallest true gap (ratio rules: the largest true ratio) found with 80 % probability here",
    )


class RuleResult(Node):
    """The outcome of one policy rule."""

    id: str = Field(description="the rule's id in the policy")
    kind: Literal["metric", "finding"] = Field(
        description="metric (a threshold on a number) or finding (a named check's status)"
    )
    status: RuleStatus = Field(
        description="fail only for a blocking rule (a failed non-blocking rule is 'warn'); not_applicable when the "
        "rule's target is absent and the rule says required: false"
    )
    blocking: bool = Field(description="whether a failure fails the verdict")
    observed: float | str | None = Field(description="the judged value (a check's status for kind 'finding')")
    threshold: float | str | None = Field(description="the bound (a number; a status set for kind 'finding')")
    op: Literal["min", "max"] | None = Field(default=None, description="min: observed must be >= threshold")
    metric: str | None = Field(default=None, description="the judged metric (a results.json key under the target)")
    judge: Literal["point", "ci_lower", "ci_upper"] | None = Field(
        default=None, description="point (the estimate), ci_lower or ci_upper (a bound of its interval)"
    )
    aggregate: Literal["gap", "ratio", "worst"] | None = Field(
        default=None, description="gap, ratio or worst across the groups of an attribute"
    )
    test: Literal["detect", "demonstrate", "point"] | None = Field(
        default=None,
        description="how a difference between groups was decided: detect (fail only when the data show it exceeds the tolerance), demonstrate (pass only when they show it is within), point (the estimate against the threshold)",
    )
    confidence: float | None = Field(default=None, gt=0.0, lt=1.0, description="the test's confidence 1 - alpha")
    p_value: float | None = Field(
        default=None, ge=0.0, le=1.0, description="the decisive target's p-value (see evaluations[].p_value)"
    )
    min_detectable: float | None = Field(
        default=None,
        description="detect: the smallest true gap (ratio rules: the largest true ratio) the rule finds with 80 % probability at the decisive target",
    )
    testable: bool | None = Field(
        default=None,
        description="false when the data are too few for the rule to tell (detect: power below 80 % against the alternative power_against, from 1.6 on; before 1.6 the minimum detectable gap exceeded twice the tolerance; demonstrate: a true gap of 0 would not be shown within tolerance with 80 % probability)",
    )
    samples_needed: int | None = Field(
        default=None,
        ge=1,
        description="samples per group at which the rule becomes testable (proportion gaps and ratios); detect, from 1.6 on: the equal group size from which the exact power against power_against stays at or above 80 %",
    )
    power: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="detect: the probability that the test fails the rule when the decisive target's hardest pair differs by power_against (exact over the binomials for proportions; Holm's first-step level); null when the rule states no alternative (tolerance 0); absent before 1.6",
    )
    power_against: float | None = Field(
        default=None,
        description="detect: the alternative the power is against: a true gap of twice the tolerance, or a true ratio of 2·ρ - 1; absent before 1.6",
    )
    insufficient_evidence: bool | None = Field(
        default=None,
        description="detect: true when the test showed no violation with power below 80 % (untestable): the status follows on_insufficient_data and the message starts with 'insufficient evidence'; absent before 1.6",
    )
    decided_early: int | None = Field(
        default=None,
        ge=0,
        description="evaluation.early_stop: the samples after which an anytime-valid test decided this rule",
    )
    check: str | None = Field(default=None, description="the judged check (kind 'finding')")
    condition: str | None = Field(description="the condition of the decisive target")
    group: str | None = Field(description="the group or attribute of the decisive target")
    n: int | None = Field(default=None, description="samples behind the judged value (the smallest group for gaps)")
    count: int | None = Field(default=None, description="samples affected (kind 'finding' over a governance check)")
    clause: str | None = Field(description="the regulation clause the rule serves")
    description: str | None = Field(description="the rule's description from the policy")
    message: str = Field(
        description="one line: observed value, comparison and threshold, or why it could not be judged"
    )
    evaluations: list[Evaluation] | None = Field(default=None, description="every target, when several matched")


class Failure(Node):
    """One thing that failed the verdict."""

    id: str = Field(description="the rule id, or 'governance.<check>'")
    kind: Literal["rule", "governance"] = Field(description="a policy rule or a governance check")
    observed: float | str | None = Field(description="the judged value (samples affected for a governance check)")
    threshold: float | str | None = Field(description="the bound (0 samples for a governance check)")
    op: Literal["min", "max"] | None = Field(description="min: observed must be >= threshold; max: <=")
    message: str = Field(description="one line saying what failed")


class PolicyOutcome(Node):
    """The verdict of one policy over these results."""

    name: str = Field(description="policy name")
    version: int = Field(description="policy file format version")
    sha256: str = Field(description="SHA-256 of the policy file bytes")
    verdict: Literal["pass", "fail"] = Field(
        description="fail iff a blocking rule or a blocking governance check failed"
    )
    report_only: bool | None = Field(
        default=None,
        description="true when the policy says report_only: it has no blocking rule or check, so it gates "
        "nothing and its verdict is always pass (absent for a gate)",
    )
    on_insufficient_data: Literal["fail", "warn", "pass"] = Field(
        description="what an unjudgeable rule does by default: fail, warn or pass"
    )
    counts: dict[str, int] = Field(description="rule status -> number of rules")
    governance_counts: dict[str, int] | None = Field(
        default=None, description="governance finding status -> number of checks, as judged by this policy"
    )
    blocking_failures: list[str] = Field(
        description="ids of everything that failed the verdict: rule ids and 'governance.<check>'"
    )
    failures: list[Failure] | None = Field(
        default=None, description="each blocking failure with its observed value and threshold (same order)"
    )
    rules: list[RuleResult]
