"""MLflow tracking: stable metric and parameter names, a file store read back with MLflow's own API,
failures that only warn."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import socket
import threading
import warnings
from pathlib import Path

import pytest
from results_builder import complete_results, typed_results

from audit.contract.config import MlflowConfig, parse_config
from audit.contract.errors import AuditError
from audit.tracking import (
    ARTIFACTS,
    STEP_SCALE,
    TAGS,
    TrackingWarning,
    _tags,
    config_params,
    metric_values,
    require_tracking,
    severity_steps,
    step_params,
    track_run,
    with_experiment,
)

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
    values = metric_values(typed_results(_results()))
    assert values[("clean/accuracy", 0)] == 0.625
    assert values[("clean/accuracy_ci_low", 0)] == 0.1 and values[("clean/accuracy_ci_high", 0)] == 0.9
    assert values[("night/ece_ci_high", 3)] == 0.08
    assert values[("clean/group/camera/A/accuracy", 0)] == 0.75 and values[("clean/group/camera/A/n", 0)] == 12
    assert values[("night/group/site/Zürich/accuracy", 3)] == 0.9  # MLflow allows Unicode letters
    assert values[("night/fairness/camera/accuracy_gap", 3)] == 0.25
    assert values[("summary/mce", 0)] == 0.4 and values[("policy/pass", 0)] == 0.0
    assert ("clean/nll", 0) not in values  # null in results.json: not logged
    dots = "clean/group/camera/" + hashlib.sha256(b"..").hexdigest()[:8] + "/accuracy"
    assert values[(dots, 0)] == 0.0  # '..' alone would be a path step: hashed
    assert values[("clean/group/camera/B_.._x/accuracy", 0)] == 0.5  # '/' replaced, no hash (no collision)
    for name, _ in values:
        _validate_metric_name(name)  # MLflow's own check (raises on a bad name)
    assert metric_values(typed_results(_results())) == values  # deterministic


def test_severity_is_the_step_of_one_metric_per_stressor():
    """One curve per stressor and quantity: severity as the step, the clean image at step 0."""
    values = metric_values(typed_results(_results()))
    names = {name for name, _ in values}
    assert not any({"3", "0.007843"} & set(name.split("/")) for name in names)  # no severity inside a name
    night = {step: v for (name, step), v in values.items() if name == "night/accuracy"}
    assert night == {0: 0.625, 3: 0.5}
    pgd = {step: v for (name, step), v in values.items() if name == "pgd/accuracy"}
    assert pgd == {0: 0.625, round(0.007843 * STEP_SCALE): 0.25}
    assert {name.split("/")[0] for name in names} == {"clean", "night", "pgd", "summary", "policy"}
    params = step_params(typed_results(_results()))
    assert json.loads(params["cvaudit.steps.pgd"]) == [[0, 0.0], [7843, 0.007843]]  # ε recoverable
    assert json.loads(params["cvaudit.steps.night"]) == [[0, 0.0], [3, 3.0]]


def test_severity_steps_mapping():
    assert severity_steps([5, 1, 3]) == {1.0: 1, 3.0: 3, 5.0: 5}
    assert severity_steps([2 / 255, 8 / 255]) == {2 / 255: 7843, 8 / 255: 31373}
    assert severity_steps([0.5, 1.0]) == {0.5: 500000, 1.0: 1000000}  # one rule per stressor
    assert severity_steps([1e-7, 2e-7, 1.0]) == {1e-7: 1, 2e-7: 2, 1.0: 3}  # would meet at one step: ranks


def test_intersections_are_readable_and_hashed_only_on_collision():
    values = metric_values(typed_results(_results()))
    assert ("clean/group/camera_x_ink/B_x_thick/accuracy", 0) in values
    results = _results()
    groups = results["conditions"][0]["groups"]
    groups.append({"attribute": "camera_x_ink", "value": "B_x_thick", "metrics": _metrics(5, 0.2)})
    groups.append({"attribute": "camera", "value": "A:1", "metrics": _metrics(5, 0.3)})
    groups.append({"attribute": "camera", "value": "A/1", "metrics": _metrics(5, 0.4)})
    values = metric_values(typed_results(results))
    h = {t: hashlib.sha256(t.encode()).hexdigest()[:8] for t in ("camera×ink", "B×thick", "A:1", "A/1")}
    assert values[("clean/group/camera_x_ink/B_x_thick/accuracy", 0)] == 0.2  # the unchanged name keeps it
    assert values[(f"clean/group/camera_x_ink_{h['camera×ink']}/B_x_thick/accuracy", 0)] == 1.0
    assert values[(f"clean/group/camera/A_1_{h['A:1']}/accuracy", 0)] == 0.3
    assert values[(f"clean/group/camera/A_1_{h['A/1']}/accuracy", 0)] == 0.4


def test_tags_are_always_present():
    out_pass = _results()
    out_pass["policy"] = {**out_pass["policy"], "verdict": "pass", "blocking_failures": []}
    out_fail = _results()
    out_fail["policy"] = {**out_fail["policy"], "blocking_failures": ["clean-accuracy", "night-gap"]}
    passing, failing = _tags(typed_results(out_pass), Path(".")), _tags(typed_results(out_fail), Path("."))
    assert set(passing) == set(failing) == set(TAGS)
    assert passing["cvaudit.blocking_failures"] == "" and passing["cvaudit.attestation_sha256"] == ""
    assert failing["cvaudit.blocking_failures"] == "clean-accuracy, night-gap"
    assert passing["cvaudit.report_only"] == failing["cvaudit.report_only"] == "false"


def test_a_report_only_run_is_not_logged_as_a_passed_gate():
    """A dashboard filtering on cvaudit.verdict = 'pass' or policy/pass = 1 must not count a run that gated nothing."""
    results = _results()
    results["policy"] = {**results["policy"], "verdict": "pass", "report_only": True, "blocking_failures": []}
    tags = _tags(typed_results(results), Path("."))
    assert tags["cvaudit.verdict"] == "report_only" and tags["cvaudit.report_only"] == "true"
    assert ("policy/pass", 0) not in metric_values(typed_results(results))
    results["policy"]["report_only"] = False
    assert (
        metric_values(typed_results(results))[("policy/pass", 0)] == 1.0
        and _tags(typed_results(results), Path("."))["cvaudit.verdict"] == "pass"
    )


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


def test_missing_mlflow_is_an_error_before_the_audit(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(AuditError, match=r"pip install 'cvaudit\[mlflow\]'"):
        require_tracking(_config(tmp_path, {"mlflow": {"experiment": "e"}}))
    require_tracking(_config(tmp_path))  # no tracking: nothing needed
    out, results = _run_folder(tmp_path)  # at the end of a run (the API without the CLI's check): a warning
    with pytest.warns(TrackingWarning, match="MLflow tracking skipped: MLflow is not installed"):
        assert track_run(MlflowConfig(experiment="e"), results=typed_results(results), out_dir=out, params={}) is None


def _run_folder(tmp_path: Path) -> tuple[Path, dict]:
    out = tmp_path / "out"
    out.mkdir()
    results = _results()
    (out / "results.json").write_text(json.dumps(results))
    (out / "junit.xml").write_text("<testsuite/>\n")
    (out / "predictions.csv").write_text("sample_id,condition\n")
    (out / "attestation.dsse.json").write_text('{"payload": ""}\n')
    return out, results


def _history(client, run_id: str, name: str) -> dict[int, float]:
    return {m.step: m.value for m in client.get_metric_history(run_id, name)}


def test_file_store_read_back_with_mlflow(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 refuses file stores unless allowed
    uri = (tmp_path / "mlruns").as_uri()
    out, results = _run_folder(tmp_path)
    cfg = MlflowConfig(experiment="unit", run_name="r1", tracking_uri=uri)
    with warnings.catch_warnings():
        warnings.simplefilter("error", TrackingWarning)  # success: no warning
        tracked = track_run(cfg, results=typed_results(results), out_dir=out, params={"model.path": "m.pt"})
    assert tracked is not None and tracked.experiment == "unit" and tracked.tracking_uri == uri
    client = mlflow.MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("unit").experiment_id])
    assert [r.info.run_id for r in runs] == [tracked.run_id]
    run = runs[0]
    assert run.info.status == "FINISHED" and run.info.run_name == "r1"
    logged = {
        (name, step): v for name in run.data.metrics for step, v in _history(client, run.info.run_id, name).items()
    }
    assert logged == metric_values(typed_results(results))
    assert run.data.params == {"model.path": "m.pt", **step_params(typed_results(results))}
    assert set(run.data.tags) >= set(TAGS)
    assert run.data.tags["cvaudit.verdict"] == "fail" and run.data.tags["cvaudit.policy_sha256"] == "ef" * 32
    names = {a.path for a in client.list_artifacts(tracked.run_id)}
    assert names == {"results.json", "junit.xml", "attestation.dsse.json"}  # predictions.csv stays local
    assert names <= set(ARTIFACTS)
    attestation = hashlib.sha256((out / "attestation.dsse.json").read_bytes()).hexdigest()
    assert run.data.tags["cvaudit.attestation_sha256"] == attestation
    results_digest = hashlib.sha256((out / "results.json").read_bytes()).hexdigest()
    assert run.data.tags["cvaudit.results_sha256"] == results_digest


def _free_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    return port


def test_unreachable_server_only_warns(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_TIMEOUT", raising=False)
    out, results = _run_folder(tmp_path)
    before = sorted(p.name for p in out.iterdir())
    uri = f"http://127.0.0.1:{_free_port()}"
    cfg = MlflowConfig(experiment="e", tracking_uri=uri, max_retries=0)
    with pytest.warns(TrackingWarning) as caught:
        assert track_run(cfg, results=typed_results(results), out_dir=out, params={}) is None
    (message,) = [str(w.message) for w in caught]
    assert message.startswith("MLflow tracking failed: tracking URI") and "verdict stands" in message
    assert f"tracking URI {uri}" in message
    assert sorted(p.name for p in out.iterdir()) == before
    assert "MLFLOW_HTTP_REQUEST_TIMEOUT" not in os.environ  # the scoped settings are gone again


class _SilentServer:
    """A socket that accepts connections and never answers; counts the connections."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        for _ in range(3000):  # bounded: at most 10 minutes
            if self.stop.is_set():
                return
            try:
                self.accepted.append(self.sock.accept()[0])
            except TimeoutError:
                continue

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        for conn in self.accepted:
            conn.close()
        self.sock.close()


