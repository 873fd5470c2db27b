"""The scan: the registered checks a policy configures, fed manifest chunks, and their findings."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from audit.contract.manifest import ManifestChunk, chunks_of_rows
from policies.governance.base import ChunkView, GovernanceCheck, Hit, text
from policies.governance.registry import governance_checks
from policies.pii import pii_kinds
from policies.schema import GovernanceConfig, Policy

__all__ = ["GovernanceScan", "check_governance"]


@dataclass
class _Tally:
    limit: int
    count: int = 0
    ids: list[str] = field(default_factory=list)
    columns: set[str] = field(default_factory=set)


class GovernanceScan:
    """The configured governance checks, fed manifest rows chunk by chunk (:class:`ManifestChunk`).

    Each check runs once per distinct value of the column it reads within a chunk (dates,
    consent values and regions repeat a lot), and the personal-data scan runs one regular
    expression per pattern over a chunk's values at once. The result is the same as a check of
    every row in turn: the same findings, and the same affected rows in the same order.

    The checks are those registered (:func:`policies.governance.governance_checks`) when the
    scan is created that ``config`` counts (:meth:`GovernanceCheck.is_counted`).

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
        self.registered = governance_checks()
        self.checks = [check(config, self.now) for check in self.registered if check.is_counted(config)]
        self.tallies = {check.name: _Tally(config.max_ids) for check in self.registered}
        self.tallies.update({extra: _Tally(0) for check in self.registered for extra in check.extra_counts})
        self.seen_columns: set[str] = set()
        self.total = 0
        self._rank = {check.name: k for k, check in enumerate(self.registered)}

    def feed(self, chunk: ManifestChunk) -> None:
        """Check the rows of one chunk (chunks must come in file order)."""
        self.seen_columns.update(chunk.columns)
        view = ChunkView(chunk)
        self._tally(chunk, [(check, check.scan(view)) for check in self.checks])
        self.total += len(chunk)

    def findings(self) -> list[dict[str, Any]]:
        """One finding per configured check, in the registry's order."""
        return _findings(self.config, self.tallies, self.total, self.seen_columns, self.registered)

    def _tally(self, chunk: ManifestChunk, hits: list[tuple[GovernanceCheck, Hit]]) -> None:
        """Count the hits; append the affected rows in the order a row-by-row check appends them."""
        id_values, path_values = chunk.column(self.id_column), chunk.column("path")

        def sample(j: int) -> str:
            return _sample_id(
                {self.id_column: id_values[j], "path": path_values[j]}, self.id_column, chunk.start + j + 1
            )

        events = []
        for check, hit in hits:
            tally = self.tallies[check.name]
            tally.count += len(hit.rows)
            for extra, count in hit.counts.items():
                self.tallies[extra].count += count
            for k, j in enumerate(hit.rows):
                if hit.columns is not None:
                    tally.columns.update(hit.columns[k])
                if len(tally.ids) < tally.limit:
                    tally.ids.append(sample(j))
                if self.affected is not None and hit.values is not None:
                    events.append((j, self._rank[check.name], check.name, hit.values[k]))
        if self.affected is not None:
            for j, _, name, values in sorted(events, key=lambda e: (e[0], e[1])):
                self.affected.append({"sample_id": sample(j), "check": name, **values})


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
        One finding per enabled check, in the registry's order.
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


def _sample_id(row: Mapping[str, Any], id_column: str, number: int) -> str:
    for column in (id_column, "path"):
        value = text(row.get(column))
        if value:
            return f"row {number}" if pii_kinds(value) else value
    return f"row {number}"


def _findings(
    config: GovernanceConfig,
    tallies: Mapping[str, Any],
    total: int,
    seen_columns: set[str],
    checks: Iterable[type[GovernanceCheck]] | None = None,
) -> list[dict[str, Any]]:
    """One finding per check of ``checks`` (default: the registered ones) that ``config`` runs.

    ``tallies``: check name (and extra count name) -> its count, first sample ids and columns.
    """
    checks = governance_checks() if checks is None else tuple(checks)
    counts = {name: tally.count for name, tally in tallies.items()}
    findings: list[tuple[type[GovernanceCheck], dict[str, Any]]] = []
    for check in checks:
        if not check.is_configured(config):
            continue
        settings = getattr(config, check.section)
        blocking = check.is_blocking(config)
        tally = tallies[check.name]
        needed = check.needed_columns(config)
        absent = [c for c in needed if c not in seen_columns]
        finding: dict[str, Any] = {
            "check": check.name,
            "status": ("fail" if blocking else "warn") if tally.count else "pass",
            "blocking": blocking,
            "count": tally.count,
            "total": total,
            "sample_ids": list(tally.ids),
            "message": (
                f"{tally.count} of {total} samples: {check.describe(config)}"
                if tally.count
                else f"{total} samples checked: none found"
            ),
            "settings": check.settings(config),
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
        for extra in check.extra_counts:
            finding[extra] = counts[extra]
        findings.append((check, finding))
    for check, finding in findings:
        check.adjust(finding, counts)
    return [finding for _, finding in findings]
