"""Independent verification with Debian's pdfsig/pdfdetach, certutil and openssl (skipped when missing, not in CI)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess

import pytest
from conftest import flip_byte

from reports.attestation import pae

PACKAGES = {"openssl": "openssl", "certutil": "libnss3-tools"}  # Debian packages; the rest: poppler-utils


def _tool(name: str) -> str:
    """The tool's path; skipped when missing, except in CI (``CVAUDIT_CI``), where ``.ci/run`` installs it."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} not installed (Debian: apt-get install {PACKAGES.get(name, 'poppler-utils')})"
        if os.environ.get("CVAUDIT_CI"):
            pytest.fail(message)
        pytest.skip(message)
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


# ------------------------------------------- who signed, checked by other tools (issue 30)


def _openssl_fingerprint(cert) -> str:
    """``openssl x509 -noout -fingerprint -sha256`` as ``sha256:<lower hex>``."""
    done = subprocess.run(
        [_tool("openssl"), "x509", "-noout", "-fingerprint", "-sha256", "-in", str(cert)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    label, _, colons = done.stdout.strip().partition("=")
    assert label.lower() == "sha256 fingerprint", done.stdout
    return "sha256:" + colons.replace(":", "").lower()


def _subject(cert) -> str:
    done = subprocess.run(
        [_tool("openssl"), "x509", "-noout", "-subject", "-nameopt", "RFC2253", "-in", str(cert)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout.strip().removeprefix("subject=")


def test_report_names_the_signer_and_the_anchor_as_openssl_sees_them(signed_report, key_dir_pw):
    """The report's Signature section: subject and fingerprints equal to what openssl computes from the key folder."""
    public = key_dir_pw / "public"
    cert_fp, ca_fp = _openssl_fingerprint(public / "pdf-signing.cert.pem"), _openssl_fingerprint(public / "ca.cert.pem")
    key_fp = _openssl_sha256_der(["pkey", "-pubin"], public / "attestation.pub.pem")
    subject, ca_subject = _subject(public / "pdf-signing.cert.pem"), _subject(public / "ca.cert.pem")
    assert "CN=cvaudit report signer " in subject and "(cvaudit CA)" in ca_subject and ca_fp != cert_fp
    html = (signed_report / "report.html").read_text()
    section = html[html.index('<section id="signature"') :]
    section = section[: section.index("</section>")]
    for value in (subject, cert_fp, ca_subject, ca_fp, key_fp):
        assert value in section, value
    # the PDF's own text says the same (pdftotext; fingerprints may wrap, so compare without white space)
    text = subprocess.run(
        [_tool("pdftotext"), str(signed_report / "report.pdf"), "-"], capture_output=True, text=True, timeout=60
    ).stdout
    flat = "".join(text.split())
    for value in (subject, cert_fp, ca_fp):
        assert "".join(value.split()) in flat, value
    # and cvaudit verify prints that same certificate fingerprint
    from reports.verify import verify

    assert verify(signed_report, key_dir=public).signers[0].fingerprint == cert_fp


def test_pdfsig_trusts_the_certificate_once_the_ca_is_in_the_nss_database(signed_report, key_dir_pw, tmp_path):
    """The documented steps (docs/reports.md): import ca.cert.pem with certutil, then pdfsig shows the chain as trusted."""
    pdf = signed_report / "report.pdf"
    certutil = _tool("certutil")

    def pdfsig_with(db) -> str:
        done = subprocess.run(
            [_tool("pdfsig"), "-nssdir", f"sql:{db}", str(pdf)], capture_output=True, text=True, timeout=60
        )
        return done.stdout

    def new_db(name):
        db = tmp_path / name
        db.mkdir()
        subprocess.run([certutil, "-N", "-d", f"sql:{db}", "--empty-password"], check=True, timeout=60)
        return db

    empty = pdfsig_with(new_db("empty"))
    assert "Signature is Valid." in empty and "Certificate issuer isn't Trusted." in empty, empty
    db = new_db("nss")
    ca = key_dir_pw / "public" / "ca.cert.pem"
    subprocess.run(
        [certutil, "-d", f"sql:{db}", "-A", "-t", ",C,", "-n", "cvaudit-ca", "-i", str(ca)], check=True, timeout=60
    )
    out = pdfsig_with(db)
    assert "Signature Validation: Signature is Valid." in out, out
    assert "Certificate Validation: Certificate is Trusted." in out, out
    assert "Total document signed" in out
    # a changed byte is still caught with the CA trusted
    flip_byte(pdf, pdf.stat().st_size // 3)
    assert "Signature is Valid." not in pdfsig_with(db)
