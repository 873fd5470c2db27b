"""Record an audit in MLflow: ``tracking: {mlflow: {experiment, run_name, tracking_uri}}`` or ``--mlflow``.

The runner calls :func:`track_run` once, after every output file is in place,
so tracking can neither change the verdict or the exit code nor lose a local
output: any failure (MLflow missing at that point, a server that cannot be
reached, a store that refuses the run) is one warning line on stderr. Needs the
``cvaudit[mlflow]`` extra; MLflow is imported only when a run is tracked.

What a run logs (names are stable; README, "MLflow"):

- **params**: the config (as the run used it, Hugging Face values filled in),
  flattened with dots: ``model.path``, ``data.attributes``, ``stressors.0.name``,
  ``evaluation.n_bootstrap``... (defaults included; ``tracking`` itself and null
  values are left out; lists of plain values are JSON text);
- **metrics**: per condition ``<condition>/<metric>`` where ``<condition>`` is
  ``clean`` or ``<stressor>/<severity>`` (``night@3`` -> ``night/3``) and
  ``<metric>`` one of :data:`CONDITION_METRICS`; per group
  ``<condition>/group/<attribute>/<value>/accuracy`` (and ``/n``); per attribute
  ``<condition>/fairness/<attribute>/accuracy_gap``; ``summary/mce`` and
  ``summary/relative_mce``; ``policy/pass`` (1 pass, 0 fail);
- **tags**: ``cvaudit.verdict``, ``cvaudit.policy``, ``cvaudit.policy_sha256``,
  ``cvaudit.blocking_failures``, ``cvaudit.version``, ``cvaudit.schema_version``,
  ``cvaudit.results_sha256``, ``cvaudit.model_sha256``, ``cvaudit.dataset_sha256``,
  ``cvaudit.config_sha256``, ``cvaudit.attestation_sha256`` (signed runs),
  ``cvaudit.out`` (the local output folder);
- **artifacts**: :data:`ARTIFACTS` that the run wrote (predictions.csv stays
  local: it holds one row per sample with its attributes).

A name part (stressor, severity, attribute, group value) keeps letters, digits,
``_ - .`` and spaces; any other character becomes ``_``, and a part that was
changed (or is longer than 64 characters) gets ``_`` and the first 8 hex digits
of its SHA-256 appended, so names never collide and do not depend on the other
groups of the run.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import re
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from audit.contract.config import AuditConfig, MlflowConfig, TrackingConfig
from audit.contract.digest import sha256_file
from audit.contract.errors import AuditError

__all__ = [
    "ARTIFACTS",
    "CONDITION_METRICS",
    "config_params",
    "log_to_mlflow",
    "metric_values",
    "require_tracking",
    "track_audit",
    "track_run",
    "with_experiment",
]

#: Per-condition metrics logged (interval bounds as ``<metric>_ci_low`` / ``_ci_high``).
CONDITION_METRICS = (
    "n",
    "accuracy",
    "accuracy_ci_low",
    "accuracy_ci_high",
    "balanced_accuracy",
    "macro_f1",
    "top_k_accuracy",
    "ece",
    "ece_ci_low",
    "ece_ci_high",
    "mce",
    "adaptive_ece",
    "brier",
    "nll",
)
#: Output files logged as artifacts when present.
ARTIFACTS = (
    "results.json",
    "report.html",
    "report.pdf",
    "junit.xml",
    "attestation.dsse.json",
    "attestation.pub.pem",
)
#: MLflow's HTTP client settings cvaudit lowers unless the user set them (MLflow's defaults
#: retry for minutes; an audit should not wait that long for an unreachable server).
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}
_PARAM_LIMIT = 6000  # MLflow's limit on a parameter value
_KEEP = re.compile(r"[^\w.\- ]")


def with_experiment(cfg: AuditConfig, experiment: str) -> AuditConfig:
    """``cfg`` logging to ``experiment`` (``--mlflow``), keeping the config's run name and URI."""
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


