"""Policies: rules over stored results, data-governance checks, the verdict.

Public surface::

    PolicyGate(policy) / PolicyGate.load(name_or_path)          # what a run asks its policy
        .scan(id_column=, now=) -> GovernanceReading            # governance while reading
        .plan(run_plan) / .stop_targets(run_plan) / .judge(results, findings=)
    load_policy(name_or_path) -> Policy
    available_policies() -> list[str]
    check_policy(results, policy, *, findings=None) -> dict      # results.json "policy"
    check_governance(rows, *, config, id_column=None, now=None) -> list[dict]
    report_image_mode(policy, findings, requested) -> str
    parse_date(text, *, date_format="iso") -> datetime
    PolicyError

A run asks its policy only through :class:`PolicyGate`; the pieces it is built from
(:func:`check_gate`, :func:`validate_policy`, :func:`stop_targets`, :class:`GovernanceScan`,
:func:`judge_findings`) stay public for the commands that judge stored results, and so does
the governance check registry (:class:`GovernanceCheck`, :func:`governance_checks`,
:func:`check_names`, :func:`register_check`). Callers outside ``policies`` import from here,
never from a submodule (an import-linter contract in pyproject.toml).

Manifests are read by :func:`audit.contract.manifest.read_manifest` (one reader for
the evaluator and the governance checks).

Policies never run a model: they judge the results as stored.
"""

from policies.dates import parse_date
from policies.early_stop import stop_targets
from policies.engine import check_policy
from policies.errors import PolicyError
from policies.findings import judge_findings
from policies.gate import GovernanceReading, PolicyGate
from policies.governance import (
    GovernanceCheck,
    GovernanceScan,
    check_governance,
    check_names,
    governance_checks,
    register_check,
    unregister_check,
)
from policies.loader import available_policies, builtin_policy_text, load_policy, parse_policy, read_policy_file
from policies.privacy import report_image_mode
from policies.schema import GovernanceConfig, Policy
from policies.validate import check_gate, validate_policy

__all__ = [
    "GovernanceCheck",
    "GovernanceConfig",
    "GovernanceReading",
    "GovernanceScan",
    "Policy",
    "PolicyError",
    "PolicyGate",
    "available_policies",
    "builtin_policy_text",
    "check_gate",
    "check_governance",
    "check_names",
    "check_policy",
    "governance_checks",
    "judge_findings",
    "load_policy",
    "parse_date",
    "parse_policy",
    "read_policy_file",
    "register_check",
    "report_image_mode",
    "stop_targets",
    "unregister_check",
    "validate_policy",
]
