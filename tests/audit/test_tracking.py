"""MLflow tracking: stable metric and parameter names, a file store read back with MLflow's own API,
failures that only warn."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import socket
from pathlib import Path

import pytest
from results_builder import complete_results

from audit.contract.config import MlflowConfig, parse_config
from audit.contract.errors import AuditError
from audit.tracking import ARTIFACTS, config_params, metric_values, require_tracking, track_run, with_experiment

mlflow = pytest.importorskip("mlflow")
from mlflow.utils.validation import _validate_metric_name, _validate_param_name  # noqa: E402


def _metrics(n: int, acc: float, ci=(0.1, 0.9)) -> dict:
    return {"n": n, "accuracy": acc, "accuracy_ci": list(ci), "ece": 0.05, "ece_ci": [0.01, 0.08], "nll": None}


def _results() -> dict:
    groups = [
        {"attribute": "camera", "value": "A", "insufficient_data": False, "metrics": _metrics(12, 0.75)},
        {"attribute": "camera", "value": "B/../x", "insufficient_data": False, "metrics": _metrics(12, 0.5)},
        {"attribute": "camera×ink", "value": "B×thick", "insufficient_data": True, "metrics": _metrics(3, 1.0)},
        {"attribute": "site", "value": "Zürich", "insufficient_data": False, "metrics": _metrics(30, 0.9)},
        {"attribute": "camera", "value": "..", "insufficient_data": True, "metrics": _metrics(1, 0.0)},
    ]
    conditions = [
        {"id": "clean", "stressor": None, "severity": 0, "metrics": _metrics(24, 0.625), "groups": groups},
        {"id": "night@3", "stressor": "night", "severity": 3, "metrics": _metrics(24, 0.5), "groups": groups},
        {"id": "pgd@0.007843", "stressor": "pgd", "severity": 0.007843, "metrics": _metrics(24, 0.25), "groups": []},
    ]
    return complete_results(
        {
            "conditions": conditions,
            "fairness": [{"condition": "night@3", "attribute": "camera", "accuracy_gap": 0.25, "worst_group": "B"}],
            "robustness_summary": {"stressors": [], "mce": 0.4},
            "policy": {"name": "ci-gate", "version": 1, "sha256": "ef" * 32, "verdict": "fail"},
            "model": {"sha256": "ab" * 32},
        }
    )


def test_metric_names_are_stable_valid_and_documented():
    values = metric_values(_results())
    assert values["clean/accuracy"] == 0.625
    assert values["clean/accuracy_ci_low"] == 0.1 and values["clean/accuracy_ci_high"] == 0.9
    assert values["night/3/ece_ci_high"] == 0.08
    assert values["pgd/0.007843/accuracy"] == 0.25
    assert values["clean/group/camera/A/accuracy"] == 0.75 and values["clean/group/camera/A/n"] == 12
    assert values["clean/group/site/Zürich/accuracy"] == 0.9  # MLflow allows Unicode letters
    assert values["night/3/fairness/camera/accuracy_gap"] == 0.25
    assert values["summary/mce"] == 0.4 and values["policy/pass"] == 0.0
    assert "clean/nll" not in values  # null in results.json: not logged
    dots = "clean/group/camera/" + hashlib.sha256(b"..").hexdigest()[:8] + "/accuracy"
    slash = "clean/group/camera/B_.._x_" + hashlib.sha256(b"B/../x").hexdigest()[:8] + "/accuracy"
    assert values[dots] == 0.0 and values[slash] == 0.5  # no path tricks: '/' replaced, '..' alone hashed
    for name in values:
        _validate_metric_name(name)  # MLflow's own check (raises on a bad name)
    assert metric_values(_results()) == values  # deterministic


def test_hashed_parts_follow_the_documented_rule():
    """Characters MLflow refuses become '_', plus '_' and 8 hex digits of the original's SHA-256."""
    values = metric_values(_results())
    attr = "camera_ink_" + hashlib.sha256("camera×ink".encode()).hexdigest()[:8]
    value = "B_thick_" + hashlib.sha256("B×thick".encode()).hexdigest()[:8]
    assert f"clean/group/{attr}/{value}/accuracy" in values


def _config(tmp_path: Path, tracking: dict | None = None):
    raw = {
        "model": {"path": "m.pt"},
        "data": {"manifest": "m.csv", "attributes": ["camera"]},
        "stressors": [{"name": "night", "severities": [1, 3]}, {"name": "pgd", "epsilons": [0.01], "steps": 5}],
    }
    if tracking:
        raw["tracking"] = tracking
    return parse_config(raw, source=tmp_path / "config.yaml", base_dir=tmp_path)


