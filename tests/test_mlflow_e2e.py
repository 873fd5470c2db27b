"""End to end: `cvaudit run` logging to MLflow (a local SQLite store, and a real `mlflow server` on 127.0.0.1),
read back with MLflow's client; a server that is unreachable, never answers or is lost in the middle of logging
changes neither verdict nor exit code, and the warning names the run and the tracking URI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from cvaudit_fixtures import write_config
from mlflow_server import DroppingProxy, free_port, mlflow_server
from results_builder import complete_results

from audit.cli import main
from audit.contract.config import MlflowConfig
from audit.tracking import TAGS, TrackingWarning, severity_steps, track_run

mlflow = pytest.importorskip("mlflow")


def _history(client, run_id: str, name: str) -> dict[int, float]:
    return {m.step: m.value for m in client.get_metric_history(run_id, name)}


def _check_logged_run(client, run, results: dict, out: Path) -> None:
    """Every condition's metrics on its stressor's curve, the config as params, every tag, the outputs."""
    run_id = run.info.run_id
    clean = results["conditions"][0]
    for c in results["conditions"]:
        m = c["metrics"]
        if c["id"] == "clean":
            assert _history(client, run_id, "clean/accuracy") == {0: m["accuracy"]}
            continue
        step = severity_steps([x["severity"] for x in results["conditions"] if x["stressor"] == c["stressor"]])
        at = step[c["severity"]]
        assert _history(client, run_id, f"{c['stressor']}/accuracy")[at] == m["accuracy"]
        assert _history(client, run_id, f"{c['stressor']}/accuracy")[0] == clean["metrics"]["accuracy"]
        assert _history(client, run_id, f"{c['stressor']}/n")[at] == m["n"]
        low, high = (_history(client, run_id, f"{c['stressor']}/accuracy_ci_{e}")[at] for e in ("low", "high"))
        assert [low, high] == m["accuracy_ci"]
        for g in c["groups"]:
            name = f"{c['stressor']}/group/{g['attribute']}/{g['value']}/accuracy"
            assert _history(client, run_id, name)[at] == g["metrics"]["accuracy"]
    sections = {name.split("/")[0] for name in run.data.metrics}
    assert sections == {"clean", "night", "blur", "policy", "summary"} - ({"summary"} - sections)
    params, tags = run.data.params, run.data.tags
    assert params["data.attributes"] == '["camera"]' and params["stressors.1.kind"] == "gaussian"
    assert json.loads(params["cvaudit.steps.night"]) == [[0, 0.0], [1, 1.0], [5, 5.0]]
    assert not any(k.startswith("tracking") for k in params)
    assert set(tags) >= set(TAGS)  # every documented tag, on a passing run too
    assert tags["cvaudit.verdict"] == results["policy"]["verdict"]
    assert tags["cvaudit.blocking_failures"] == ", ".join(results["policy"]["blocking_failures"])
    assert tags["cvaudit.policy_sha256"] == results["policy"]["sha256"]
    assert tags["cvaudit.out"] == str(out.resolve())


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

    client = mlflow.MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("cvaudit-e2e").experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert f"mlflow: logged run {run.info.run_id} to experiment 'cvaudit-e2e' at {uri}" in result.stderr
    assert run.info.status == "FINISHED" and run.info.run_name == "colour-net"
    assert results["policy"]["verdict"] == "pass" and run.data.tags["cvaudit.blocking_failures"] == ""
    _check_logged_run(client, run, results, out)
    assert run.data.params["model.path"] == str(workspace / "model.pt")
    assert run.data.params["evaluation.n_bootstrap"] == "50"
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert names == {"results.json", "report.html", "junit.xml"}
    copy = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="results.json", dst_path=str(workspace / "dl"), tracking_uri=uri
    )
    assert Path(copy).read_bytes() == (out / "results.json").read_bytes()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real `mlflow server` for this module's tests."""
    with mlflow_server(tmp_path_factory.mktemp("mlflow-server")) as uri:
        yield uri


