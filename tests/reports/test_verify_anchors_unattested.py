"""verify: an anchor inside the report folder, files no attestation covers, --strict, bounded reads.

Issue 31 point 7: ``verify --key <the report's own folder>`` said VALID with no word that the
anchor is the key shipped inside the report, and an extra unattested file was never mentioned.
"""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner

from audit.cli.report import verify_command
from reports.verify import verify


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def _run(runner, *args, env=None):
    return runner.invoke(verify_command, [str(a) for a in args], env={"CVAUDIT_TRUST": "", **(env or {})})


def _last(result) -> str:
    return result.output.strip().splitlines()[-1]


def test_key_of_the_report_itself_is_named_as_self_vouching(runner, signed_report):
    result = _run(runner, signed_report, "--key", signed_report)
    assert result.exit_code == 0, result.output
    assert "lies inside the report folder" in result.output
    assert "the report vouches for itself" in result.output
    assert _last(result) == "VALID"


def test_key_of_the_report_itself_under_strict_is_never_valid(runner, signed_report):
    result = _run(runner, signed_report, "--key", signed_report, "--strict")
    assert result.exit_code == 1, result.output
    assert "VALID" not in result.output.replace("UNTRUSTED", "").replace("INVALID", "")
    assert _last(result).startswith("UNTRUSTED: --strict")


def test_trust_file_inside_the_report_folder(runner, signed_report):
    result = _run(runner, signed_report, "--trust", signed_report / "attestation.pub.pem")
    assert result.exit_code == 0, result.output
    assert f"--trust {signed_report / 'attestation.pub.pem'}" in result.output
    assert "lies inside the report folder" in result.output
    strict = _run(runner, signed_report, "--trust", signed_report / "attestation.pub.pem", "--strict")
    assert strict.exit_code == 1 and _last(strict).startswith("UNTRUSTED")


def test_env_anchor_inside_the_report_folder_through_a_relative_alias(runner, signed_report, monkeypatch):
    monkeypatch.chdir(signed_report.parent)
    alias = f"{signed_report.name}/../{signed_report.name}/."
    result = _run(runner, signed_report, env={"CVAUDIT_TRUST": alias})
    assert result.exit_code == 0, result.output
    assert "CVAUDIT_TRUST" in result.output and "lies inside the report folder" in result.output


def test_anchor_through_a_symlink_inside_the_folder_is_named(signed_report, key_dir_pw):
    os.symlink(key_dir_pw / "public", signed_report / "keys")
    report = verify(signed_report, key_dir=signed_report / "keys", strict=True)
    assert len(report.self_anchors) == 1 and report.outcome != "VALID" and report.exit_code == 1


def test_anchor_outside_the_folder_gives_no_warning(runner, signed_report, key_dir_pw):
    result = _run(runner, signed_report, "--key", key_dir_pw, "--strict")
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output and _last(result) == "VALID"


def test_unattested_file_is_listed(runner, signed_report, key_dir_pw):
    (signed_report / "notes.txt").write_text("added after signing\n")
    (signed_report / "extra").mkdir()
    result = _run(runner, signed_report, "--key", key_dir_pw)
    assert result.exit_code == 0, result.output
    assert "not covered by the attestation: 'extra/', 'notes.txt'" in result.output
    as_json = json.loads(_run(runner, signed_report, "--key", key_dir_pw, "--format", "json").output)
    assert as_json["unattested"] == ["extra/", "notes.txt"] and as_json["outcome"] == "VALID"


def test_unattested_file_under_strict_is_invalid(runner, signed_report, key_dir_pw):
    (signed_report / "notes.txt").write_text("added after signing\n")
    result = _run(runner, signed_report, "--key", key_dir_pw, "--strict")
    assert result.exit_code == 1, result.output
    assert _last(result) == "INVALID: notes.txt"
    assert "\nVALID" not in result.output


