"""Record an audit in MLflow: ``tracking: {mlflow: {experiment, run_name, tracking_uri}}`` or ``--mlflow``.

The runner calls :func:`track_run` once, after every output file is in place,
so tracking can neither change the verdict or the exit code nor lose a local
output: any failure (MLflow missing at that point, a server that cannot be
reached or stops answering, a store that refuses the run) is one
:class:`TrackingWarning` naming the run id (when one was created) and the
tracking URI; the command boundary prints it as one ``cvaudit: warning:`` line.
Needs the ``cvaudit[mlflow]`` extra; MLflow is imported only when a run is tracked.

What a run logs (names are stable; docs/integrations/mlflow.md):

- **params**: the config (as the run used it, Hugging Face values filled in),
  flattened with dots: ``model.path``, ``data.attributes``, ``stressors.0.name``,
  ``evaluation.n_bootstrap``... (defaults included; ``tracking`` itself and null
  values are left out; lists of plain values are JSON text); and per stressor
  ``cvaudit.steps.<stressor>``: the JSON list of ``[step, severity]`` pairs;
- **metrics**: one metric per stressor and quantity, with the severity as the
  MLflow *step* (:func:`severity_steps`), so MLflow draws each stressor's curve:
  ``<stressor>/<metric>`` (``night/accuracy`` at steps 1..5), the clean
  condition at step 0 of every curve and, alone, as ``clean/<metric>``;
  ``<metric>`` is one of :data:`CONDITION_METRICS`; per group
  ``<stressor>/group/<attribute>/<value>/accuracy`` (and ``/n``); per attribute
  ``<stressor>/fairness/<attribute>/accuracy_gap``; ``summary/mce``,
  ``summary/relative_mce``, with a corruption benchmark ``summary/imagenet_c/<key>`` (``mce``,
  ``relative_mce``, ``mpc``, ``rpc`` ...) and ``policy/pass`` (1 pass, 0 fail; none for a report-only policy) at
  step 0;
- **tags**: every name of :data:`TAGS`, on every run (an empty value when it does
  not apply: ``cvaudit.blocking_failures`` of a passing run,
  ``cvaudit.attestation_sha256`` of an unsigned one);
- **artifacts**: :data:`ARTIFACTS` that the run wrote (predictions.csv stays
  local: it holds one row per sample with its attributes; so do a detection audit's detections.csv and
  detections.json, one row or record per image or detection, whose digests the attestation lists).

A name part (stressor, attribute, group value) is kept readable: ``×`` (the
intersection of attributes) becomes ``_x_`` and any other character MLflow
refuses becomes ``_`` (``camera×ink`` -> ``camera_x_ink``). Only when two
different parts of the same kind would get the same name (or a part is empty,
only dots, longer than 64 characters, or a stressor is called ``clean``,
``summary`` or ``policy``) does a changed part get ``_`` and the first 8 hex
digits of the original's SHA-256 appended.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from audit.contract.config import AuditConfig, MlflowConfig, TrackingConfig
from audit.contract.digest import sha256_file
from audit.contract.errors import AuditError
from audit.contract.results import Results
from audit.tracking.names import (
    CONDITION_METRICS,
    DETECTION_METRICS,
    STEP_SCALE,
    metric_values,
    readable,
    severity_steps,
    step_params,
)

__all__ = [
    "ARTIFACTS",
    "CONDITION_METRICS",
    "DETECTION_METRICS",
    "HTTP_DEFAULTS",
    "STEP_SCALE",
    "TAGS",
    "TrackedRun",
    "TrackingWarning",
    "config_params",
    "log_to_mlflow",
    "metric_values",
    "require_tracking",
    "severity_steps",
    "step_params",
    "track_audit",
    "track_run",
    "with_experiment",
]

#: Output files logged as artifacts when present.
ARTIFACTS = (
    "results.json",
    "report.html",
    "report.pdf",
    "junit.xml",
    "attestation.dsse.json",
    "attestation.pub.pem",
)
#: Tags set on every run (empty when they do not apply).
TAGS = (
    "cvaudit.task",
    "cvaudit.verdict",
    "cvaudit.report_only",
    "cvaudit.policy",
    "cvaudit.policy_sha256",
    "cvaudit.blocking_failures",
    "cvaudit.version",
    "cvaudit.schema_version",
    "cvaudit.results_sha256",
    "cvaudit.model_sha256",
    "cvaudit.dataset_sha256",
    "cvaudit.config_sha256",
    "cvaudit.attestation_sha256",
    "cvaudit.out",
)
#: MLflow's HTTP client settings while cvaudit logs, unless the config (``timeout_s``,
#: ``max_retries``) or the environment sets them: MLflow's own defaults (120 s, 7 retries)
#: make a server that accepts connections but never answers cost minutes per call.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
}
_PARAM_LIMIT = 6000  # MLflow's limit on a parameter value


class TrackingWarning(UserWarning):
    """MLflow tracking did not complete; the audit's outputs and verdict are unaffected."""


