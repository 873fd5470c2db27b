"""Policies: rules over stored results, data-governance checks, the verdict.

Public surface::

    load_policy(name_or_path) -> Policy
    available_policies() -> list[str]
    check_policy(results, policy, *, findings=None) -> dict      # results.json "policy"
    check_governance(rows, *, config, id_column=None, now=None) -> list[dict]
    read_manifest(path) -> Iterator[dict[str, str]]
    report_image_mode(policy, findings, requested) -> str
    parse_date(text, *, date_format="iso") -> datetime
    PolicyError, ManifestError

Policies never run a model: they judge the results dict as stored.
"""

from policies.dates import parse_date
from policies.engine import check_policy
from policies.errors import PolicyError
from policies.governance import check_governance
from policies.loader import available_policies, load_policy, parse_policy
from policies.manifest import ManifestError, read_manifest
from policies.privacy import report_image_mode
from policies.schema import Policy

__all__ = [
    "ManifestError",
    "Policy",
    "PolicyError",
    "available_policies",
    "check_governance",
    "check_policy",
    "load_policy",
    "parse_date",
    "parse_policy",
    "read_manifest",
    "report_image_mode",
]