def test_config_params_flatten_the_config(tmp_path):
    cfg = _config(tmp_path, {"mlflow": {"experiment": "e", "tracking_uri": "http://user:secret@host"}})
    params = config_params(cfg)
    assert params["model.path"] == str(tmp_path / "m.pt")
    assert params["data.attributes"] == '["camera"]'
    assert params["stressors.0.name"] == "night" and params["stressors.0.severities"] == "[1.0, 3.0]"
    assert params["stressors.1.steps"] == "5" and params["seed"] == "0"
    assert not any(k.startswith("tracking") for k in params)  # the tracking section (maybe credentials) stays out
    assert "secret" not in json.dumps(params)
    for name in params:
        _validate_param_name(name)


def test_with_experiment_keeps_run_name_and_uri(tmp_path):
    cfg = _config(tmp_path, {"mlflow": {"experiment": "a", "run_name": "r", "tracking_uri": "sqlite:///x.db"}})
    new = with_experiment(cfg, "b").tracking.mlflow
    assert (new.experiment, new.run_name, new.tracking_uri) == ("b", "r", "sqlite:///x.db")
    assert with_experiment(_config(tmp_path), "c").tracking.mlflow == MlflowConfig(experiment="c")


def test_tracking_config_errors(tmp_path):
    with pytest.raises(AuditError, match="tracking.mlflow.experiment: required key is missing"):
        _config(tmp_path, {"mlflow": {"run_name": "x"}})
    with pytest.raises(AuditError, match="tracking.wandb: unknown key"):
        _config(tmp_path, {"wandb": {}})


def test_missing_mlflow_is_an_error_before_the_audit(tmp_path, monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(AuditError, match=r"pip install 'cvaudit\[mlflow\]'"):
        require_tracking(_config(tmp_path, {"mlflow": {"experiment": "e"}}))
    require_tracking(_config(tmp_path))  # no tracking: nothing needed
    out, results = _run_folder(tmp_path)  # at the end of a run (the API without the CLI's check): a warning
    assert track_run(MlflowConfig(experiment="e"), results=results, out_dir=out, params={}) is None
    assert "MLflow tracking skipped: MLflow is not installed" in capsys.readouterr().err


def _run_folder(tmp_path: Path) -> tuple[Path, dict]:
    out = tmp_path / "out"
    out.mkdir()
    results = _results()
    (out / "results.json").write_text(json.dumps(results))
    (out / "junit.xml").write_text("<testsuite/>\n")
    (out / "predictions.csv").write_text("sample_id,condition\n")
    (out / "attestation.dsse.json").write_text('{"payload": ""}\n')
    return out, results


def test_file_store_read_back_with_mlflow(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 refuses file stores unless allowed
    uri = (tmp_path / "mlruns").as_uri()
    out, results = _run_folder(tmp_path)
    cfg = MlflowConfig(experiment="unit", run_name="r1", tracking_uri=uri)
    run_id = track_run(cfg, results=results, out_dir=out, params={"model.path": "m.pt"})
    assert run_id is not None
    assert f"mlflow: logged run {run_id}" in capsys.readouterr().err
    mlflow.set_tracking_uri(uri)
    try:
        runs = mlflow.search_runs(experiment_names=["unit"], output_format="list")
    finally:
        mlflow.set_tracking_uri(None)
    assert [r.info.run_id for r in runs] == [run_id]
    run = runs[0]
    assert run.info.status == "FINISHED" and run.info.run_name == "r1"
    assert run.data.metrics == metric_values(results)
    assert run.data.params == {"model.path": "m.pt"}
    assert run.data.tags["cvaudit.verdict"] == "fail" and run.data.tags["cvaudit.policy_sha256"] == "ef" * 32
    client = mlflow.MlflowClient(tracking_uri=uri)
    names = {a.path for a in client.list_artifacts(run_id)}
    assert names == {"results.json", "junit.xml", "attestation.dsse.json"}  # predictions.csv stays local
    assert names <= set(ARTIFACTS)
    attestation = hashlib.sha256((out / "attestation.dsse.json").read_bytes()).hexdigest()
    assert run.data.tags["cvaudit.attestation_sha256"] == attestation
    results_digest = hashlib.sha256((out / "results.json").read_bytes()).hexdigest()
    assert run.data.tags["cvaudit.results_sha256"] == results_digest


def test_unreachable_server_only_warns(tmp_path, capsys):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    out, results = _run_folder(tmp_path)
    before = sorted(p.name for p in out.iterdir())
    cfg = MlflowConfig(experiment="e", tracking_uri=f"http://127.0.0.1:{port}")
    assert track_run(cfg, results=results, out_dir=out, params={}) is None
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("cvaudit: warning: MLflow tracking failed")
    assert "verdict stands" in err[0]
    assert sorted(p.name for p in out.iterdir()) == before