def test_server_that_never_answers_gives_up_after_the_configured_timeout(tmp_path, monkeypatch):
    """The config's timeout and retries reach MLflow's client: 1 + max_retries connections, then a warning."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "120")  # the config's value wins over the environment
    server = _SilentServer()
    try:
        out, results = _run_folder(tmp_path)
        uri = f"http://user:secret@127.0.0.1:{server.port}"
        cfg = MlflowConfig(experiment="e", tracking_uri=uri, timeout_s=1, max_retries=2)
        with pytest.warns(TrackingWarning) as caught:
            assert track_run(cfg, results=typed_results(results), out_dir=out, params={}) is None
        (message,) = [str(w.message) for w in caught]
        assert "no answer from the tracking server within 1 s (2 retries)" in message
        assert f"tracking URI http://127.0.0.1:{server.port};" in message and "secret" not in message
        assert len(server.accepted) == 3  # the first try and 2 retries, each given up after 1 s
        assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "120"  # the user's value is back
    finally:
        server.close()


def test_a_stressor_named_like_a_section_is_hashed():
    """A stressor called 'summary' would mix its curve with the run's summary: it gets the hash suffix."""
    results = _results()
    results["conditions"].append(
        {"id": "summary@2", "stressor": "summary", "severity": 2, "metrics": _metrics(24, 0.4), "groups": []}
    )
    values = metric_values(typed_results(results))
    name = "summary_" + hashlib.sha256(b"summary").hexdigest()[:8]
    assert values[(f"{name}/accuracy", 2)] == 0.4 and values[(f"{name}/accuracy", 0)] == 0.625
    assert {n for n, _ in values if n.startswith("summary/")} == {"summary/mce"}


