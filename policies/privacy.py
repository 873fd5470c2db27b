"""Whether the report may show example images, and how."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from policies.governance import PERSONAL_DATA_CHECKS
from policies.schema import Policy, ReportConfig

IMAGE_MODES = ("none", "anonymized", "raw")


def report_image_mode(policy: Policy | None, findings: Iterable[dict[str, Any]], requested: str) -> str:
    """The image mode the report may use: the most private of the three caps.

    1. ``requested`` (the run's ``report.images``);
    2. the policy's ``report.images`` (default ``anonymized``);
    3. whenever personal data is found -- a finding of a personal-data check
       (:data:`policies.governance.PERSONAL_DATA_CHECKS`) that counts samples
       (whatever its status), or any sample marked biometric, even with a
       recorded basis -- the policy's ``report.images_with_personal_data``: ``none``
       by default, ``anonymized`` only when the policy says so explicitly;
       raw images of personal data are never allowed.

    Args:
        policy: The policy, or ``None`` for the defaults.
        findings: Governance findings from :func:`policies.check_governance`.
        requested: ``"none"``, ``"anonymized"`` (heavily pixelated) or ``"raw"``.

    Returns:
        One of ``"none"``, ``"anonymized"``, ``"raw"``.

    Raises:
        ValueError: ``requested`` is not one of the three modes.

    >>> report_image_mode(None, [], "raw")
    'anonymized'
    """
    if requested not in IMAGE_MODES:
        raise ValueError(f"report image mode must be one of {', '.join(IMAGE_MODES)}, got {requested!r}")
    report = policy.report if policy is not None else ReportConfig()
    caps = [requested, report.images]
    findings = list(findings)
    if any(_personal(f) for f in findings):
        personal = report.images_with_personal_data
        caps.append(personal if personal in ("none", "anonymized") else "none")
    return min(caps, key=IMAGE_MODES.index)


def _count(value: Any) -> float:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def _personal(finding: dict[str, Any]) -> bool:
    """A personal-data finding that found samples, or biometric samples at all
    (not a mere "cannot tell" warning with a zero count)."""
    if _count(finding.get("biometric_rows")) > 0:
        return True
    return finding.get("check") in PERSONAL_DATA_CHECKS and _count(finding.get("count")) > 0
