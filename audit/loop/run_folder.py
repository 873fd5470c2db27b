"""A finished run folder (``cvaudit run --out RUN_DIR``) as the loop commands read it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from audit.contract.errors import AuditError
from audit.contract.load import ResultsError, load_results
from audit.contract.results import Results

__all__ = ["RunFolder", "open_run"]


@dataclass(frozen=True)
class RunFolder:
    """The parts of a run folder: its results (through the one reader) and its per-sample files."""

    path: Path
    results: Results
    predictions: Path
    breaking_points: Path | None
    detections: Path | None = None

    @property
    def task(self) -> str:
        return self.results.task

    @property
    def natural_conditions(self) -> set[str]:
        """Ids of the clean and image-stressor conditions (not attacks)."""
        if self.results.task == "detection":
            return {c.id for c in self.results.detection.conditions}  # a detection audit runs no attacks
        return {c.id for c in self.results.conditions if not c.model_aware}

    @property
    def config_path(self) -> Path | None:
        config = self.results.provenance.config
        return Path(config) if config else None


def open_run(run_dir: Path, *, need_predictions: bool = True) -> RunFolder:
    """Read ``results.json`` of a run folder (through the one reader) and find its per-sample files.

    A classification run's per-sample file is ``predictions.csv``; a detection run's are
    ``detections.json`` (every detection, COCO results format, per condition) and ``detections.csv``
    (per condition and image: objects, detections, tp, fp, fn).

    Raises:
        AuditError: not a folder, no results.json, or (``need_predictions``) no predictions.csv
            (detection: no detections.json).
        ResultsError: a results.json the schema refuses.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise AuditError(f"{run_dir}: not a folder (expected the --out folder of cvaudit run)")
    results_path = run_dir / "results.json"
    if not results_path.is_file():
        raise AuditError(f"{run_dir}: no results.json (not the --out folder of cvaudit run)")
    try:
        results = load_results(results_path)
    except ResultsError:
        raise
    if results.task == "detection":
        detections = run_dir / "detections.json"
        if need_predictions and not detections.is_file():
            raise AuditError(f"{run_dir}: no detections.json; the queue needs the detections of the run")
        return RunFolder(run_dir, results, run_dir / "detections.csv", None, detections)
    predictions = run_dir / "predictions.csv"
    if need_predictions and not predictions.is_file():
        raise AuditError(f"{run_dir}: no predictions.csv; the queue needs the per-sample predictions of the run")
    bp = run_dir / "breaking_points.csv"
    return RunFolder(run_dir, results, predictions, bp if bp.is_file() else None)