@dataclass(frozen=True)
class TrackedRun:
    """A run logged to MLflow: its id, experiment and tracking URI (credentials removed)."""

    run_id: str
    experiment: str
    tracking_uri: str


class _TrackingFailed(Exception):
    """A failure after the run was created: which run, and whether it could be marked FAILED."""

    def __init__(self, run_id: str, marked: bool, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.run_id, self.marked, self.cause = run_id, marked, cause


def with_experiment(cfg: AuditConfig, experiment: str) -> AuditConfig:
    """``cfg`` logging to ``experiment`` (``--mlflow``), keeping the config's other tracking settings."""
    current = cfg.tracking.mlflow
    mlflow_cfg = (
        current.model_copy(update={"experiment": experiment})
        if current is not None
        else MlflowConfig(experiment=experiment)
    )
    return cfg.model_copy(update={"tracking": TrackingConfig(mlflow=mlflow_cfg)})


def require_tracking(cfg: AuditConfig) -> None:
    """Fail before the audit starts when tracking is asked for but MLflow is not installed.

    Raises:
        AuditError: ``tracking.mlflow`` (or ``--mlflow``) without the ``cvaudit[mlflow]`` extra.
    """
    if cfg.tracking.mlflow is not None and importlib.util.find_spec("mlflow") is None:
        raise AuditError("tracking.mlflow needs MLflow: pip install 'cvaudit[mlflow]'")


def _flatten(prefix: str, value: Any, out: dict[str, str]) -> None:
    if value is None:
        return
    if isinstance(value, Mapping):
        for k, v in value.items():
            key = readable(k)
            _flatten(f"{prefix}.{key}" if prefix else key, v, out)
    elif isinstance(value, list) and any(isinstance(v, (Mapping, list)) for v in value):
        for i, v in enumerate(value):
            _flatten(f"{prefix}.{i}", v, out)
    else:
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        out[prefix] = text if len(text) <= _PARAM_LIMIT else text[: _PARAM_LIMIT - 1] + "…"


def config_params(cfg: AuditConfig) -> dict[str, str]:
    """The config as MLflow parameters: flattened with dots, ``tracking`` and null values left out."""
    out: dict[str, str] = {}
    _flatten("", cfg.model_dump(mode="json", exclude={"tracking"}), out)
    return out


def _tags(results: Results, out_dir: Path) -> dict[str, str]:
    policy = results.policy
    report_only = policy is not None and bool(policy.report_only)
    tags = {
        "cvaudit.task": results.task,
        # a report-only policy gates nothing: its verdict is "report_only", never a "pass" a dashboard counts
        "cvaudit.verdict": "report_only" if report_only else results.verdict,
        "cvaudit.report_only": "true" if report_only else "false",
        "cvaudit.policy": policy.name if policy is not None else None,
        "cvaudit.policy_sha256": policy.sha256 if policy is not None else None,
        "cvaudit.blocking_failures": ", ".join(policy.blocking_failures if policy is not None else []),
        "cvaudit.version": results.tool.version,
        "cvaudit.schema_version": results.schema_version,
        "cvaudit.model_sha256": results.model.sha256,
        "cvaudit.dataset_sha256": results.dataset.sha256,
        "cvaudit.config_sha256": results.provenance.config_sha256,
        "cvaudit.out": str(out_dir.resolve()),
    }
    for name, key in (
        ("results.json", "cvaudit.results_sha256"),
        ("attestation.dsse.json", "cvaudit.attestation_sha256"),
    ):
        tags[key] = sha256_file(out_dir / name) if (out_dir / name).is_file() else None
    return {k: "" if tags.get(k) is None else str(tags[k]) for k in TAGS}


def _resolve_uri(uri: str | None, base_dir: Path | None) -> str | None:
    """A plain path (no scheme) is relative to the config's folder, like every path in the config."""
    if uri is None:
        return None
    scheme = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*):", uri)
    if scheme and len(scheme.group(1)) > 1:  # 'C:' is a Windows drive, not a scheme
        return uri
    path = Path(uri).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return path.resolve().as_uri()