@pytest.mark.slow
def test_tracking_server_run_has_every_tag_and_a_clean_stdout(workspace, server):
    """A failing audit against a real server: every tag, the severity curves; stdout holds only the results."""
    tracking = f"tracking:\n  mlflow:\n    experiment: server-e2e\n    tracking_uri: {server}\n"
    cfg = write_config(workspace, threshold=1.01, extra=tracking)
    out = workspace / "out"
    result = CliRunner().invoke(main, ["run", str(cfg), "--out", str(out), "--quiet", "--format", "json"])
    assert result.exit_code == 1, result.output
    json.loads(result.stdout)  # MLflow's own "View run" lines would break this
    results = json.loads((out / "results.json").read_text())
    client = mlflow.MlflowClient(tracking_uri=server)
    (run,) = client.search_runs([client.get_experiment_by_name("server-e2e").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.tags["cvaudit.blocking_failures"] != ""
    _check_logged_run(client, run, results, out)
    assert {a.path for a in client.list_artifacts(run.info.run_id)} == {"results.json", "report.html", "junit.xml"}


@pytest.mark.slow
def test_server_lost_while_logging_marks_the_run_failed(workspace, server):
    """The server drops every log-batch request and answers again afterwards: the run is FAILED, not RUNNING."""
    with DroppingProxy(server, drop=lambda path: "log-batch" in path) as proxy:
        tracking = f"tracking:\n  mlflow:\n    experiment: lost\n    tracking_uri: {proxy.uri}\n    max_retries: 0\n"
        cfg = write_config(workspace, threshold=1.01, extra=tracking)
        out = workspace / "out"
        result = CliRunner().invoke(main, ["run", str(cfg), "--out", str(out), "--quiet"])
    assert result.exit_code == 1, result.output  # the verdict's exit code
    client = mlflow.MlflowClient(tracking_uri=server)
    (run,) = client.search_runs([client.get_experiment_by_name("lost").experiment_id])
    assert run.info.status == "FAILED"
    (warning,) = [line for line in result.stderr.splitlines() if line.startswith("cvaudit: warning: MLflow")]
    assert f"run {run.info.run_id} at tracking URI {proxy.uri} marked FAILED" in warning
    assert "verdict stands" in warning
    assert any("log-batch" in p for p in proxy.paths) and any("runs/update" in p for p in proxy.paths)
    assert json.loads((out / "results.json").read_text())["policy"]["verdict"] == "fail"


@pytest.mark.slow
def test_server_lost_for_good_names_the_run_left_running(tmp_path, server):
    created = []

    def drop(path: str) -> bool:  # everything after the run was created
        if created:
            return True
        created.extend(["yes"] if "runs/create" in path else [])
        return False

    folder = tmp_path / "out"
    folder.mkdir()
    results = complete_results(
        {
            "conditions": [{"id": "clean", "stressor": None, "severity": 0, "metrics": {"n": 3}, "groups": []}],
            "policy": {"name": "p", "version": 1, "sha256": "ab" * 32, "verdict": "pass"},
        }
    )
    with DroppingProxy(server, drop=drop) as proxy:
        cfg = MlflowConfig(experiment="gone", tracking_uri=proxy.uri, max_retries=0)
        with pytest.warns(TrackingWarning) as caught:
            assert track_run(cfg, results=results, out_dir=folder, params={}) is None
    client = mlflow.MlflowClient(tracking_uri=server)
    (run,) = client.search_runs([client.get_experiment_by_name("gone").experiment_id])
    assert run.info.status == "RUNNING"
    (message,) = [str(w.message) for w in caught]
    assert f"run {run.info.run_id} at tracking URI {proxy.uri} left RUNNING" in message


@pytest.mark.slow
def test_unreachable_server_keeps_verdict_exit_code_and_outputs(workspace):
    cfg = write_config(
        workspace,
        threshold=1.01,  # a failing blocking rule: exit code 1
        extra=f"tracking:\n  mlflow:\n    experiment: x\n    tracking_uri: http://127.0.0.1:{free_port()}\n",
    )
    out = workspace / "out"
    result = CliRunner().invoke(main, ["run", str(cfg), "--out", str(out), "--quiet", "--mlflow", "other"])
    assert result.exit_code == 1, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("cvaudit: warning: MLflow")]
    assert len(warnings) == 1 and "verdict stands" in warnings[0]
    assert json.loads((out / "results.json").read_text())["policy"]["verdict"] == "fail"
    for name in ("results.json", "predictions.csv", "report.html", "junit.xml"):
        assert (out / name).is_file(), name