def test_cvaudit_own_unattested_names_are_not_listed(runner, signed_report, key_dir_pw):
    (signed_report / ".cvaudit-output").write_text("cvaudit\n")
    (signed_report / ".report.html.k2j3h4.tmp").write_text("half written")
    result = _run(runner, signed_report, "--key", key_dir_pw, "--strict")
    assert result.exit_code == 0, result.output
    assert "not covered" not in result.output


def test_a_user_file_named_like_a_temporary_is_still_listed(signed_report, key_dir_pw):
    (signed_report / "payload.tmp").write_text("x")
    assert verify(signed_report, key_dir=key_dir_pw).unattested == ("payload.tmp",)


def test_an_output_name_left_out_of_the_attestation_is_listed(signed_report, key_dir_pw):
    """predictions.csv is an output name, but `cvaudit report` into another folder leaves it unattested."""
    (signed_report / "groups.csv").write_text("group,n\n")
    assert "groups.csv" in verify(signed_report, key_dir=key_dir_pw).unattested


def test_device_and_fifo_in_the_folder_are_listed_never_read(runner, signed_report, key_dir_pw):
    os.symlink("/dev/zero", signed_report / "zero")
    os.mkfifo(signed_report / "pipe")
    result = _run(runner, signed_report, "--key", key_dir_pw)
    assert result.exit_code == 0, result.output
    assert "not covered by the attestation: 'pipe', 'zero'" in result.output


@pytest.mark.parametrize(("name", "code"), [("attestation.dsse.json", 2), ("report.pdf", 2)])
def test_dev_zero_in_place_of_a_read_file_is_one_line(runner, signed_report, key_dir_pw, name, code):
    (signed_report / name).unlink()
    os.symlink("/dev/zero", signed_report / name)
    result = _run(runner, signed_report, "--key", key_dir_pw)
    assert result.exit_code == code, result.output
    assert f"{name}: is a character device" in result.output
    assert "Traceback" not in result.output and _last(result) != "VALID"


@pytest.mark.parametrize(("name", "code"), [("attestation.dsse.json", 2), ("results.json", 1)])
def test_fifo_in_place_of_a_read_file_is_one_line(runner, signed_report, key_dir_pw, name, code):
    (signed_report / name).unlink()
    os.mkfifo(signed_report / name)
    result = _run(runner, signed_report, "--key", key_dir_pw)
    assert result.exit_code == code, result.output
    assert f"{name}: is a FIFO" in result.output and _last(result) != "VALID"


def test_oversized_results_json_is_refused_before_reading(signed_report, key_dir_pw, monkeypatch):
    import reports.verify as verify_module

    monkeypatch.setattr(verify_module, "MAX_RESULTS_BYTES", 100)
    report = verify(signed_report, key_dir=key_dir_pw)
    assert report.outcome == "UNUSABLE" and report.exit_code == 2
    assert "results.json" in report.unusable and "at most 100 bytes" in report.unusable


def test_oversized_attestation_is_one_line(signed_report, key_dir_pw, monkeypatch):
    import reports.verify as verify_module

    monkeypatch.setattr(verify_module, "MAX_ATTESTATION_BYTES", 100)
    report = verify(signed_report, key_dir=key_dir_pw)
    assert report.outcome == "UNUSABLE" and "attestation.dsse.json" in report.unusable


def test_oversized_pdf_is_one_line(signed_report, key_dir_pw, monkeypatch):
    import reports.verify as verify_module

    monkeypatch.setattr(verify_module, "MAX_PDF_BYTES", 100)
    report = verify(signed_report, key_dir=key_dir_pw)
    assert report.outcome == "UNUSABLE" and "report.pdf" in report.unusable


def test_oversized_public_key_beside_the_report_is_one_line(signed_report, monkeypatch):
    import reports.verify as verify_module

    monkeypatch.setattr(verify_module, "MAX_KEY_BYTES", 10)
    report = verify(signed_report)
    assert report.outcome == "UNUSABLE" and "attestation.pub.pem" in report.unusable
    assert "at most 10 bytes" in report.unusable
