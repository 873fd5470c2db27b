"""Data-governance checks over a dataset manifest.

Each configured check yields one finding::

    {check, status, blocking, count, total, sample_ids, message, settings, ...}

``status`` is ``fail`` when a blocking check finds violations, ``warn`` when a
non-blocking one does, ``pass`` when none is found, and ``insufficient_data``
when the check cannot be judged because the manifest lacks the column it
reads (:func:`policies.findings.judge_findings` then applies the policy's
``on_insufficient_data``: a fail-closed policy fails a blocking check it could
not judge). A finding carries counts, the first ``max_ids`` sample ids, the
column names involved and the ``settings`` it was computed with (so a later
``policy check`` under another policy knows whether the count still holds),
never the personal values themselves; a sample id that itself looks like
personal data is replaced by ``row <n>``. Every affected row can also be
listed (``affected=``; the runner writes them to ``governance.csv``).

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
  :func:`policies.pii.pii_column_kind`); e-mail addresses, phone numbers,
  national ids found by a conservative scan;
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
    "check_blocking",
    "check_governance",
    "check_is_configured",
    "check_settings",
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


def check_settings(config: GovernanceConfig, check: str) -> dict[str, Any]:
    """The settings that decide the count of ``check`` (not its blocking, clause or id column).

    Two policies whose settings of a check are equal count the same samples,
    so a stored count can be judged again under the other; otherwise it cannot.
    """
    cols = config.columns
    section = CHECK_SECTIONS[check]
    if section in ("retention", "unparseable_dates", "future_dates"):
        out: dict[str, Any] = {"column": cols.capture_date, "date_format": config.date_format}
        if check == "retention_expired" and config.retention is not None:
            out["period_days"] = config.retention.period_days
        return out
    settings = getattr(config, section)
    if section == "consent":
        return {"column": cols.consent, "granted": sorted(settings.granted), "withdrawn": sorted(settings.withdrawn)}
    if section in ("purpose", "lawful_basis"):
        allowed = sorted(settings.allowed) if settings.allowed is not None else None
        return {"column": getattr(cols, section), "allowed": allowed}
    if section == "pii":
        if check == "pii_columns":
            return {
                "columns": sorted(settings.columns),
                "match_tokens": settings.match_tokens,
                "allow_columns": sorted(settings.allow_columns),
            }
        scan_columns = sorted(settings.scan_columns) if settings.scan_columns is not None else None
        return {"scan": settings.scan, "patterns": sorted(settings.patterns), "scan_columns": scan_columns}
    if section == "biometric":
        return {
            "column": cols.contains_face,
            "basis_column": cols.biometric_basis,
            "true_values": sorted(settings.true_values),
        }
    return {"columns": sorted(settings.columns or [cols.region]), "allowed": sorted(settings.allowed)}


@dataclass
class _Tally:
    limit: int
    affected: list[dict[str, Any]] | None = None
    count: int = 0
    ids: list[str] = field(default_factory=list)
    columns: set[str] = field(default_factory=set)

    def add(self, sample_id: str, check: str, *columns: str, **values: str) -> None:
        self.count += 1
        if len(self.ids) < self.limit:
            self.ids.append(sample_id)
        self.columns.update(columns)
        if self.affected is not None:
            self.affected.append({"sample_id": sample_id, "check": check, **values})


def check_governance(
    rows: Iterable[Mapping[str, Any]],
    *,
    config: GovernanceConfig | None = None,
    policy: Policy | None = None,
    id_column: str | None = None,
    now: datetime | None = None,
    affected: list[dict[str, Any]] | None = None,
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
        affected: when given, one dict per (affected sample, check) is appended:
            ``{sample_id, check, reason, <the manifest values the check read>}``
            (column names only for personal data, never its values).

    Returns:
        One finding per enabled check, in a fixed order (see the module docstring).
    """
    if config is None:
        config = policy.governance if policy is not None else None
        if config is None:
            return []
    now = datetime.now(timezone.utc) if now is None else now
    now = now if now.tzinfo else now.replace(tzinfo=timezone.utc)
    id_column = id_column or config.id_column
    cols = config.columns
    tallies = {name: _Tally(config.max_ids, affected) for name in CHECK_SECTIONS}
    tallies["biometric_rows"] = _Tally(0)
    seen_columns: set[str] = set()
    forbidden = {normalise_column(c) for c in config.pii.columns} if _on(config.pii) else set()
    allowed_columns = {normalise_column(c) for c in config.pii.allow_columns} if _on(config.pii) else set()
    pii_columns: dict[str, bool] = {}
    withdrawn = {v.lower() for v in config.consent.withdrawn} if _on(config.consent) else set()
    granted = {v.lower() for v in config.consent.granted} if _on(config.consent) else set()
    total = 0
    for total, row in enumerate(rows, start=1):
        seen_columns.update(row)
        sample = _sample_id(row, id_column, total)
        if _on(config.retention):
            _retention(row, sample, config, now, tallies)
        if _on(config.consent):
            raw = _text(row.get(cols.consent))
            if raw.lower() in withdrawn:
                tallies["consent_withdrawn"].add(sample, "consent_withdrawn", reason="consent withdrawn", consent=raw)
            elif raw.lower() not in granted:
                tallies["consent_missing"].add(sample, "consent_missing", reason="no consent recorded", consent=raw)
        for key, column in (("purpose", cols.purpose), ("lawful_basis", cols.lawful_basis)):
            check = getattr(config, key)
            if _on(check) and not _recorded(row.get(column), check.allowed):
                value = _text(row.get(column))
                reason = f"{key} missing" if not value else f"{key} not allowed"
                tallies[f"{key}_missing"].add(sample, f"{key}_missing", reason=reason, **{column: value})
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
            tallies["biometric_rows"].add(sample, "biometric_rows")
            if not _text(row.get(cols.biometric_basis)):
                tallies["biometric_without_basis"].add(
                    sample, "biometric_without_basis", reason="biometric without a recorded basis"
                )
        if _on(config.region):
            allowed = {a.lower() for a in config.region.allowed}
            bad = [c for c in (config.region.columns or [cols.region]) if _text(row.get(c)).lower() not in allowed]
            if bad:
                values = {c: _text(row.get(c)) for c in bad}
                tallies["region_not_allowed"].add(
                    sample, "region_not_allowed", *bad, reason="region not allowed", **values
                )
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
    column = config.columns.capture_date
    raw = _text(row.get(column))
    try:
        captured = parse_date(raw, date_format=config.date_format)
    except ValueError:
        tallies["date_unparseable"].add(sample, "date_unparseable", reason="capture date unreadable", **{column: raw})
        return
    if captured > now + _FUTURE_TOLERANCE:
        tallies["date_in_future"].add(sample, "date_in_future", reason="capture date in the future", **{column: raw})
        return
    period = config.retention.period_days  # type: ignore[union-attr]
    if captured + timedelta(days=period) < now:
        expired = (captured + timedelta(days=period)).date().isoformat()
        tallies["retention_expired"].add(
            sample, "retention_expired", reason=f"retention of {period} days ended {expired}", **{column: raw}
        )


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
        tallies["pii_columns"].add(
            sample,
            "pii_columns",
            *filled,
            reason="forbidden personal-data column holds a value",
            columns=";".join(filled),
        )
    if pii.scan:  # type: ignore[union-attr]
        scanned = pii.scan_columns if pii.scan_columns is not None else list(row)  # type: ignore[union-attr]
        hits = [c for c in scanned if pii_kinds(row.get(c), pii.patterns)]  # type: ignore[union-attr]
        if hits:
            tallies["pii_values"].add(
                sample, "pii_values", *hits, reason="a value looks like personal data", columns=";".join(hits)
            )


