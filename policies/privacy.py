"""Whether the report may show example images, and how."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from policies.pii import PERSONAL_DATA_CHECKS
from policies.schema import Policy, ReportConfig

IMAGE_MODES = ("none", "anonymized", "raw")


def report_image_mode(
    policy: Policy | None, findings: Iterable[dict[str, Any]], requested: str
) -> str:
    """The image mode the report may use: the most private of the three caps.

    1. ``requested`` (the run's ``report.images``);
    2. the policy's ``report.images`` (default ``anonymized``);
    3. when a PII or biometric finding is not ``pass`` and counts samples: the policy's
       ``report.images_with_personal_data`` (default ``none``); when the
       manifest marks biometric samples (even with a recorded basis), at most
       ``anonymized``.

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
        raise ValueError(
            f"report image mode must be one of {', '.join(IMAGE_MODES)}, got {requested!r}"
        )
    report = policy.report if policy is not None else ReportConfig()
    caps = [requested, report.images]
    findings = list(findings)
    if any(_personal(f) for f in findings):
        caps.append(report.images_with_personal_data)
    if any((f.get("biometric_rows") or 0) > 0 for f in findings):
        caps.append("anonymized")
    return min(caps, key=IMAGE_MODES.index)


def _personal(finding: dict[str, Any]) -> bool:
    """A PII or biometric finding that found samples (not a mere "cannot tell" warning)."""
    return (
        finding.get("check") in PERSONAL_DATA_CHECKS
        and finding.get("status") != "pass"
        and (finding.get("count") or 0) > 0
    )
