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

Manifests are read by :func:`audit.contract.manifest.read_manifest` (one reader for
the evaluator and the governance checks).

The runner and ``cvaudit run`` ask the policy only through :class:`PolicyGate`.

Policies never run a model: they judge the results dict as stored.
"""

from policies.dates import parse_date
from policies.engine import check_policy
from policies.errors import PolicyError
from policies.gate import GovernanceReading, PolicyGate
from policies.governance import check_governance
from policies.loader import available_policies, load_policy, parse_policy
from policies.privacy import report_image_mode
from policies.schema import Policy

__all__ = [
    "GovernanceReading",
    "Policy",
    "PolicyError",
    "PolicyGate",
    "available_policies",
    "check_governance",
    "check_policy",
    "load_policy",
    "parse_date",
    "parse_policy",
    "report_image_mode",
]
