"""Data-governance checks over a dataset manifest.

Each configured check yields one finding::

    {check, status: pass|warn|fail, blocking, count, total, sample_ids, message}

``status`` is ``fail`` when a blocking check finds violations, ``warn`` when
a non-blocking one does (or when a check cannot be evaluated), ``pass``
otherwise. A finding carries counts, the first ``max_ids`` sample ids and
column names, never the personal values themselves; a sample id that itself
looks like personal data is replaced by ``row <n>``.

Checks (finding names; the policy key that configures them):

- ``retention_expired`` (``retention``): capture date + ``period_days`` is before ``now``;
- ``date_unparseable`` (``unparseable_dates``; runs with ``retention``): capture
  date missing or not in ``date_format``;
- ``consent_missing`` / ``consent_withdrawn`` (``consent``);
- ``purpose_missing`` (``purpose``), ``lawful_basis_missing`` (``lawful_basis``):
  empty, or not in ``allowed`` when given;
- ``pii_columns`` / ``pii_values`` (``pii``): forbidden columns holding values;
  e-mail addresses, phone numbers, national ids found by a conservative scan;
- ``biometric_without_basis`` (``biometric``): ``contains_face`` true and no
  ``biometric_basis``;
- ``region_not_allowed`` (``region``): storage/processing region missing or
  outside ``allowed``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from policies.dates import parse_date
from policies.pii import PERSONAL_DATA_CHECKS, normalise_column, pii_kinds
from policies.privacy import report_image_mode
from policies.schema import GovernanceConfig, Policy

__all__ = [
    "CHECK_SECTIONS",
    "PERSONAL_DATA_CHECKS",
    "check_governance",
    "report_image_mode",
]

CHECK_SECTIONS: dict[str, str] = {
    "retention_expired": "retention",
    "date_unparseable": "unparseable_dates",
    "consent_missing": "consent",
    "consent_withdrawn": "consent",
    "purpose_missing": "purpose",
    "lawful_basis_missing": "lawful_basis",
    "pii_columns": "pii",
    "pii_values": "pii",
    "biometric_without_basis": "biometric",
    "region_not_allowed": "region",
}
"""Finding name -> the ``governance`` key that configures it."""


@dataclass
class _Tally:
    limit: int
    count: int = 0
    ids: list[str] = field(default_factory=list)
    columns: set[str] = field(default_factory=set)

    def add(self, sample_id: str, *columns: str) -> None:
        self.count += 1
        if len(self.ids) < self.limit:
            self.ids.append(sample_id)
        self.columns.update(columns)


def check_governance(
    rows: Iterable[Mapping[str, Any]],
    *,
    config: GovernanceConfig | None = None,
    policy: Policy | None = None,
    id_column: str | None = None,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """Run the configured governance checks over manifest rows (one pass).

    Args:
        rows: Manifest rows, e.g. from :func:`policies.read_manifest`.
        config: The governance settings; default: ``policy.governance``.
        policy: The policy whose ``governance`` section to use (when no
            ``config``). With neither, or a policy without that section,
            no check runs and the result is ``[]``.
        id_column: Column naming a sample (default ``config.id_column``,
            falling back to ``path``, then to ``row <n>``).
        now: Reference time for retention (default: the current UTC time);
            a naive datetime is taken as UTC.

    Returns:
        One finding per enabled check, in a fixed order.
    """
    if config is None:
        config = policy.governance if policy is not None else None
        if config is None:
            return []
    now = datetime.now(timezone.utc) if now is None else now
    now = now if now.tzinfo else now.replace(tzinfo=timezone.utc)
    id_column = id_column or config.id_column
    cols = config.columns
    tallies = {name: _Tally(config.max_ids) for name in CHECK_SECTIONS}
    tallies["biometric_rows"] = _Tally(0)
    seen_columns: set[str] = set()
    forbidden = {normalise_column(c) for c in config.pii.columns} if _on(config.pii) else set()
    total = 0
    for total, row in enumerate(rows, start=1):
        seen_columns.update(row)
        sample = _sample_id(row, id_column, total)
        if _on(config.retention):
            _retention(row, sample, config, now, tallies)
        if _on(config.consent):
            value = _text(row.get(cols.consent)).lower()
            if value in {v.lower() for v in config.consent.withdrawn}:
                tallies["consent_withdrawn"].add(sample)
            elif value not in {v.lower() for v in config.consent.granted}:
                tallies["consent_missing"].add(sample)
        for key, column in (("purpose", cols.purpose), ("lawful_basis", cols.lawful_basis)):
            check = getattr(config, key)
            if _on(check) and not _recorded(row.get(column), check.allowed):
                tallies[f"{key}_missing"].add(sample)
        if _on(config.pii):
            _pii(row, sample, config, forbidden, tallies)
        if _on(config.biometric):
            if _text(row.get(cols.contains_face)).lower() in {
                v.lower() for v in config.biometric.true_values
            }:
                tallies["biometric_rows"].add(sample)
                if not _text(row.get(cols.biometric_basis)):
                    tallies["biometric_without_basis"].add(sample)
        if _on(config.region):
            allowed = {a.lower() for a in config.region.allowed}
            bad = [
                c
                for c in (config.region.columns or [cols.region])
                if _text(row.get(c)).lower() not in allowed
            ]
            if bad:
                tallies["region_not_allowed"].add(sample, *bad)
    return _findings(config, tallies, total, seen_columns)


def _on(check: Any) -> bool:
    return check is not None and check.enabled


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _recorded(value: Any, allowed: list[str] | None) -> bool:
    text = _text(value)
    if not text:
        return False
    return allowed is None or text.lower() in {a.lower() for a in allowed}


def _sample_id(row: Mapping[str, Any], id_column: str, number: int) -> str:
    for column in (id_column, "path"):
        value = _text(row.get(column))
        if value:
            return f"row {number}" if pii_kinds(value) else value
    return f"row {number}"


def _retention(
    row: Mapping[str, Any],
    sample: str,
    config: GovernanceConfig,
    now: datetime,
    tallies: dict[str, _Tally],
) -> None:
    try:
        captured = parse_date(
            _text(row.get(config.columns.capture_date)), date_format=config.date_format
        )
    except ValueError:
        tallies["date_unparseable"].add(sample)
        return
    if captured + timedelta(days=config.retention.period_days) < now:  # type: ignore[union-attr]
        tallies["retention_expired"].add(sample)


def _pii(
    row: Mapping[str, Any],
    sample: str,
    config: GovernanceConfig,
    forbidden: set[str],
    tallies: dict[str, _Tally],
) -> None:
    pii = config.pii
    filled = [c for c in row if normalise_column(c) in forbidden and _text(row.get(c))]
    if filled:
        tallies["pii_columns"].add(sample, *filled)
    if pii.scan:  # type: ignore[union-attr]
        scanned = pii.scan_columns if pii.scan_columns is not None else list(row)  # type: ignore[union-attr]
        hits = [c for c in scanned if pii_kinds(row.get(c), pii.patterns)]  # type: ignore[union-attr]
        if hits:
            tallies["pii_values"].add(sample, *hits)


def _findings(
    config: GovernanceConfig, tallies: dict[str, _Tally], total: int, seen_columns: set[str]
) -> list[dict[str, Any]]:
    cols = config.columns
    period = config.retention.period_days if config.retention else 0
    messages = {
        "retention_expired": f"capture date + {period} days has passed",
        "date_unparseable": f"'{cols.capture_date}' missing or not a {config.date_format} date",
        "consent_missing": f"no consent recorded in '{cols.consent}'",
        "consent_withdrawn": f"consent withdrawn in '{cols.consent}'",
        "purpose_missing": f"'{cols.purpose}' missing or not an allowed purpose",
        "lawful_basis_missing": f"'{cols.lawful_basis}' missing or not an allowed lawful basis",
        "pii_columns": "forbidden personal-data columns hold values",
        "pii_values": "values look like e-mail addresses, phone numbers or national ids",
        "biometric_without_basis": (
            f"'{cols.contains_face}' is true but '{cols.biometric_basis}' is empty"
        ),
        "region_not_allowed": "storage/processing region missing or not allowed",
    }
    findings = []
    for check, section in CHECK_SECTIONS.items():
        settings = getattr(config, section)
        if not _on(settings) or (check == "date_unparseable" and not _on(config.retention)):
            continue
        tally = tallies[check]
        status = ("fail" if settings.blocking else "warn") if tally.count else "pass"
        message = (
            f"{tally.count} of {total} samples: {messages[check]}"
            if tally.count
            else f"{total} samples checked: none found"
        )
        finding: dict[str, Any] = {
            "check": check,
            "status": status,
            "blocking": settings.blocking,
            "count": tally.count,
            "total": total,
            "sample_ids": list(tally.ids),
            "message": message,
        }
        if settings.clause:
            finding["clause"] = settings.clause
        if tally.columns:
            finding["columns"] = sorted(tally.columns)
        findings.append(finding)
    _explain_unknowable(config, findings, tallies, seen_columns)
    return findings


def _explain_unknowable(
    config: GovernanceConfig,
    findings: list[dict[str, Any]],
    tallies: dict[str, _Tally],
    seen_columns: set[str],
) -> None:
    """A check that cannot see its column warns instead of passing silently."""
    by_check = {f["check"]: f for f in findings}
    face = by_check.get("biometric_without_basis")
    if face is not None:
        face["biometric_rows"] = tallies["biometric_rows"].count
        if config.columns.contains_face not in seen_columns and face["status"] == "pass":
            face["status"] = "warn"
            face["message"] = (
                f"column '{config.columns.contains_face}' absent: "
                "cannot tell which samples are biometric"
            )
    expired = by_check.get("retention_expired")
    unparseable = tallies["date_unparseable"].count
    if expired is not None and expired["status"] == "pass" and unparseable:
        expired["status"] = "warn"
        expired["message"] = (
            f"{unparseable} of {expired['total']} samples have no usable capture date; "
            "retention not verified for them"
        )
