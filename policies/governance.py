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

import itertools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np

from audit.contract.manifest import ManifestChunk, chunks_of_rows
from policies.dates import describe_date_format, parse_date
from policies.pii import (
    _MAX_SCANNED_CHARS,
    PERSONAL_DATA_CHECKS,
    normalise_column,
    pii_column_kind,
    pii_kinds,
)
from policies.privacy import report_image_mode
from policies.schema import GovernanceConfig, Policy

__all__ = [
    "CHECK_SECTIONS",
    "PERSONAL_DATA_CHECKS",
    "GovernanceScan",
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
    count: int = 0
    ids: list[str] = field(default_factory=list)
    columns: set[str] = field(default_factory=set)


@dataclass
class _Hit:
    """Rows of one chunk one check flagged: their positions, and per row the columns and values recorded."""

    check: str
    rows: list[int]
    columns: list[tuple[str, ...]] | None = None  # per row (personal-data and region checks)
    values: list[dict[str, str]] | None = None  # per row: reason and the manifest values read


class _Column:
    """One column of a chunk, for checks that run once per distinct value.

    ``uniques`` are the distinct values (first-seen order); ``codes`` (each row's index into
    them) are computed only when some distinct value is flagged.
    """

    def __init__(self, values: Sequence[Any]) -> None:
        self.values = values
        try:
            self.uniques: list[Any] = list(dict.fromkeys(values))
            self._hashable = True
        except TypeError:  # an unhashable value (a caller's own rows): one entry per row
            self.uniques, self._hashable = list(values), False
        self._codes: np.ndarray | None = None

    @property
    def codes(self) -> np.ndarray:
        if self._codes is None:
            n = len(self.values)
            if self._hashable:
                index = {v: k for k, v in enumerate(self.uniques)}
                self._codes = np.fromiter(map(index.__getitem__, self.values), dtype=np.int64, count=n)
            else:
                self._codes = np.arange(n, dtype=np.int64)
        return self._codes

    def mask(self, flags: Sequence[bool] | np.ndarray) -> np.ndarray:
        """Per row: whether its value is flagged (``flags`` has one entry per distinct value)."""
        flags = np.asarray(flags, dtype=bool)
        if not flags.any():
            return np.zeros(len(self.values), dtype=bool)
        return flags[self.codes]

    def value(self, j: int) -> Any:
        """Row ``j``'s value."""
        return self.values[j]


#: Necessary conditions of the personal-data patterns (:data:`policies.pii.PATTERNS`), each cheap to scan for:
#: an e-mail address has ``@``, a phone number ``+``, ``(`` or a digit after ``-``/``.``, a social security
#: number a digit after ``-``, a national insurance number two capitals and a digit. Only values that hold one
#: of them are searched with the full patterns.
_PII_PREFILTERS = (
    re.compile(r"[@+(]"),
    re.compile(r"[.-]\d"),
    re.compile(r"[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d"),
)


def _pii_flags(uniques: Sequence[Any], patterns: Sequence[str]) -> np.ndarray:
    """Per distinct value: whether :func:`policies.pii.pii_kinds` flags it with ``patterns``.

    The values are joined by newlines (no pattern or prefilter matches a newline, so every match
    lies inside one value) and scanned once per prefilter; only the values a prefilter hits are
    then checked with :func:`~policies.pii.pii_kinds` itself.
    """
    flags = np.zeros(len(uniques), dtype=bool)
    if set(map(type, uniques)) <= {str}:
        texts = uniques
        if texts and max(map(len, texts)) > _MAX_SCANNED_CHARS:
            texts = [v[:_MAX_SCANNED_CHARS] for v in texts]
    else:
        texts = [v[:_MAX_SCANNED_CHARS] if isinstance(v, str) else "" for v in uniques]
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    if not lengths.any():
        return flags
    starts = np.concatenate(([0], np.cumsum(lengths + 1)[:-1]))
    joined = "\n".join(texts)
    candidates: set[int] = set()
    for prefilter in _PII_PREFILTERS:
        pos = 0
        while (match := prefilter.search(joined, pos)) is not None:  # one hit per value is enough
            k = int(np.searchsorted(starts, match.start(), side="right")) - 1
            candidates.add(k)
            pos = int(starts[k + 1]) if k + 1 < len(starts) else len(joined)
    for k in candidates:
        flags[k] = bool(pii_kinds(uniques[k], patterns))
    return flags


def _looks_unique(values: Sequence[Any]) -> bool:
    """Whether most of the first values differ (ids, paths): then removing repeats would not pay."""
    head = values[:64]
    try:
        return len(set(head)) > len(head) // 2
    except TypeError:
        return True


def _pii_column(values: Sequence[Any], encoded: dict[str, _Column], name: str, patterns: Sequence[str]) -> np.ndarray:
    """Per row: whether the value looks like personal data. A column of repeated values is scanned once
    per distinct value; a column of (nearly) unique values, such as ids and paths, is scanned as it is."""
    if name in encoded or not _looks_unique(values):
        col = encoded.setdefault(name, _Column(values))
        return col.mask(_pii_flags(col.uniques, patterns))
    return _pii_flags(values, patterns)


class GovernanceScan:
    """The configured governance checks, fed manifest rows chunk by chunk (:class:`ManifestChunk`).

    Each check runs once per distinct value of the column it reads within a chunk (dates,
    consent values and regions repeat a lot), and the personal-data scan runs one regular
    expression per pattern over a chunk's values at once. The result is the same as a check of
    every row in turn: the same findings, and the same affected rows in the same order.

    Args:
        config: the governance settings.
        id_column: column naming a sample (default ``config.id_column``, then ``path``, then ``row <n>``).
        now: reference time for retention (default: the current UTC time); naive means UTC.
        affected: when given, one dict per (affected sample, check) is appended (see :func:`check_governance`).
    """

    def __init__(
        self,
        config: GovernanceConfig,
        *,
        id_column: str | None = None,
        now: datetime | None = None,
        affected: list[dict[str, Any]] | None = None,
    ) -> None:
        now = datetime.now(timezone.utc) if now is None else now
        self.now = now if now.tzinfo else now.replace(tzinfo=timezone.utc)
        self.config = config
        self.id_column = id_column or config.id_column
        self.affected = affected
        self.tallies = {name: _Tally(config.max_ids) for name in CHECK_SECTIONS}
        self.tallies["biometric_rows"] = _Tally(0)
        self.seen_columns: set[str] = set()
        self.total = 0
        self._pii_column: dict[str, bool] = {}
        self._rank = {name: k for k, name in enumerate(CHECK_SECTIONS)}

    def feed(self, chunk: ManifestChunk) -> None:
        """Check the rows of one chunk (chunks must come in file order)."""
        config, cols = self.config, self.config.columns
        self.seen_columns.update(chunk.columns)
        encoded: dict[str, _Column] = {}

        def coded(column: str) -> _Column:
            if column not in encoded:
                encoded[column] = _Column(chunk.column(column))
            return encoded[column]

        hits: list[_Hit] = []
        if _on(config.retention):
            hits += self._retention(coded)
        if _on(config.consent):
            hits += self._consent(coded)
        for key, column in (("purpose", cols.purpose), ("lawful_basis", cols.lawful_basis)):
            check = getattr(config, key)
            if _on(check):
                hits.append(self._recorded(key, column, check.allowed, coded))
        if _on(config.pii):
            hits += self._pii(chunk, coded, encoded)
        if _on(config.biometric):
            hits += self._biometric(coded)
        if _on(config.region):
            hits.append(self._region(coded))
        self._tally(chunk, hits)
        self.total += len(chunk)

    def findings(self) -> list[dict[str, Any]]:
        """One finding per configured check, in the fixed order (see the module docstring)."""
        return _findings(self.config, self.tallies, self.total, self.seen_columns)

    # --------------------------------------------------------------- the checks, per chunk

    def _retention(self, coded) -> list[_Hit]:
        config = self.config
        column, period = config.columns.capture_date, config.retention.period_days  # type: ignore[union-attr]
        col = coded(column)
        kinds, reasons = [], []
        for value in col.uniques:
            raw = _text(value)
            try:
                captured = parse_date(raw, date_format=config.date_format)
            except ValueError:
                kinds.append("date_unparseable")
                reasons.append("capture date unreadable")
                continue
            if captured > self.now + _FUTURE_TOLERANCE:
                kinds.append("date_in_future")
                reasons.append("capture date in the future")
            elif captured + timedelta(days=period) < self.now:
                expired = (captured + timedelta(days=period)).date().isoformat()
                kinds.append("retention_expired")
                reasons.append(f"retention of {period} days ended {expired}")
            else:
                kinds.append(None)
                reasons.append("")
        out = []
        for check in ("retention_expired", "date_unparseable", "date_in_future"):
            rows = np.flatnonzero(col.mask([k == check for k in kinds])).tolist()
            values = [{"reason": reasons[col.codes[j]], column: _text(col.value(j))} for j in rows]
            out.append(_Hit(check, rows, values=values))
        return out

    def _consent(self, coded) -> list[_Hit]:
        consent = self.config.consent
        column = self.config.columns.consent
        withdrawn = {v.lower() for v in consent.withdrawn}  # type: ignore[union-attr]
        granted = {v.lower() for v in consent.granted}  # type: ignore[union-attr]
        col = coded(column)
        lowered = [_text(v).lower() for v in col.uniques]
        out = []
        for check, flag, reason in (
            ("consent_withdrawn", [v in withdrawn for v in lowered], "consent withdrawn"),
            ("consent_missing", [v not in withdrawn and v not in granted for v in lowered], "no consent recorded"),
        ):
            rows = np.flatnonzero(col.mask(flag)).tolist()
            out.append(_Hit(check, rows, values=[{"reason": reason, "consent": _text(col.value(j))} for j in rows]))
        return out

    def _recorded(self, key: str, column: str, allowed: list[str] | None, coded) -> _Hit:
        col = coded(column)
        rows = np.flatnonzero(col.mask([not _recorded(v, allowed) for v in col.uniques])).tolist()
        values = []
        for j in rows:
            value = _text(col.value(j))
            values.append({"reason": f"{key} missing" if not value else f"{key} not allowed", column: value})
        return _Hit(f"{key}_missing", rows, values=values)

    def _pii(self, chunk: ManifestChunk, coded, encoded: dict[str, _Column]) -> list[_Hit]:
        pii = self.config.pii
        forbidden = {normalise_column(c) for c in pii.columns}  # type: ignore[union-attr]
        allowed_columns = {normalise_column(c) for c in pii.allow_columns}  # type: ignore[union-attr]
        for column in chunk.columns:
            if column not in self._pii_column:
                norm = normalise_column(column)
                self._pii_column[column] = norm not in allowed_columns and (
                    norm in forbidden or (pii.match_tokens and pii_column_kind(column) is not None)  # type: ignore[union-attr]
                )
        n = len(chunk)
        filled: list[tuple[str, np.ndarray]] = []
        for column in chunk.columns:  # the manifest's column order, as a row lists its columns
            if self._pii_column.get(column):
                col = coded(column)
                filled.append((column, col.mask([bool(_text(v)) for v in col.uniques])))
        out = [_columns_hit("pii_columns", filled, n, "forbidden personal-data column holds a value")]
        if pii.scan:  # type: ignore[union-attr]
            scanned = pii.scan_columns if pii.scan_columns is not None else list(chunk.columns)  # type: ignore[union-attr]
            found = []
            for column in scanned:
                if column in chunk.columns:
                    found.append((column, _pii_column(chunk.column(column), encoded, column, pii.patterns)))  # type: ignore[union-attr]
            out.append(_columns_hit("pii_values", found, n, "a value looks like personal data"))
        return out

    def _biometric(self, coded) -> list[_Hit]:
        cols, biometric = self.config.columns, self.config.biometric
        true_values = {v.lower() for v in biometric.true_values}  # type: ignore[union-attr]
        col = coded(cols.contains_face)
        face = col.mask([_text(v).lower() in true_values for v in col.uniques])
        basis = coded(cols.biometric_basis)
        no_basis = basis.mask([not _text(v) for v in basis.uniques])
        rows = np.flatnonzero(face & no_basis).tolist()
        return [
            _Hit("biometric_rows", np.flatnonzero(face).tolist()),
            _Hit(
                "biometric_without_basis", rows, values=[{"reason": "biometric without a recorded basis"}] * len(rows)
            ),
        ]

    def _region(self, coded) -> _Hit:
        region, cols = self.config.region, self.config.columns
        allowed = {a.lower() for a in region.allowed}  # type: ignore[union-attr]
        bad = []
        for column in region.columns or [cols.region]:  # type: ignore[union-attr]
            col = coded(column)
            bad.append((column, col.mask([_text(v).lower() not in allowed for v in col.uniques]), col))
        n = len(bad[0][1]) if bad else 0
        any_bad = np.zeros(n, dtype=bool)
        for _, flags, _ in bad:
            any_bad |= flags
        rows = np.flatnonzero(any_bad).tolist()
        columns, values = [], []
        for j in rows:
            names = tuple(c for c, flags, _ in bad if flags[j])
            columns.append(names)
            values.append(
                {"reason": "region not allowed", **{c: _text(col.value(j)) for c, flags, col in bad if flags[j]}}
            )
        return _Hit("region_not_allowed", rows, columns=columns, values=values)

    # --------------------------------------------------------------- counting

    def _tally(self, chunk: ManifestChunk, hits: list[_Hit]) -> None:
        """Count the hits; append the affected rows in the order a row-by-row check appends them."""
        id_values, path_values = chunk.column(self.id_column), chunk.column("path")

        def sample(j: int) -> str:
            return _sample_id(
                {self.id_column: id_values[j], "path": path_values[j]}, self.id_column, chunk.start + j + 1
            )

        events = []
        for hit in hits:
            tally = self.tallies[hit.check]
            tally.count += len(hit.rows)
            for k, j in enumerate(hit.rows):
                if hit.columns is not None:
                    tally.columns.update(hit.columns[k])
                if len(tally.ids) < tally.limit:
                    tally.ids.append(sample(j))
                if self.affected is not None and hit.values is not None:
                    events.append((j, self._rank[hit.check], hit.check, hit.values[k]))
        if self.affected is not None:
            for j, _, check, values in sorted(events, key=lambda e: (e[0], e[1])):
                self.affected.append({"sample_id": sample(j), "check": check, **values})


def _columns_hit(check: str, flagged: list[tuple[str, np.ndarray]], n: int, reason: str) -> _Hit:
    """Rows where any of the columns is flagged; per row the flagged columns in order, joined by ``;``."""
    if not flagged:
        return _Hit(check, [], columns=[], values=[])
    any_flag = np.zeros(n, dtype=bool)
    for _, flags in flagged:
        any_flag |= flags
    rows = np.flatnonzero(any_flag).tolist()
    columns = [tuple(c for c, flags in flagged if flags[j]) for j in rows]
    return _Hit(check, rows, columns=columns, values=[{"reason": reason, "columns": ";".join(c)} for c in columns])


def check_governance(
    rows: Iterable[Mapping[str, Any]] | Iterable[ManifestChunk],
    *,
    config: GovernanceConfig | None = None,
    policy: Policy | None = None,
    id_column: str | None = None,
    now: datetime | None = None,
    affected: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Run the configured governance checks over manifest rows (one pass, see :class:`GovernanceScan`).

    Args:
        rows: Manifest rows, e.g. from :func:`audit.contract.manifest.read_manifest`, or chunks
            of rows from :func:`audit.contract.manifest.read_manifest_chunks`.
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
    scan = GovernanceScan(config, id_column=id_column, now=now, affected=affected)
    items = iter(rows)
    first = next(items, None)
    if first is not None:
        rest = itertools.chain([first], items)
        for chunk in rest if isinstance(first, ManifestChunk) else chunks_of_rows(rest):  # type: ignore[arg-type]
            scan.feed(chunk)  # type: ignore[arg-type]
    return scan.findings()


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
