"""``skipped.csv``: every image that could not be read (``data.on_bad_image: skip``), with the reason.

One row per skipped image, in dataset order: ``sample_id, reason``. The report names the
first 50 and counts them all by reason; results.json ``dataset.skipped`` holds the same list.
The attestation covers this file when the run is signed. Cells are neutralised against formula
injection (:mod:`audit.contract.csvfile`, the one CSV writer). Written for every run (a header only when no
image was skipped), so a folder never holds a stale list. A detector's results (``task: detection``) have
their own columns and also list the skipped annotations (:mod:`reports.detection_csv`).
"""

from __future__ import annotations

import io
from pathlib import Path

from audit.contract import csvfile
from audit.contract.results import Results
from reports.atomic import atomic_write_text
from reports.detection_csv import detection_skipped_csv_text

__all__ = ["SKIPPED_CSV", "skipped_csv_text", "write_skipped_csv"]

SKIPPED_CSV = "skipped.csv"


def skipped_csv_text(results: Results) -> str:
    """The file's text for ``results`` (a detector's: :func:`reports.detection_csv.detection_skipped_csv_text`)."""
    if results.task == "detection":
        return detection_skipped_csv_text(results)
    buffer = io.StringIO()
    writer = csvfile.writer(buffer)
    writer.writerow(["sample_id", "reason"])
    for item in results.dataset.skipped:
        writer.writerow([item.sample, item.reason])
    return buffer.getvalue()


def write_skipped_csv(results: Results, path: str | Path) -> Path:
    """Write ``skipped.csv`` for ``results`` atomically; returns the path."""
    return atomic_write_text(Path(path), skipped_csv_text(results))
