"""``governance.csv``: every sample a governance check flagged, for the people who act on it.

One row per (sample, check): ``sample_id, check, reason`` and the manifest
values the check read (a capture date, a consent value, a region; for
personal data only the column names, never the values). Rows are grouped by
check in the order given (the governance registry's, :func:`policies.governance.check_names`,
passed by the caller) and keep the manifest's order within a check. It is a
file for people (opened in spreadsheets), so every cell is neutralised against
formula injection (:mod:`audit.contract.csvfile`, the one CSV writer). The attestation
covers it when the run is signed.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from audit.contract import csvfile
from reports.atomic import atomic_write_text

__all__ = ["GOVERNANCE_CSV", "write_governance_csv"]

GOVERNANCE_CSV = "governance.csv"
_FIRST = ("sample_id", "check", "reason")


def write_governance_csv(
    rows: Iterable[Mapping[str, Any]], path: str | Path, *, check_order: Sequence[str] = ()
) -> Path:
    """Write the affected rows (see :func:`policies.governance.check_governance`'s ``affected``) atomically.

    Args:
        rows: one mapping per (sample, check) with ``sample_id``, ``check``, ``reason`` and values.
        path: where to write.
        check_order: the order of the checks (others follow, by name).

    Returns:
        The path written.
    """
    rows = list(rows)
    rank = {name: i for i, name in enumerate(check_order)}
    ordered = sorted(
        enumerate(rows),
        key=lambda item: (rank.get(str(item[1].get("check")), len(rank)), str(item[1].get("check")), item[0]),
    )
    extra = sorted({k for r in rows for k in r} - set(_FIRST))
    buffer = io.StringIO()
    writer = csvfile.writer(buffer)
    writer.writerow([*_FIRST, *extra])
    for _, row in ordered:
        writer.writerow([row.get(k, "") for k in (*_FIRST, *extra)])
    return atomic_write_text(Path(path), buffer.getvalue())
