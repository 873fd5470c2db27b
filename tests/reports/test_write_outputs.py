"""reports.write_outputs: the one writer of the output set, used by both `cvaudit run` and `cvaudit report`."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from cvaudit_fixtures import write_config

import reports
from audit.cli import main
from audit.contract.load import parse_results
from reports.outputs import OutputTransaction


@pytest.fixture()
def writer_calls(monkeypatch):
    """Every call of reports.write_outputs (the real writer still runs): (out_dir, keyword arguments)."""
    calls = []
    real = reports.write_outputs

    def spy(outputs, results, **kwargs):
        calls.append((outputs.out_dir, kwargs))
        return real(outputs, results, **kwargs)

    monkeypatch.setattr(reports, "write_outputs", spy)
    return calls


@pytest.mark.slow
def test_run_and_report_write_through_the_one_writer(workspace, writer_calls):
    out = workspace / "out"
    cfg = write_config(workspace, stressors="  - {name: night, severities: [3]}\n")
    result = CliRunner().invoke(main, ["run", str(cfg), "--out", str(out), "--quiet"])
    assert result.exit_code in (0, 1), result.output
    assert [(where, kw.get("keep_previous", False)) for where, kw in writer_calls] == [(out, False)]

    again = workspace / "again"
    result = CliRunner().invoke(main, ["report", str(out / "results.json"), "--out", str(again), "--format", "html"])
    assert result.exit_code == 0, result.output
    assert len(writer_calls) == 2
    where, kwargs = writer_calls[1]
    assert where == again and kwargs["keep_previous"] is True
    assert kwargs["results_json"] == (out / "results.json").read_bytes()  # copied unchanged
    # one writer, so the files both commands write from the same results are the same bytes
    for name in ("results.json", "junit.xml", "groups.csv", "skipped.csv"):
        assert (again / name).read_bytes() == (out / name).read_bytes(), name


def test_results_json_none_needs_the_previous_set(tmp_path, small_results):
    with OutputTransaction(tmp_path / "out") as outputs, pytest.raises(ValueError, match="keep_previous"):
        reports.write_outputs(outputs, small_results, results_json=None)
    assert not (tmp_path / "out").exists()


def test_results_json_bytes_is_the_runs_serialisation(small_results):
    data = reports.results_json_bytes(parse_results(small_results))
    assert data.endswith(b"\n") and json.loads(data) == json.loads(json.dumps(small_results))