_COLUMN_OF = {
    "retention": lambda c: [c.columns.capture_date],
    "unparseable_dates": lambda c: [c.columns.capture_date],
    "future_dates": lambda c: [c.columns.capture_date],
    "consent": lambda c: [c.columns.consent],
    "purpose": lambda c: [c.columns.purpose],
    "lawful_basis": lambda c: [c.columns.lawful_basis],
    "biometric": lambda c: [c.columns.contains_face],
    "region": lambda c: list(c.region.columns or [c.columns.region]),
}
"""The manifest columns a check cannot be judged without (PII checks need none)."""


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
        needed = _COLUMN_OF.get(section, lambda c: [])(config)
        absent = [c for c in needed if c not in seen_columns]
        finding: dict[str, Any] = {
            "check": check,
            "status": ("fail" if blocking else "warn") if tally.count else "pass",
            "blocking": blocking,
            "count": tally.count,
            "total": total,
            "sample_ids": list(tally.ids),
            "message": (
                f"{tally.count} of {total} samples: {messages[check]}"
                if tally.count
                else f"{total} samples checked: none found"
            ),
            "settings": check_settings(config, check),
        }
        if total and absent and len(absent) == len(needed):
            finding.update(
                status="insufficient_data",
                judgeable=False,
                count=None,
                sample_ids=[],
                message=f"cannot be judged: column {', '.join(repr(c) for c in absent)} is absent from the manifest",
            )
        if settings.clause:
            finding["clause"] = settings.clause
        if tally.columns:
            finding["columns"] = sorted(tally.columns)
        if check == "biometric_without_basis":
            finding["biometric_rows"] = tallies["biometric_rows"].count
        findings.append(finding)
    _explain_unverified_retention(findings, tallies)
    return findings


def _explain_unverified_retention(findings: list[dict[str, Any]], tallies: dict[str, _Tally]) -> None:
    """Retention that passed only because some dates could not be read warns instead."""
    expired = next((f for f in findings if f["check"] == "retention_expired"), None)
    unparseable = tallies["date_unparseable"].count
    if expired is not None and expired["status"] == "pass" and unparseable:
        expired["status"] = "warn"
        expired["message"] = (
            f"{unparseable} of {expired['total']} samples have no usable capture date; retention not verified for them"
        )
