"""sign_pdf and the DSSE attestation: structure, digests and in-place signing."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from conftest import PASSPHRASE

from reports.attestation import PAYLOAD_TYPE, PREDICATE_TYPE, STATEMENT_TYPE, pae, write_attestation
from reports.keys import SigningError
from reports.pdf import render_pdf
from reports.signing import sign_pdf
from reports.verify import verify


def test_attestation_envelope_and_statement(signed_report):
    envelope = json.loads((signed_report / "attestation.dsse.json").read_text())
    assert envelope["payloadType"] == PAYLOAD_TYPE == "application/vnd.in-toto+json"
    assert envelope["signatures"][0]["keyid"].startswith("sha256:")
    statement = json.loads(base64.b64decode(envelope["payload"]))
    assert statement["_type"] == STATEMENT_TYPE == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == PREDICATE_TYPE
    names = {s["name"]: s["digest"]["sha256"] for s in statement["subject"]}
    assert set(names) == {"results.json", "predictions.csv", "junit.xml", "report.html", "report.pdf", "model.pt"}
    for name in ("results.json", "report.pdf"):
        assert names[name] == hashlib.sha256((signed_report / name).read_bytes()).hexdigest()
    predicate = statement["predicate"]
    assert predicate["verdict"] == "fail" and predicate["policy"]["sha256"] == "ef" * 32
    assert predicate["tool"]["name"] == "cvaudit" and "model.pt" not in predicate["report_files"]


def test_pae_matches_dsse_spec():
    assert pae("application/vnd.in-toto+json", b"{}") == b"DSSEv1 28 application/vnd.in-toto+json 2 {}"


def test_duplicate_subject_names_are_refused(signed_report, key_dir):
    with pytest.raises(ValueError, match="given twice"):
        write_attestation(
            signed_report,
            [signed_report / "results.json"],
            {"results.json": signed_report / "report.html"},
            {"verdict": "pass"},
            key_dir,
        )


def test_sign_pdf_in_place(tmp_path, key_dir_pw):
    pdf = tmp_path / "r.pdf"
    render_pdf("<p>hello</p>", pdf)
    before = pdf.read_bytes()
    sign_pdf(pdf, key_dir_pw, PASSPHRASE)
    after = pdf.read_bytes()
    assert after.startswith(before)  # an incremental update: the rendered bytes are untouched
    assert verify(pdf, key_dir=key_dir_pw).exit_code == 0
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_sign_pdf_bad_key_leaves_file_untouched(tmp_path, key_dir_pw):
    pdf = tmp_path / "r.pdf"
    render_pdf("<p>hello</p>", pdf)
    before = pdf.read_bytes()
    with pytest.raises(SigningError, match="wrong passphrase"):
        sign_pdf(pdf, key_dir_pw, b"nope")
    assert pdf.read_bytes() == before


def test_sign_non_pdf_is_a_signing_error(tmp_path, key_dir):
    bogus = tmp_path / "x.pdf"
    bogus.write_text("not a pdf")
    with pytest.raises(SigningError, match="cannot sign PDF"):
        sign_pdf(bogus, key_dir)


def test_signed_pdf_stays_pdf_1_7_for_pdf_a_3b(signed_report, key_dir_pw):
    """pyHanko must not raise the catalogue to /Version /2.0 (PDF/A-3b is based on PDF 1.7)."""
    import re

    data = (signed_report / "report.pdf").read_bytes()
    assert data.startswith(b"%PDF-1.7")
    assert not re.search(rb"/Version\s*/2\.0", data)
    assert b"/ESIC" in data and b"/ISO_" not in data
    assert verify(signed_report / "report.pdf", key_dir=key_dir_pw).exit_code == 0