def _shown_uri(uri: str) -> str:
    """``uri`` without a user name or password, for messages."""
    parts = urlsplit(uri)
    if "@" not in parts.netloc:
        return uri
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _http_settings(mlflow_cfg: MlflowConfig) -> dict[str, str]:
    """MLflow's HTTP settings for cvaudit's calls: the config's, else the environment's, else :data:`HTTP_DEFAULTS`."""
    settings = {k: os.environ.get(k, v) for k, v in HTTP_DEFAULTS.items()}
    settings["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"  # stdout is the results' (--format json)
    if mlflow_cfg.timeout_s is not None:
        settings["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(mlflow_cfg.timeout_s)
    if mlflow_cfg.max_retries is not None:
        settings["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(mlflow_cfg.max_retries)
    return settings


@contextlib.contextmanager
def _scoped_env(settings: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the block and restore the previous values (or absence) after it."""
    before = {k: os.environ.get(k) for k in settings}
    os.environ.update(settings)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def log_to_mlflow(
    mlflow_cfg: MlflowConfig,
    *,
    results: Results,
    out_dir: Path,
    params: Mapping[str, str],
    base_dir: Path | None = None,
) -> TrackedRun:
    """Create one MLflow run and log params, metrics, tags and artifacts to it.

    Args:
        mlflow_cfg: Experiment, run name, tracking URI (None: MLflow's own default,
            ``MLFLOW_TRACKING_URI`` or its local store) and HTTP timeout and retries.
        results: The run's results (:class:`~audit.contract.results.Results`).
        out_dir: The folder holding the run's outputs (artifacts are taken from it).
        params: Parameters to log (see :func:`config_params`); :func:`step_params` are added.
        base_dir: Folder a relative tracking path is resolved against (the config's).

    Returns:
        The run logged.

    Raises:
        Exception: whatever MLflow raises before the run exists; after that, the failure wrapped
            with the run id and whether the run could be marked FAILED (the caller warns).
    """
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.exceptions import MlflowException

    with _scoped_env(_http_settings(mlflow_cfg)):
        client = MlflowClient(tracking_uri=_resolve_uri(mlflow_cfg.tracking_uri, base_dir))
        experiment = client.get_experiment_by_name(mlflow_cfg.experiment)
        if experiment is not None and experiment.lifecycle_stage == "deleted":
            raise RuntimeError(f"experiment {mlflow_cfg.experiment!r} is deleted; restore it or choose another name")
        experiment_id = (
            experiment.experiment_id if experiment is not None else client.create_experiment(mlflow_cfg.experiment)
        )
        run = client.create_run(experiment_id, run_name=mlflow_cfg.run_name)
        run_id = run.info.run_id
        try:
            now = int(time.time() * 1000)
            client.log_batch(
                run_id,
                metrics=[Metric(k, v, now, step) for (k, step), v in sorted(metric_values(results).items())],
                params=[Param(k, v) for k, v in sorted({**params, **step_params(results)}.items())],
                tags=[RunTag(k, v) for k, v in sorted(_tags(results, out_dir).items())],
            )
            for name in ARTIFACTS:
                if (out_dir / name).is_file():
                    client.log_artifact(run_id, str(out_dir / name))
        except BaseException as err:  # cleanup on any exit, Ctrl-C included: mark the run FAILED, re-raise
            marked = True
            try:
                client.set_terminated(run_id, "FAILED")
            except (MlflowException, OSError):  # the store or server cannot be reached (requests' errors are OSError)
                marked = False
            if isinstance(err, Exception):
                raise _TrackingFailed(run_id, marked, err) from err
            raise
        client.set_terminated(run_id, "FINISHED")
        return TrackedRun(run_id, mlflow_cfg.experiment, _shown_uri(client.tracking_uri))


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0][:240] if lines else type(err).__name__


def _timed_out(err: BaseException) -> bool:
    seen = 0
    while err is not None and seen < 10:  # bounded walk of the cause chain
        if "timed out" in str(err).lower() or "timeout" in type(err).__name__.lower():
            return True
        err, seen = err.__cause__ or err.__context__, seen + 1
    return False


def _failure_message(err: BaseException, mlflow_cfg: MlflowConfig, uri: str, out_dir: Path) -> str:
    settings = _http_settings(mlflow_cfg)
    cause = err.cause if isinstance(err, _TrackingFailed) else err
    if _timed_out(cause):
        why = (
            f"no answer from the tracking server within {settings['MLFLOW_HTTP_REQUEST_TIMEOUT']} s "
            f"({settings['MLFLOW_HTTP_REQUEST_MAX_RETRIES']} retries)"
        )
    else:
        why = f"{type(cause).__name__}: {_first_line(cause)[:160]}"
    where = f"tracking URI {uri}"
    if isinstance(err, _TrackingFailed):
        state = "marked FAILED" if err.marked else "left RUNNING (the server could not be reached to mark it FAILED)"
        where = f"run {err.run_id} at {where} {state}"
    # what a reader needs first: the run, the URI, that the audit stands (the boundary keeps one line of 300 chars)
    return f"MLflow tracking failed: {where}; the audit's outputs are in {out_dir} and its verdict stands ({why})"


def _warn(message: str) -> None:
    warnings.warn(message, TrackingWarning, stacklevel=3)


def _default_uri(mlflow_cfg: MlflowConfig, base_dir: Path | None) -> str:
    uri = _resolve_uri(mlflow_cfg.tracking_uri, base_dir)
    if uri is None:
        with contextlib.suppress(Exception):
            import mlflow

            uri = mlflow.get_tracking_uri()
    return _shown_uri(uri or "(MLflow's default)")


def track_run(
    mlflow_cfg: MlflowConfig | None,
    *,
    results: Results,
    out_dir: Path,
    params: Mapping[str, str],
    base_dir: Path | None = None,
) -> TrackedRun | None:
    """Log a finished run to MLflow when configured; never raises.

    Returns:
        The run logged, or None when tracking is off or failed (then a :class:`TrackingWarning`
        says why, with the run id and tracking URI; the outputs in ``out_dir`` and the verdict are
        unaffected).
    """
    if mlflow_cfg is None:
        return None
    if importlib.util.find_spec("mlflow") is None:
        _warn("MLflow tracking skipped: MLflow is not installed (pip install 'cvaudit[mlflow]')")
        return None
    try:
        return log_to_mlflow(mlflow_cfg, results=results, out_dir=out_dir, params=params, base_dir=base_dir)
    except KeyboardInterrupt:  # the outputs are complete: only the tracking stops
        _warn(f"MLflow tracking interrupted; the audit's outputs are in {out_dir} and its verdict stands")
    except Exception as err:  # any tracking failure is a warning: the audit's outcome stands
        _warn(_failure_message(err, mlflow_cfg, _default_uri(mlflow_cfg, base_dir), out_dir))
    return None


def track_audit(cfg: AuditConfig, results: Results, out_dir: Path, *, config_path: Path | None) -> TrackedRun | None:
    """The runner's hook: log the finished run when ``cfg.tracking.mlflow`` is set (see :func:`track_run`)."""
    if cfg.tracking.mlflow is None:
        return None
    base_dir = Path(config_path).resolve().parent if config_path else None
    return track_run(
        cfg.tracking.mlflow, results=results, out_dir=out_dir, params=config_params(cfg), base_dir=base_dir
    )
