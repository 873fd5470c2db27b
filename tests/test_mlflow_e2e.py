"""End to end: `cvaudit run` logging to MLflow (a local SQLite store in a temporary folder), read back
with mlflow.search_runs and the artifact API; an unreachable server changes neither verdict nor exit code."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner
from cvaudit_fixtures import write_config

from audit.cli import main

mlflow = pytest.importorskip("mlflow")


def _free_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


@pytest.mark.slow
def test_run_is_logged_and_read_back(workspace, monkeypatch):
    monkeypatch.chdir(workspace)  # a local store keeps artifacts in ./mlruns
    uri = f"sqlite:///{workspace / 'mlflow.db'}"
    tracking = f"tracking:\n  mlflow:\n    experiment: cvaudit-e2e\n    run_name: colour-net\n    tracking_uri: {uri}\n"
    cfg = write_config(workspace, extra=tracking)
    out = workspace / "out"
    result = CliRunner().invoke(main, ["run", str(cfg), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())

    mlflow.set_tracking_uri(uri)
    try:
        runs = mlflow.search_runs(experiment_names=["cvaudit-e2e"], output_format="list")
        assert len(runs) == 1
        run = runs[0]
        assert run.info.status == "FINISHED" and run.info.run_name == "colour-net"
        metrics, params, tags = run.data.metrics, run.data.params, run.data.tags
        # every condition's metrics and every group's accuracy, by their documented names
        for c in results["conditions"]:
            key = c["id"].replace("@", "/")
            m = c["metrics"]
            assert metrics[f"{key}/accuracy"] == m["accuracy"]
            assert metrics[f"{key}/n"] == m["n"]
            assert [metrics[f"{key}/accuracy_ci_low"], metrics[f"{key}/accuracy_ci_high"]] == m["accuracy_ci"]
            assert metrics[f"{key}/ece"] == m["ece"] and metrics[f"{key}/brier"] == m["brier"]
            for g in c["groups"]:
                assert metrics[f"{key}/group/{g['attribute']}/{g['value']}/accuracy"] == g["metrics"]["accuracy"]
        assert metrics["policy/pass"] == 1.0
        # the config as parameters
        assert params["model.path"] == str(workspace / "model.pt")
        assert params["data.attributes"] == '["camera"]' and params["stressors.1.kind"] == "gaussian"
        assert params["evaluation.n_bootstrap"] == "50" and params["policy"] == str(workspace / "policy.yaml")
        assert not any(k.startswith("tracking") for k in params)
        # verdict and policy digest as tags
        assert tags["cvaudit.verdict"] == "pass"
        assert tags["cvaudit.policy_sha256"] == results["policy"]["sha256"]
        assert tags["cvaudit.out"] == str(out.resolve())
        # the outputs as artifacts, byte for byte
        client = mlflow.MlflowClient()
        names = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert names == {"results.json", "report.html", "junit.xml"}
        copy = mlflow.artifacts.download_artifacts(
            run_id=run.info.run_id, artifact_path="results.json", dst_path=str(workspace / "dl")
        )
        assert Path(copy).read_bytes() == (out / "results.json").read_bytes()
    finally:
        mlflow.set_tracking_uri(None)


@pytest.mark.slow
def test_unreachable_server_keeps_verdict_exit_code_and_outputs(workspace):
    cfg = write_config(
        workspace,
        threshold=1.01,  # a failing blocking rule: exit code 1
        extra=f"tracking:\n  mlflow:\n    experiment: x\n    tracking_uri: http://127.0.0.1:{_free_port()}\n",
    )
    out = workspace / "out"
    result = CliRunner().invoke(main, ["run", str(cfg), "--out", str(out), "--quiet", "--mlflow", "other"])
    assert result.exit_code == 1, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("cvaudit: warning: MLflow")]
    assert len(warnings) == 1 and "verdict stands" in warnings[0]
    assert json.loads((out / "results.json").read_text())["policy"]["verdict"] == "fail"
    for name in ("results.json", "predictions.csv", "report.html", "junit.xml"):
        assert (out / name).is_file(), name