@pytest.mark.parametrize(
    ("terminate_error", "state"),
    [(None, "marked FAILED"), (OSError("connection refused"), "left RUNNING")],
)
def test_a_failure_while_logging_marks_the_run_or_names_it_left_running(tmp_path, monkeypatch, terminate_error, state):
    """log_batch fails after the run exists: the run is marked FAILED, or, when the store cannot be reached
    to mark it either (MlflowException or OSError), the warning says it was left RUNNING."""
    from mlflow.exceptions import MlflowException

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    uri = (tmp_path / "mlruns").as_uri()
    out, results = _run_folder(tmp_path)

    def log_batch(self, *args, **kwargs):
        raise MlflowException("the store refused the batch")

    real_terminate = mlflow.MlflowClient.set_terminated

    def set_terminated(self, run_id, status=None, *args, **kwargs):
        if status == "FAILED" and terminate_error is not None:
            raise terminate_error
        return real_terminate(self, run_id, status, *args, **kwargs)

    monkeypatch.setattr(mlflow.MlflowClient, "log_batch", log_batch)
    monkeypatch.setattr(mlflow.MlflowClient, "set_terminated", set_terminated)
    with pytest.warns(TrackingWarning) as caught:
        assert (
            track_run(
                MlflowConfig(experiment="e", tracking_uri=uri), results=typed_results(results), out_dir=out, params={}
            )
            is None
        )
    (message,) = [str(w.message) for w in caught]
    assert f"at tracking URI {uri} {state}" in message and "MlflowException: the store refused the batch" in message
    client = mlflow.MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("e").experiment_id])
    assert run.info.status == ("FAILED" if terminate_error is None else "RUNNING")


def test_an_unexpected_error_while_marking_the_run_is_not_swallowed(tmp_path, monkeypatch):
    """Only an unreachable store is expected while marking a run FAILED; any other error is named in the
    warning, not passed off as "the server could not be reached"."""
    from mlflow.exceptions import MlflowException

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    out, results = _run_folder(tmp_path)

    def log_batch(self, *args, **kwargs):
        raise MlflowException("the store refused the batch")

    def set_terminated(self, run_id, status=None, *args, **kwargs):
        raise AttributeError("'NoneType' object has no attribute 'info'")

    monkeypatch.setattr(mlflow.MlflowClient, "log_batch", log_batch)
    monkeypatch.setattr(mlflow.MlflowClient, "set_terminated", set_terminated)
    cfg = MlflowConfig(experiment="e", tracking_uri=(tmp_path / "mlruns").as_uri())
    with pytest.warns(TrackingWarning) as caught:
        assert track_run(cfg, results=typed_results(results), out_dir=out, params={}) is None
    (message,) = [str(w.message) for w in caught]
    assert "AttributeError: 'NoneType' object has no attribute 'info'" in message and "left RUNNING" not in message
