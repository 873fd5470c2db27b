"""The row-by-row governance checks as they were before they were vectorised: the reference
that :class:`policies.governance.GovernanceScan` is checked against (same findings, same affected rows).

Only the counting loop is kept here; the findings are formatted by the package's own ``_findings``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from policies.dates import parse_date
from policies.governance import CHECK_SECTIONS
from policies.governance.scan import _findings
from policies.pii import normalise_column, pii_column_kind, pii_kinds
from policies.schema import GovernanceConfig

_FUTURE_TOLERANCE = timedelta(days=1)


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


def reference_governance(
    rows: Iterable[Mapping[str, Any]],
    *,
    config: GovernanceConfig,
    id_column: str | None = None,
    now: datetime | None = None,
    affected: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Every row in turn (the implementation before vectorisation)."""
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
