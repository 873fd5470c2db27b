"""What every stage of one run shares: its context, its outcome, the warnings it raises.

:mod:`audit.runner` builds a :class:`RunContext` and runs a classifier's stages;
:mod:`audit.detection_run` runs a detector's with the same context. Both return an
:class:`AuditOutcome`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audit.contract.config import AuditConfig
from audit.contract.errors import ExitCode
from audit.contract.results import Results
from audit.tracking import TrackedRun
from policies import PolicyGate
from reports import OutputTransaction

__all__ = ["AuditOutcome", "OutputRecoveryWarning", "ProgressFactory", "RunContext", "Signing", "decoding_of"]


class OutputRecoveryWarning(UserWarning):
    """What the output transaction found and cleaned up (leftovers of interrupted runs)."""


ProgressFactory = Callable[[int, str], Callable[..., None]]


@dataclass(frozen=True)
class AuditOutcome:
    """What a run produced. ``exit_code`` is 0 (pass) or 1 (a blocking rule failed)."""

    results: Results | None  # None on the ranks other than 0 of a distributed run
    out_dir: Path
    files: list[Path]
    class_names_from_folders: bool = False
    tracked: TrackedRun | None = None  # the MLflow run, when tracking is on and logging succeeded

    @property
    def verdict(self) -> str:
        if self.results is None or self.results.verdict is None:
            raise ValueError("no verdict: these results were not judged (a non-zero rank of a distributed run)")
        return self.results.verdict

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.PASS if self.verdict == "pass" else ExitCode.FAIL


@dataclass(frozen=True)
class Signing:
    """The report's signing key, loaded before any data are read (None: ``report.sign_key`` not set)."""

    keys: Any = None
    passphrase: bytes | None = None


@dataclass(frozen=True)
class RunContext:
    """What every stage of one run reads; built once by :func:`run_audit`, never changed.

    Attributes:
        cfg: the config, with a Hugging Face folder's own model values and the image decoding decided.
        config_path: the config file (relative model and data paths are resolved from its folder).
        out_dir: where the outputs go.
        gate: the policy, asked through its façade only (:class:`policies.PolicyGate`).
        started: the run's start (UTC), the reference time of governance checks.
        rank: this process's rank (0 writes the outputs).
        world: the number of processes.
        outputs: the output transaction on rank 0, else None.
        baseline: the deployed model's results (``--baseline``), or None.
        signing: the report's signing key.
        progress: makes the progress callback of a stage (the CLI's bars), or None.
        notify: receives the lines a person running the audit should see (the CLI prints them).
    """

    cfg: AuditConfig
    config_path: Path | None
    out_dir: Path
    gate: PolicyGate
    started: dt.datetime
    rank: int
    world: int
    outputs: OutputTransaction | None
    baseline: Results | None = None
    signing: Signing = field(default_factory=Signing)
    progress: ProgressFactory | None = None
    notify: Callable[[str], None] | None = None

    @property
    def source(self) -> str:
        """The config as messages name it."""
        return str(self.config_path or "config")

    @property
    def writes(self) -> bool:
        """Whether this process writes the outputs (rank 0)."""
        return self.rank == 0

    @property
    def decoding(self) -> dict[str, Any]:
        """How :class:`AuditDataset` decodes an image file (config ``data.max_image_pixels``, ``data.exif``, ``data.alpha``)."""
        return decoding_of(self.cfg)

    def write_outputs(
        self,
        results: Results,
        *,
        model_info: dict[str, Any],
        data_subjects: dict[str, Path],
        governance: list[dict[str, Any]],
        **staged: Any,
    ) -> list[Path]:
        """Every output of the run through :func:`reports.write_outputs` (the one writer, shared with
        ``cvaudit report``), signed with the run's key; the model file (when its digest was taken) and
        ``data_subjects`` (``"dataset:<name>"`` -> path, ...) are attestation subjects. ``staged`` passes what only this kind of run has
        (``predictions``, ``breaking_points``, ``staged``). Notes of the swap become
        :class:`OutputRecoveryWarning`.
        """
        import warnings

        from policies import check_names
        from reports import results_json_bytes, write_outputs

        assert self.outputs is not None  # rank 0 writes
        subjects: dict[str, Path] = {}
        if model_info.get("sha256") and model_info.get("path"):
            subjects["model:" + Path(model_info["path"]).name] = Path(model_info["path"])
        subjects.update(data_subjects)
        written = write_outputs(
            self.outputs,
            results,
            results_json=results_json_bytes(results),
            formats=tuple(self.cfg.report.formats),
            sign_key=self.cfg.report.sign_key if self.signing.keys else None,
            passphrase=self.signing.passphrase,
            extra_subjects=subjects,
            governance=governance,
            check_order=check_names(),
            **staged,
        )  # the whole set at once; files of an earlier run are not carried over
        for note in written.notes:
            warnings.warn(note, OutputRecoveryWarning, stacklevel=3)
        return list(written.files)


def decoding_of(cfg: AuditConfig) -> dict[str, Any]:
    """How :class:`AuditDataset` decodes an image file (config ``data.max_image_pixels``, ``data.exif``, ``data.alpha``,
    ``data.image_formats``)."""
    return {
        "max_pixels": cfg.data.max_image_pixels,
        "exif": cfg.data.exif,
        "alpha": cfg.data.alpha,
        "formats": tuple(cfg.data.image_formats),
    }