def _part(text: Any) -> str:
    raw = str(text)
    safe = _KEEP.sub("_", raw)
    if safe != raw or len(safe) > 64 or not safe.strip(". "):
        digest = hashlib.sha256(raw.encode("utf-8")).hexdigest()[:8]
        safe = f"{safe[:48]}_{digest}" if safe.strip(". ") else digest
    return safe


def _condition_key(condition_id: str) -> str:
    if condition_id == "clean" or "@" not in condition_id:
        return _part(condition_id)
    stressor, _, severity = condition_id.rpartition("@")
    return f"{_part(stressor)}/{_part(severity)}"


def _metrics(prefix: str, metrics: Mapping[str, Any], names: tuple[str, ...]) -> dict[str, float]:
    out = {}
    for name in names:
        if name.endswith(("_ci_low", "_ci_high")):
            base, _, end = name.rpartition("_ci_")
            ci = metrics.get(f"{base}_ci")
            value = None if not ci else ci[0 if end == "low" else 1]
        else:
            value = metrics.get(name)
        if value is not None and not isinstance(value, bool):
            out[f"{prefix}/{name}"] = float(value)
    return out


def metric_values(results: Mapping[str, Any]) -> dict[str, float]:
    """Every metric a run logs, by its MLflow name (see the module docstring).

    Args:
        results: A results.json dict with a ``policy`` section.

    Returns:
        MLflow metric name -> value; undefined values (null in results.json) are left out.
    """
    out: dict[str, float] = {}
    for c in results["conditions"]:
        key = _condition_key(c["id"])
        out.update(_metrics(key, c["metrics"], CONDITION_METRICS))
        for g in c["groups"]:
            group = f"{key}/group/{_part(g['attribute'])}/{_part(g['value'])}"
            out.update(_metrics(group, g["metrics"], ("n", "accuracy")))
    for f in results.get("fairness") or []:
        if f.get("accuracy_gap") is not None:
            out[f"{_condition_key(f['condition'])}/fairness/{_part(f['attribute'])}/accuracy_gap"] = float(
                f["accuracy_gap"]
            )
    summary = results.get("robustness_summary") or {}
    for name in ("mce", "relative_mce"):
        if summary.get(name) is not None:
            out[f"summary/{name}"] = float(summary[name])
    policy = results.get("policy") or {}
    if policy.get("verdict") is not None:
        out["policy/pass"] = 1.0 if policy["verdict"] == "pass" else 0.0
    return out


def _flatten(prefix: str, value: Any, out: dict[str, str]) -> None:
    if value is None:
        return
    if isinstance(value, Mapping):
        for k, v in value.items():
            _flatten(f"{prefix}.{_part(k)}" if prefix else _part(k), v, out)
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


def _tags(results: Mapping[str, Any], out_dir: Path) -> dict[str, str]:
    policy = results.get("policy") or {}
    provenance = results.get("provenance") or {}
    tags = {
        "cvaudit.verdict": policy.get("verdict"),
        "cvaudit.policy": policy.get("name"),
        "cvaudit.policy_sha256": policy.get("sha256"),
        "cvaudit.blocking_failures": ", ".join(policy.get("blocking_failures") or []) or None,
        "cvaudit.version": (results.get("tool") or {}).get("version"),
        "cvaudit.schema_version": results.get("schema_version"),
        "cvaudit.model_sha256": (results.get("model") or {}).get("sha256"),
        "cvaudit.dataset_sha256": (results.get("dataset") or {}).get("sha256"),
        "cvaudit.config_sha256": provenance.get("config_sha256"),
        "cvaudit.out": str(out_dir.resolve()),
    }
    for name, key in (
        ("results.json", "cvaudit.results_sha256"),
        ("attestation.dsse.json", "cvaudit.attestation_sha256"),
    ):
        if (out_dir / name).is_file():
            tags[key] = sha256_file(out_dir / name)
    return {k: str(v) for k, v in tags.items() if v is not None}


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


