"""The click commands: keygen, report and verify, with their exit codes."""

from __future__ import annotations

import json
import stat

import pytest
from click.testing import CliRunner
from conftest import PASSPHRASE, flip_byte

from audit.cli.report import keygen_command, report_command, verify_command
from reports.outputs import MARKER_FILE


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
    result = runner.invoke(
        report_command, [str(results_file), "--out", str(out), "--sign-key", str(key_dir_pw)], env=env
    )
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.iterdir()} == {
        "results.json",
        "junit.xml",
        "groups.csv",
        "skipped.csv",
        "report.html",
        "report.pdf",
        "attestation.pub.pem",
        "attestation.dsse.json",
        MARKER_FILE,  # the folder is cvaudit's (docs/security.md#output-folders)
    }
    assert (out / "results.json").read_bytes() == results_file.read_bytes()
    ok = runner.invoke(verify_command, [str(out), "--key", str(key_dir_pw)])
    assert ok.exit_code == 0 and ok.output.strip().endswith("VALID")
    as_json = runner.invoke(verify_command, [str(out), "--key", str(key_dir_pw), "--format", "json"])
    assert json.loads(as_json.output)["valid"] is True
    untrusted = runner.invoke(verify_command, [str(out), "--format", "json"])
    assert untrusted.exit_code == 1 and json.loads(untrusted.output)["outcome"] == "UNTRUSTED"
    flip_byte(out / "report.html", 100)
    bad = runner.invoke(verify_command, [str(out), "--key", str(key_dir_pw)])
    assert bad.exit_code == 1 and "INVALID: report.html" in bad.output


def test_report_with_bad_key_writes_nothing(runner, tmp_path, results_file, key_dir_pw):
    out = tmp_path / "out"
    result = runner.invoke(
        report_command,
        [str(results_file), "--out", str(out), "--sign-key", str(key_dir_pw)],
        env={"CVAUDIT_KEY_PASSPHRASE": "wrong"},
    )
    assert result.exit_code == 2
    assert "wrong passphrase" in result.output and len(result.output.strip().splitlines()) == 1
    assert not out.exists()


