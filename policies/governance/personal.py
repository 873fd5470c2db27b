"""The personal-data checks: forbidden personal-data columns, values that look like personal data,
biometric samples without a recorded basis.

A finding carries counts and column names, never the personal values themselves.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from policies.governance.base import ChunkView, GovernanceCheck, Hit, text
from policies.pii import _MAX_SCANNED_CHARS, normalise_column, pii_column_kind, pii_kinds
from policies.schema import GovernanceConfig

__all__ = ["BiometricWithoutBasis", "PiiColumns", "PiiValues"]


class PiiColumns(GovernanceCheck):
    """Forbidden columns holding values: listed in ``columns``, or (with ``match_tokens``) with a name
    whose tokens mean personal data (:func:`policies.pii.pii_column_kind`), unless in ``allow_columns``."""

    name = "pii_columns"
    section = "pii"
    message = "forbidden personal-data columns hold values"
    personal_data = True

    def __init__(self, config: GovernanceConfig, now: Any) -> None:
        super().__init__(config, now)
        pii = config.pii
        self.forbidden = {normalise_column(c) for c in pii.columns}  # type: ignore[union-attr]
        self.allowed = {normalise_column(c) for c in pii.allow_columns}  # type: ignore[union-attr]
        self.match_tokens = pii.match_tokens  # type: ignore[union-attr]
        self._is_forbidden: dict[str, bool] = {}

    def scan(self, chunk: ChunkView) -> Hit:
        for column in chunk.columns:
            if column not in self._is_forbidden:
                norm = normalise_column(column)
                self._is_forbidden[column] = norm not in self.allowed and (
                    norm in self.forbidden or (self.match_tokens and pii_column_kind(column) is not None)
                )
        filled: list[tuple[str, np.ndarray]] = []
        for column in chunk.columns:  # the manifest's column order, as a row lists its columns
            if self._is_forbidden[column]:
                col = chunk.coded(column)
                filled.append((column, col.mask([bool(text(v)) for v in col.uniques])))
        return _columns_hit(filled, len(chunk), "forbidden personal-data column holds a value")

    @classmethod
    def settings(cls, config: GovernanceConfig) -> dict[str, Any]:
        pii = config.pii
        return {
            "columns": sorted(pii.columns),  # type: ignore[union-attr]
            "match_tokens": pii.match_tokens,  # type: ignore[union-attr]
            "allow_columns": sorted(pii.allow_columns),  # type: ignore[union-attr]
        }


class PiiValues(GovernanceCheck):
    """E-mail addresses, phone numbers, national ids found by a conservative scan (``scan``) of
    ``scan_columns`` (default: every column); see :mod:`policies.pii`."""

    name = "pii_values"
    section = "pii"
    message = "values look like e-mail addresses, phone numbers or national ids"
    personal_data = True

    def scan(self, chunk: ChunkView) -> Hit:
        pii = self.config.pii
        if not pii.scan:  # type: ignore[union-attr]
            return Hit([])
        scanned = pii.scan_columns if pii.scan_columns is not None else list(chunk.columns)  # type: ignore[union-attr]
        found = []
        for column in scanned:
            if column in chunk.columns:
                found.append((column, _pii_column(chunk, column, pii.patterns)))  # type: ignore[union-attr]
        return _columns_hit(found, len(chunk), "a value looks like personal data")

    @classmethod
    def settings(cls, config: GovernanceConfig) -> dict[str, Any]:
        pii = config.pii
        scan_columns = sorted(pii.scan_columns) if pii.scan_columns is not None else None  # type: ignore[union-attr]
        return {"scan": pii.scan, "patterns": sorted(pii.patterns), "scan_columns": scan_columns}  # type: ignore[union-attr]


class BiometricWithoutBasis(GovernanceCheck):
    """``contains_face`` true (one of ``true_values``) and no ``biometric_basis``.

    Its finding also counts every biometric sample (``biometric_rows``), with a basis or not.
    """

    name = "biometric_without_basis"
    section = "biometric"
    message = "'{columns.contains_face}' is true but '{columns.biometric_basis}' is empty"
    holds_back_images = True
    personal_data = True
    extra_counts: ClassVar[tuple[str, ...]] = ("biometric_rows",)

    def scan(self, chunk: ChunkView) -> Hit:
        cols = self.config.columns
        true_values = {v.lower() for v in self.config.biometric.true_values}  # type: ignore[union-attr]
        col = chunk.coded(cols.contains_face)
        face = col.mask([text(v).lower() in true_values for v in col.uniques])
        basis = chunk.coded(cols.biometric_basis)
        no_basis = basis.mask([not text(v) for v in basis.uniques])
        rows = np.flatnonzero(face & no_basis).tolist()
        return Hit(
            rows,
            values=[{"reason": "biometric without a recorded basis"}] * len(rows),
            counts={"biometric_rows": int(np.count_nonzero(face))},
        )

    @classmethod
    def settings(cls, config: GovernanceConfig) -> dict[str, Any]:
        cols = config.columns
        return {
            "column": cols.contains_face,
            "basis_column": cols.biometric_basis,
            "true_values": sorted(config.biometric.true_values),  # type: ignore[union-attr]
        }

    @classmethod
    def needed_columns(cls, config: GovernanceConfig) -> list[str]:
        return [config.columns.contains_face]


def _columns_hit(flagged: list[tuple[str, np.ndarray]], n: int, reason: str) -> Hit:
    """Rows where any of the columns is flagged; per row the flagged columns in order, joined by ``;``."""
    if not flagged:
        return Hit([], columns=[], values=[])
    any_flag = np.zeros(n, dtype=bool)
    for _, flags in flagged:
        any_flag |= flags
    rows = np.flatnonzero(any_flag).tolist()
    columns = [tuple(c for c, flags in flagged if flags[j]) for j in rows]
    return Hit(rows, columns=columns, values=[{"reason": reason, "columns": ";".join(c)} for c in columns])


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


def _pii_column(chunk: ChunkView, name: str, patterns: Sequence[str]) -> np.ndarray:
    """Per row: whether the value looks like personal data. A column of repeated values is scanned once
    per distinct value; a column of (nearly) unique values, such as ids and paths, is scanned as it is."""
    values = chunk.column(name)
    if chunk.is_coded(name) or not _looks_unique(values):
        col = chunk.coded(name)
        return col.mask(_pii_flags(col.uniques, patterns))
    return _pii_flags(values, patterns)