@contextlib.contextmanager
def _http_defaults() -> Iterator[None]:
    added = [k for k in HTTP_DEFAULTS if k not in os.environ]
    for k in added:
        os.environ[k] = HTTP_DEFAULTS[k]
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


def log_to_mlflow(
    mlflow_cfg: MlflowConfig,
    *,
    results: Mapping[str, Any],
    out_dir: Path,
    params: Mapping[str, str],
    base_dir: Path | None = None,
) -> str:
    """Create one MLflow run and log params, metrics, tags and artifacts to it.

    Args:
        mlflow_cfg: Experiment, run name and tracking URI (None: MLflow's own default,
            ``MLFLOW_TRACKING_URI`` or its local store).
        results: The run's results (results.json content).
        out_dir: The folder holding the run's outputs (artifacts are taken from it).
        params: Parameters to log (see :func:`config_params`).
        base_dir: Folder a relative tracking path is resolved against (the config's).

    Returns:
        The MLflow run id.

    Raises:
        Exception: whatever MLflow raises (the caller turns it into a warning). The run is
            marked FAILED when it was created before the failure.
    """
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag

    with _http_defaults():
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
                metrics=[Metric(k, v, now, 0) for k, v in sorted(metric_values(results).items())],
                params=[Param(k, v) for k, v in sorted(params.items())],
                tags=[RunTag(k, v) for k, v in sorted(_tags(results, out_dir).items())],
            )
            for name in ARTIFACTS:
                if (out_dir / name).is_file():
                    client.log_artifact(run_id, str(out_dir / name))
        except BaseException:
            with contextlib.suppress(Exception):
                client.set_terminated(run_id, "FAILED")
            raise
        client.set_terminated(run_id, "FINISHED")
    return run_id


def _warn(message: str) -> None:
    from audit.cli.boundary import say

    say(f"cvaudit: warning: {message}")


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0][:240] if lines else type(err).__name__


def track_run(
    mlflow_cfg: MlflowConfig | None,
    *,
    results: Mapping[str, Any],
    out_dir: Path,
    params: Mapping[str, str],
    base_dir: Path | None = None,
) -> str | None:
    """Log a finished run to MLflow when configured; never raises.

    Returns:
        The MLflow run id, or None when tracking is off or failed (then one warning line on
        stderr says why; the outputs in ``out_dir`` and the verdict are unaffected).
    """
    if mlflow_cfg is None:
        return None
    if importlib.util.find_spec("mlflow") is None:
        _warn("MLflow tracking skipped: MLflow is not installed (pip install 'cvaudit[mlflow]')")
        return None
    try:
        run_id = log_to_mlflow(mlflow_cfg, results=results, out_dir=out_dir, params=params, base_dir=base_dir)
    except KeyboardInterrupt:  # the outputs are complete: only the tracking stops
        _warn(f"MLflow tracking interrupted; the audit's outputs are in {out_dir} and its verdict stands")
        return None
    except Exception as err:  # any tracking failure is a warning: the audit's outcome stands
        _warn(
            f"MLflow tracking failed ({type(err).__name__}: {_first_line(err)}); "
            f"the audit's outputs are in {out_dir} and its verdict stands"
        )
        return None
    _note(f"mlflow: logged run {run_id} to experiment {mlflow_cfg.experiment!r}")
    return run_id


def _note(message: str) -> None:
    from audit.cli.boundary import say

    say(message)


def track_audit(cfg: AuditConfig, results: Mapping[str, Any], out_dir: Path, *, config_path: Path | None) -> str | None:
    """The runner's hook: log the finished run when ``cfg.tracking.mlflow`` is set (see :func:`track_run`)."""
    if cfg.tracking.mlflow is None:
        return None
    base_dir = Path(config_path).resolve().parent if config_path else None
    return track_run(
        cfg.tracking.mlflow, results=results, out_dir=out_dir, params=config_params(cfg), base_dir=base_dir
    )
