"""The report's Signature section: who signed it, or that it is unsigned (issue 30).

The fingerprints are compared with openssl in ``test_report_independent.py``;
here: what the section says for unsigned, signed, HTML-only and old self-signed
key folders, and that the certificate subject (typed by whoever made the key)
is escaped and neutralised like every other user string.
"""

from __future__ import annotations

import hashlib
import shutil

from cryptography.hazmat.primitives import serialization

from reports import write_reports
from reports.html import render_html
from reports.keys import keygen, load_signing_keys
from reports.signature_view import signature_view


def _section(html: str) -> str:
    start = html.index('<section id="signature"')
    return html[start : html.index("</section>", start)]


def _der_sha256(cert) -> str:
    return "sha256:" + hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def test_an_unsigned_report_says_so(results):
    html = render_html(results)
    assert "This report is not signed" in _section(html) and 'href="#signature"' in html
    assert "fingerprint" not in _section(html).lower()


def test_a_signed_report_names_signer_certificate_and_ca(signed_report, key_dir_pw):
    from conftest import PASSPHRASE

    keys = load_signing_keys(key_dir_pw, PASSPHRASE)
    section = _section((signed_report / "report.html").read_text())
    assert "not signed" not in section
    assert keys.pdf_cert.subject.rfc4514_string() in section
    assert _der_sha256(keys.pdf_cert) in section and _der_sha256(keys.chain[-1]) in section
    assert keys.chain[-1].subject.rfc4514_string() in section and "ca.cert.pem" in section
    assert keys.attestation_key_id in section and "PAdES" in section


def test_html_only_does_not_claim_a_pdf_signature(tmp_path, small_results, key_dir):
    write_reports(tmp_path, small_results, formats=("html",), sign_key=key_dir)
    section = _section((tmp_path / "report.html").read_text())
    assert "PAdES" not in section and "pdfsig" not in section and "attestation.dsse.json" in section


def test_an_old_self_signed_key_folder_is_named_as_its_own_anchor(key_dir, tmp_path):
    from key_folders import legacy_folder

    keys = load_signing_keys(legacy_folder(shutil.copytree(key_dir, tmp_path / "old")))
    view = signature_view(keys)
    assert view["anchor"] == {
        "kind": "self-signed",
        "subject": keys.pdf_cert.subject.rfc4514_string(),
        "fingerprint": _der_sha256(keys.pdf_cert),
    }
    section = _section(render_html_with(view))
    assert "self-signed" in section and "ca.cert.pem" not in section


def test_a_hostile_subject_is_escaped_and_neutralised(tmp_path, base_results):
    keygen(tmp_path / "k", subject="CN=\\<b\\>Eve\u202e\x1b,O=Acme")
    view = signature_view(load_signing_keys(tmp_path / "k"))
    section = _section(render_html(base_results, signature=view))
    assert "<b>" not in section and "&lt;b\\&gt;Eve" in section and "\\x1b" in section
    assert "\u202e" not in section and "\x1b" not in section


def render_html_with(view) -> str:
    from reports_fixture import make_results

    return render_html(make_results(), signature=view)
