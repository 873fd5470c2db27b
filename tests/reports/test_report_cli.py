"""The click commands: keygen, report and verify, with their exit codes."""

from __future__ import annotations

import json
import stat

import pytest
from click.testing import CliRunner
from conftest import PASSPHRASE, flip_byte

from reports.cli import keygen_command, report_command, verify_command


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def results_file(tmp_path, small_results):
    path = tmp_path / "stored" / "results.json"
    path.parent.mkdir()
    path.write_text(json.dumps(small_results))
    return path


def test_keygen_with_passphrase_from_env(runner, tmp_path):
    out = tmp_path / "keys"
    result = runner.invoke(keygen_command, ["--out", str(out)], env={"CVAUDIT_KEY_PASSPHRASE": "s3cret"})
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE((out / "attestation.key.pem").stat().st_mode) == 0o600
    assert b"ENCRYPTED" in (out / "pdf-signing.key.pem").read_bytes()
    again = runner.invoke(keygen_command, ["--out", str(out)])
    assert again.exit_code == 2 and "already exists" in again.output


def test_report_then_verify(runner, tmp_path, results_file, key_dir_pw):
    out = tmp_path / "out"
    env = {"CVAUDIT_KEY_PASSPHRASE": PASSPHRASE.decode()}
    result = runner.invoke(report_command, [str(results_file), "--out", str(out), "--sign-key", str(key_dir_pw)],
                           env=env)
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.iterdir()} == {"results.json", "report.html", "report.pdf",
                                               "attestation.pub.pem", "attestation.dsse.json"}
    assert (out / "results.json").read_bytes() == results_file.read_bytes()
    ok = runner.invoke(verify_command, [str(out), "--key", str(key_dir_pw)])
    assert ok.exit_code == 0 and ok.output.strip().endswith("VALID")
    as_json = runner.invoke(verify_command, [str(out), "--format", "json"])
    assert json.loads(as_json.output)["valid"] is True
    flip_byte(out / "report.html", 100)
    bad = runner.invoke(verify_command, [str(out)])
    assert bad.exit_code == 1 and "INVALID: report.html" in bad.output


def test_report_with_bad_key_writes_nothing(runner, tmp_path, results_file, key_dir_pw):
    out = tmp_path / "out"
    result = runner.invoke(report_command, [str(results_file), "--out", str(out), "--sign-key", str(key_dir_pw)],
                           env={"CVAUDIT_KEY_PASSPHRASE": "wrong"})
    assert result.exit_code == 2
    assert "wrong passphrase" in result.output and len(result.output.strip().splitlines()) == 1
    assert not out.exists()


def test_report_newer_schema(runner, tmp_path, results_file):
    data = json.loads(results_file.read_text())
    data["schema_version"] = "2.0"
    results_file.write_text(json.dumps(data))
    result = runner.invoke(report_command, [str(results_file), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "newer than this cvaudit supports" in result.output
    assert not (tmp_path / "out").exists()


def test_report_unreadable_json(runner, tmp_path):
    bad = tmp_path / "results.json"
    bad.write_text("{not json")
    result = runner.invoke(report_command, [str(bad), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "not valid JSON" in result.output


def test_report_unsigned_html_only(runner, tmp_path, results_file):
    out = tmp_path / "out"
    result = runner.invoke(report_command, [str(results_file), "--out", str(out), "--format", "html"])
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.iterdir()} == {"results.json", "report.html"}


def test_verify_bad_subject_syntax_and_missing_path(runner, tmp_path):
    assert runner.invoke(verify_command, [str(tmp_path), "--subject", "nope"]).exit_code == 2
    assert runner.invoke(verify_command, [str(tmp_path / "missing")]).exit_code == 2
