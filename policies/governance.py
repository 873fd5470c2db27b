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
  date missing or not in ``date_format``; blocks when ``unparseable_dates``
  sets ``blocking: true``, or, when it does not set ``blocking``, when
  ``retention`` blocks (an unreadable date cannot be shown to be in retention);
- ``date_in_future`` (``future_dates``; runs with ``retention``): capture date
  more than a day after ``now`` (a clock or entry error); warns unless
  ``future_dates`` sets ``blocking: true``;
- ``consent_missing`` / ``consent_withdrawn`` (``consent``);
- ``purpose_missing`` (``purpose``), ``lawful_basis_missing`` (``lawful_basis``):
  empty, or not in ``allowed`` when given;
- ``pii_columns`` / ``pii_values`` (``pii``): forbidden columns holding values
  (listed in ``columns``, or with a name whose tokens mean personal data, see
  :func:`policies.pii.pii_column_kind`);
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

from policies.dates import describe_date_format, parse_date
from policies.pii import PERSONAL_DATA_CHECKS, normalise_column, pii_column_kind, pii_kinds
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
    "date_in_future": "future_dates",
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

_DATE_CHECKS = {"date_unparseable", "date_in_future"}
_FUTURE_TOLERANCE = timedelta(days=1)


def check_is_configured(config: GovernanceConfig | None, check: str) -> bool:
    """Whether ``config`` runs the governance check ``check``."""
    section = CHECK_SECTIONS.get(check)
    if config is None or section is None:
        return False
    if check in _DATE_CHECKS and not _on(config.retention):
        return False
    return _on(getattr(config, section))


def check_blocking(config: GovernanceConfig, check: str) -> bool:
    """Whether the configured check ``check`` blocks the verdict."""
    section = CHECK_SECTIONS[check]
    if check in _DATE_CHECKS:
        return config.date_check_blocking(section)
    return bool(getattr(config, section).blocking)


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
        rows: Manifest rows, e.g. from :func:`audit.contract.manifest.read_manifest`.
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
    allowed_columns = {normalise_column(c) for c in config.pii.allow_columns} if _on(config.pii) else set()
    pii_columns: dict[str, bool] = {}
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
            for column in row:
                if column not in pii_columns:
                    norm = normalise_column(column)
                    pii_columns[column] = norm not in allowed_columns and (
                        norm in forbidden or (config.pii.match_tokens and pii_column_kind(column) is not None)
                    )
            _pii(row, sample, config, pii_columns, tallies)
        if _on(config.biometric) and _text(row.get(cols.contains_face)).lower() in {
            v.lower() for v in config.biometric.true_values
        }:
            tallies["biometric_rows"].add(sample)
            if not _text(row.get(cols.biometric_basis)):
                tallies["biometric_without_basis"].add(sample)
        if _on(config.region):
            allowed = {a.lower() for a in config.region.allowed}
            bad = [c for c in (config.region.columns or [cols.region]) if _text(row.get(c)).lower() not in allowed]
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
        captured = parse_date(_text(row.get(config.columns.capture_date)), date_format=config.date_format)
    except ValueError:
        tallies["date_unparseable"].add(sample)
        return
    if captured > now + _FUTURE_TOLERANCE:
        tallies["date_in_future"].add(sample)
        return
    if captured + timedelta(days=config.retention.period_days) < now:  # type: ignore[union-attr]
        tallies["retention_expired"].add(sample)


def _pii(
    row: Mapping[str, Any],
    sample: str,
    config: GovernanceConfig,
    forbidden: dict[str, bool],
    tallies: dict[str, _Tally],
) -> None:
    pii = config.pii
    filled = [c for c in row if forbidden.get(c) and _text(row.get(c))]
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
        "date_unparseable": (f"'{cols.capture_date}' missing or not {describe_date_format(config.date_format)}"),
        "date_in_future": f"'{cols.capture_date}' lies in the future",
        "consent_missing": f"no consent recorded in '{cols.consent}'",
        "consent_withdrawn": f"consent withdrawn in '{cols.consent}'",
        "purpose_missing": f"'{cols.purpose}' missing or not an allowed purpose",
        "lawful_basis_missing": f"'{cols.lawful_basis}' missing or not an allowed lawful basis",
        "pii_columns": "forbidden personal-data columns hold values",
        "pii_values": "values look like e-mail addresses, phone numbers or national ids",
        "biometric_without_basis": (f"'{cols.contains_face}' is true but '{cols.biometric_basis}' is empty"),
        "region_not_allowed": "storage/processing region missing or not allowed",
    }
    findings = []
    for check, section in CHECK_SECTIONS.items():
        if not check_is_configured(config, check):
            continue
        settings = getattr(config, section)
        blocking = check_blocking(config, check)
        tally = tallies[check]
        status = ("fail" if blocking else "warn") if tally.count else "pass"
        message = (
            f"{tally.count} of {total} samples: {messages[check]}"
            if tally.count
            else f"{total} samples checked: none found"
        )
        finding: dict[str, Any] = {
            "check": check,
            "status": status,
            "blocking": blocking,
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
            face["message"] = f"column '{config.columns.contains_face}' absent: cannot tell which samples are biometric"
    expired = by_check.get("retention_expired")
    unparseable = tallies["date_unparseable"].count
    if expired is not None and expired["status"] == "pass" and unparseable:
        expired["status"] = "warn"
        expired["message"] = (
            f"{unparseable} of {expired['total']} samples have no usable capture date; retention not verified for them"
        )
