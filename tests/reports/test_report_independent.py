"""Independent verification with Debian's pdfsig/pdfdetach and openssl (skipped when missing)."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess

import pytest
from conftest import flip_byte

from reports.attestation import pae


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(
            f"{name} not installed (Debian: apt-get install {'openssl' if name == 'openssl' else 'poppler-utils'})"
        )
    return path


def _pdfsig(pdf) -> str:
    # pdfsig exits 0 even when a signature is bad: judge its text, not its exit code.
    return subprocess.run([_tool("pdfsig"), str(pdf)], capture_output=True, text=True, timeout=60).stdout


def test_pdfsig_accepts_our_signature(signed_report):
    out = _pdfsig(signed_report / "report.pdf")
    assert "Signature is Valid." in out and "Total document signed" in out
    assert "ETSI.CAdES.detached" in out


def test_pdfsig_rejects_a_changed_byte(signed_report):
    pdf = signed_report / "report.pdf"
    flip_byte(pdf, len(pdf.read_bytes()) // 2)
    assert "Signature is Valid." not in _pdfsig(pdf)


def test_pdfdetach_lists_results_json(signed_report):
    out = subprocess.run(
        [_tool("pdfdetach"), "-list", str(signed_report / "report.pdf")], capture_output=True, text=True, timeout=60
    ).stdout
    assert "results.json" in out


def _openssl_verify(folder, tmp_path) -> subprocess.CompletedProcess:
    envelope = json.loads((folder / "attestation.dsse.json").read_text())
    payload = base64.b64decode(envelope["payload"])
    (tmp_path / "pae.bin").write_bytes(pae(envelope["payloadType"], payload))
    (tmp_path / "sig.bin").write_bytes(base64.b64decode(envelope["signatures"][0]["sig"]))
    return subprocess.run(
        [
            _tool("openssl"),
            "pkeyutl",
            "-verify",
            "-pubin",
            "-inkey",
            str(folder / "attestation.pub.pem"),
            "-rawin",
            "-in",
            str(tmp_path / "pae.bin"),
            "-sigfile",
            str(tmp_path / "sig.bin"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_openssl_verifies_the_dsse_signature(signed_report, tmp_path):
    result = _openssl_verify(signed_report, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Signature Verified Successfully" in result.stdout


def test_openssl_rejects_a_changed_payload(signed_report, tmp_path):
    path = signed_report / "attestation.dsse.json"
    envelope = json.loads(path.read_text())
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["predicate"]["verdict"] = "pass"
    envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    path.write_text(json.dumps(envelope))
    assert _openssl_verify(signed_report, tmp_path).returncode != 0


def _openssl_sha256_der(args: list[str], path) -> str:
    der = subprocess.run(
        [_tool("openssl"), *args, "-in", str(path), "-outform", "DER"], capture_output=True, timeout=60
    )
    assert der.returncode == 0, der.stderr
    import hashlib

    return "sha256:" + hashlib.sha256(der.stdout).hexdigest()


def test_openssl_fingerprints_match_the_trust_file_and_the_keyid(signed_report, key_dir_pw):
    """A reviewer can check the fingerprints the signer gave them with openssl alone."""
    public = key_dir_pw / "public"
    trust = (public / "trust.txt").read_text()
    cert_fp = _openssl_sha256_der(["x509"], public / "pdf-signing.cert.pem")
    key_fp = _openssl_sha256_der(["pkey", "-pubin"], public / "attestation.pub.pem")
    assert f"{cert_fp}  pdf-certificate" in trust and f"{key_fp}  attestation-key" in trust
    envelope = json.loads((signed_report / "attestation.dsse.json").read_text())
    assert envelope["signatures"][0]["keyid"] == key_fp
    statement = json.loads(base64.b64decode(envelope["payload"]))
    assert statement["predicate"]["signer"]["pdf_certificate"] == cert_fp


def test_pdfsig_names_the_subject_given_to_keygen(tmp_path, small_results):
    from reports import write_reports
    from reports.keys import keygen

    keygen(tmp_path / "k", subject="CN=Jane Doe,O=Acme Audit")
    write_reports(tmp_path / "out", small_results, formats=("pdf",), sign_key=tmp_path / "k")
    out = _pdfsig(tmp_path / "out" / "report.pdf")
    assert "Signature is Valid." in out and "Jane Doe" in out