def test_report_newer_schema(runner, tmp_path, results_file):
    data = json.loads(results_file.read_text())
    data["schema_version"] = "2.0"
    results_file.write_text(json.dumps(data))
    result = runner.invoke(report_command, [str(results_file), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "is a newer major version than this cvaudit reads" in result.output
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
    assert {p.name for p in out.iterdir()} == {
        "results.json",
        "junit.xml",
        "groups.csv",
        "skipped.csv",
        "report.html",
        MARKER_FILE,
    }


def test_verify_bad_subject_syntax_and_missing_path(runner, tmp_path):
    assert runner.invoke(verify_command, [str(tmp_path), "--subject", "nope"]).exit_code == 2
    assert runner.invoke(verify_command, [str(tmp_path / "missing")]).exit_code == 2


def _subject_names(folder) -> list[str]:
    import base64

    envelope = json.loads((folder / "attestation.dsse.json").read_text())
    return sorted(s["name"] for s in json.loads(base64.b64decode(envelope["payload"]))["subject"])


def test_report_does_not_attest_stale_files_of_another_run(runner, tmp_path, results_file, key_dir_pw):
    """B6: old junit.xml/predictions.csv in --out must not be signed next to new results."""
    out = tmp_path / "out"
    out.mkdir()
    (out / MARKER_FILE).write_text("")  # the output folder of another cvaudit run
    (out / "junit.xml").write_text('<?xml version="1.0"?><testsuite name="old run" tests="0"/>\n')
    (out / "predictions.csv").write_text("sample_id,condition\nold,clean\n")
    env = {"CVAUDIT_KEY_PASSPHRASE": PASSPHRASE.decode()}
    result = runner.invoke(
        report_command, [str(results_file), "--out", str(out), "--sign-key", str(key_dir_pw)], env=env
    )
    assert result.exit_code == 0, result.output
    assert "old run" not in (out / "junit.xml").read_text()
    assert "cvaudit policy" in (out / "junit.xml").read_text()
    assert "predictions.csv" not in _subject_names(out)
    assert "junit.xml" in _subject_names(out)
    assert "predictions.csv" in result.output and "not known to belong" in result.output


def test_report_in_the_results_folder_attests_its_predictions(runner, tmp_path, results_file, key_dir_pw):
    (results_file.parent / "predictions.csv").write_text("sample_id,condition\nimg_1,clean\n")
    env = {"CVAUDIT_KEY_PASSPHRASE": PASSPHRASE.decode()}
    result = runner.invoke(
        report_command, [str(results_file), "--out", str(results_file.parent), "--sign-key", str(key_dir_pw)], env=env
    )
    assert result.exit_code == 0, result.output
    assert "predictions.csv" in _subject_names(results_file.parent)


def test_report_carries_model_and_dataset_subjects_when_digests_match(runner, tmp_path, results_file, key_dir_pw):
    import hashlib

    model, manifest = tmp_path / "model.pt", tmp_path / "manifest.csv"
    model.write_bytes(b"weights" * 50)
    manifest.write_text("path,label\na.png,0\n")
    data = json.loads(results_file.read_text())
    data["model"].update(path=str(model), sha256=hashlib.sha256(model.read_bytes()).hexdigest())
    data["dataset"].update(path=str(manifest), sha256="0" * 64)  # does not match: left out, with a note
    results_file.write_text(json.dumps(data))
    out = tmp_path / "out"
    env = {"CVAUDIT_KEY_PASSPHRASE": PASSPHRASE.decode()}
    result = runner.invoke(
        report_command, [str(results_file), "--out", str(out), "--sign-key", str(key_dir_pw)], env=env
    )
    assert result.exit_code == 0, result.output
    names = _subject_names(out)
    assert "model:model.pt" in names and not any(n.startswith("dataset:") for n in names)
    assert "sha256 differs" in result.output
    ok = runner.invoke(verify_command, [str(out), "--key", str(key_dir_pw), "--subject", f"model.pt={model}"])
    assert ok.exit_code == 0, ok.output


@pytest.mark.parametrize("fmt", ["", " , ", "html,docx", "pdf,HTML"])
def test_report_bad_format_writes_nothing(runner, tmp_path, results_file, fmt):
    out = tmp_path / "out"
    result = runner.invoke(report_command, [str(results_file), "--out", str(out), "--format", fmt])
    assert result.exit_code == 2 and "--format" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not out.exists()


def test_verify_subject_with_the_attested_prefixless_name(runner, tmp_path, signed_report):
    """B2: --subject NAME matches `model:NAME`; unknown names and missing paths are exit 2."""
    import base64

    from reports import write_reports
    from reports.keys import keygen

    model = tmp_path / "weights.pt"
    model.write_bytes(b"model bytes" * 10)
    results = json.loads((signed_report / "results.json").read_text())
    keygen(tmp_path / "k")
    (signed_report / "report.pdf").unlink()  # signed by another key set: it would make the folder invalid
    write_reports(
        signed_report, results, formats=("html",), sign_key=tmp_path / "k", extra_subjects={"model:weights.pt": model}
    )
    assert "model:weights.pt" in [
        s["name"]
        for s in json.loads(
            base64.b64decode(json.loads((signed_report / "attestation.dsse.json").read_text())["payload"])
        )["subject"]
    ]
    ok = runner.invoke(
        verify_command, [str(signed_report), "--key", str(tmp_path / "k"), "--subject", f"weights.pt={model}"]
    )
    assert ok.exit_code == 0, ok.output
    assert "model:weights.pt: sha256 matches" in ok.output
    full = runner.invoke(
        verify_command, [str(signed_report), "--key", str(tmp_path / "k"), "--subject", f"model:weights.pt={model}"]
    )
    assert full.exit_code == 0, full.output
    unknown = runner.invoke(
        verify_command, [str(signed_report), "--key", str(tmp_path / "k"), "--subject", f"model.pt={model}"]
    )
    assert unknown.exit_code == 2 and "no attested subject" in unknown.output
    missing = runner.invoke(
        verify_command,
        [str(signed_report), "--key", str(tmp_path / "k"), "--subject", f"weights.pt={tmp_path / 'nope.pt'}"],
    )
    assert missing.exit_code == 2 and "no such file" in missing.output
    flip_byte(model, 3)
    bad = runner.invoke(
        verify_command, [str(signed_report), "--key", str(tmp_path / "k"), "--subject", f"weights.pt={model}"]
    )
    assert bad.exit_code == 1 and "model:weights.pt" in bad.output


def test_report_refuses_a_world_readable_unencrypted_key(runner, tmp_path, results_file, key_dir):
    import shutil

    keys = tmp_path / "keys"
    shutil.copytree(key_dir, keys)
    (keys / "attestation.key.pem").chmod(0o644)
    out = tmp_path / "out"
    result = runner.invoke(report_command, [str(results_file), "--out", str(out), "--sign-key", str(keys)])
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1 and "chmod 600" in result.output
    assert not out.exists()


def test_keygen_subject_prints_fingerprints(runner, tmp_path):
    out = tmp_path / "keys"
    result = runner.invoke(keygen_command, ["--out", str(out), "--subject", "CN=Jane Doe,O=Acme"])
    assert result.exit_code == 0, result.output
    assert result.output.count("fingerprint: sha256:") == 3 and "public" in result.output
    assert "ca-certificate CN=Jane Doe (cvaudit CA),O=Acme" in result.output
    assert "certutil" in result.output  # how reviewers make pdfsig trust the CA
    bad = runner.invoke(keygen_command, ["--out", str(tmp_path / "k2"), "--subject", "O=Acme"])
    assert bad.exit_code == 2 and "needs a CN" in bad.output


def test_verify_cli_trust_options(runner, signed_report, key_dir_pw, tmp_path):
    trust = key_dir_pw / "public" / "trust.txt"
    assert runner.invoke(verify_command, [str(signed_report), "--trust", str(trust)]).exit_code == 0
    env_ok = runner.invoke(verify_command, [str(signed_report)], env={"CVAUDIT_TRUST": str(trust)})
    assert env_ok.exit_code == 0 and env_ok.output.strip().endswith("VALID")
    untrusted = runner.invoke(verify_command, [str(signed_report)], env={"CVAUDIT_TRUST": ""})
    assert untrusted.exit_code == 1 and "UNTRUSTED" in untrusted.output
    assert "\nVALID" not in untrusted.output
    intact = runner.invoke(verify_command, [str(signed_report), "--allow-untrusted"], env={"CVAUDIT_TRUST": ""})
    assert intact.exit_code == 0 and intact.output.strip().splitlines()[-1].startswith("INTACT")
    both = runner.invoke(verify_command, [str(signed_report), "--allow-untrusted", "--trust", str(trust)])
    assert both.exit_code == 2 and "contradicts" in both.output
    missing = runner.invoke(verify_command, [str(signed_report), "--trust", str(tmp_path / "none.txt")])
    assert missing.exit_code == 2 and "none.txt" in missing.output
