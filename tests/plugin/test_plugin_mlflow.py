"""The pytest plugin's --cvaudit-mlflow: the session's audit (or stored results) logged to MLflow,
read back from a local store in a temporary folder."""

from __future__ import annotations

import json

import pytest
from cvaudit_fixtures import write_config
from results_builder import complete_results

pytest_plugins = ["pytester"]
mlflow = pytest.importorskip("mlflow")

TEST = """
def test_clean(cvaudit_results):
    assert cvaudit_results.metric("n", condition="clean") >= 1
"""


@pytest.fixture()
def store(tmp_path, monkeypatch):
    """A file store in a temporary folder; the subprocess finds it through the environment."""
    uri = (tmp_path / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 refuses file stores unless allowed
    return uri


def _runs(uri: str, experiment: str) -> list:
    mlflow.set_tracking_uri(uri)
    try:
        return mlflow.search_runs(experiment_names=[experiment], output_format="list")
    finally:
        mlflow.set_tracking_uri(None)


@pytest.mark.slow
def test_session_audit_is_logged(pytester, workspace, store):
    cfg = write_config(workspace, stressors="  - {name: night, severities: [2]}\n")
    out = workspace / "out"
    pytester.makepyfile(TEST)
    result = pytester.runpytest_subprocess(
        "--cvaudit-config",
        str(cfg),
        "--cvaudit-out",
        str(out),
        "--cvaudit-mlflow",
        "plugin-e2e",
        "-p",
        "no:cacheprovider",
    )
    result.assert_outcomes(passed=1)
    results = json.loads((out / "results.json").read_text())
    (run,) = _runs(store, "plugin-e2e")
    assert run.data.tags["cvaudit.verdict"] == results["policy"]["verdict"]
    assert run.data.metrics["night/accuracy"] == results["conditions"][1]["metrics"]["accuracy"]
    assert run.data.params["model.path"] == str(workspace / "model.pt")


def test_stored_results_are_logged(pytester, tmp_path, store):
    folder = tmp_path / "stored"
    folder.mkdir()
    results = complete_results(
        {
            "conditions": [
                {
                    "id": "clean",
                    "stressor": None,
                    "severity": 0,
                    "metrics": {"n": 10, "accuracy": 0.8, "accuracy_ci": [0.5, 1.0]},
                    "groups": [],
                }
            ],
            "policy": {"name": "ci-gate", "version": 1, "sha256": "ef" * 32, "verdict": "pass"},
        }
    )
    (folder / "results.json").write_text(json.dumps(results))
    pytester.makepyfile(TEST)
    result = pytester.runpytest_subprocess(
        "--cvaudit-results", str(folder / "results.json"), "--cvaudit-mlflow", "stored", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=1)
    (run,) = _runs(store, "stored")
    assert run.data.metrics["clean/accuracy"] == 0.8 and run.data.tags["cvaudit.verdict"] == "pass"
    assert run.data.params["results"] == str((folder / "results.json").resolve())
    client = mlflow.MlflowClient(tracking_uri=store)
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["results.json"]
