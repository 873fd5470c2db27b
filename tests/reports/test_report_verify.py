"""verify(): valid reports, every one-byte tampering, wrong keys and unusable input."""

from __future__ import annotations

import shutil

import pytest
from conftest import flip_byte

from reports.keys import ATTESTATION_KEY, ATTESTATION_PUB, PDF_KEY, keygen
from reports.verify import verify


def test_valid_folder(signed_report):
    report = verify(signed_report)
    assert report.exit_code == 0, report.to_text()
    assert any("self-signed" in note for note in report.notes)
    assert any("model.pt: not in the report folder" in note for note in report.notes)


def test_valid_with_public_key_folder_only(signed_report, key_dir_pw, tmp_path):
    public_only = tmp_path / "public"
    shutil.copytree(key_dir_pw, public_only)
    (public_only / PDF_KEY).unlink()
    (public_only / ATTESTATION_KEY).unlink()
    (signed_report / ATTESTATION_PUB).unlink()  # the trusted key comes from --key
    report = verify(signed_report, key_dir=public_only)
    assert report.exit_code == 0, report.to_text()
    assert not any("self-signed" in note for note in report.notes)


def test_pdf_and_attestation_alone(signed_report):
    assert verify(signed_report / "report.pdf").exit_code == 0
    assert verify(signed_report / "attestation.dsse.json").exit_code == 0


def test_extra_subject_checked_when_given(signed_report):
    model = signed_report.parent / "derm-resnet50.pt"
    assert verify(signed_report, subjects={"model.pt": model}).exit_code == 0
    flip_byte(model, 5)
    report = verify(signed_report, subjects={"model.pt": model})
    assert report.exit_code == 1 and [c.file for c in report.failures] == ["model.pt"]


@pytest.mark.parametrize("name", ["results.json", "predictions.csv", "junit.xml", "report.html"])
def test_one_byte_changed_in_attested_file(signed_report, name):
    flip_byte(signed_report / name, len((signed_report / name).read_bytes()) // 2)
    report = verify(signed_report)
    assert report.exit_code == 1
    assert [c.file for c in report.failures] == [name]
    assert name in report.to_text().splitlines()[-1]


@pytest.mark.parametrize("where", ["start", "middle", "signature", "end"])
def test_one_byte_changed_in_pdf(signed_report, where):
    pdf = signed_report / "report.pdf"
    data = pdf.read_bytes()
    offset = {"start": 20, "middle": len(data) // 2, "end": -3, "signature": data.rindex(b"/Contents <") + 40}[where]
    flip_byte(pdf, offset)
    alone = verify(pdf)
    assert alone.exit_code == 1, alone.to_text()
    assert alone.failures[0].file == "report.pdf"
    assert verify(signed_report).exit_code == 1


def test_bytes_appended_to_pdf(signed_report):
    pdf = signed_report / "report.pdf"
    pdf.write_bytes(pdf.read_bytes() + b"\n% appended\n")
    report = verify(pdf)
    assert report.exit_code == 1 and "whole file" in report.to_text()


@pytest.mark.parametrize("offset", [10, 200, -40])
def test_one_byte_changed_in_attestation(signed_report, offset):
    flip_byte(signed_report / "attestation.dsse.json", offset)
    report = verify(signed_report)
    assert report.exit_code == 1
    assert "attestation.dsse.json" in {c.file for c in report.failures}


def test_attested_file_removed(signed_report):
    (signed_report / "junit.xml").unlink()
    report = verify(signed_report)
    assert report.exit_code == 1 and report.failures[0].message == "attested report file is missing"


def test_other_signer_is_rejected_with_key(signed_report, tmp_path):
    other = tmp_path / "other"
    keygen(other)
    report = verify(signed_report, key_dir=other)
    assert report.exit_code == 1
    assert {c.file for c in report.failures} == {"report.pdf", "attestation.dsse.json"}


def test_replaced_public_key_next_to_report_fails(signed_report, tmp_path):
    other = tmp_path / "other"
    keygen(other)
    shutil.copy2(other / ATTESTATION_PUB, signed_report / ATTESTATION_PUB)
    assert verify(signed_report).exit_code == 1


def test_unsigned_pdf_is_invalid(tmp_path):
    from reports.pdf import render_pdf

    render_pdf("<p>x</p>", tmp_path / "report.pdf")
    report = verify(tmp_path / "report.pdf")
    assert report.exit_code == 1 and "not signed" in report.to_text()


def test_unusable_inputs(signed_report, tmp_path):
    assert verify(tmp_path / "missing").exit_code == 2
    (tmp_path / "notes.txt").write_text("hi")
    assert verify(tmp_path / "notes.txt").exit_code == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "nothing to verify" in verify(empty).to_text()
    (signed_report / ATTESTATION_PUB).unlink()
    no_key = verify(signed_report)
    assert no_key.exit_code == 2 and "--key" in no_key.unusable
    assert verify(signed_report, key_dir=tmp_path / "nokeys").exit_code == 2


def test_report_as_dict(signed_report):
    data = verify(signed_report).to_dict()
    assert data["valid"] and data["exit_code"] == 0 and len(data["checks"]) == 7


def test_deleted_attestation_next_to_signed_pdf_is_invalid(signed_report):
    """B1: removing attestation.dsse.json must not hide changes to the other files."""
    (signed_report / "attestation.dsse.json").unlink()
    flip_byte(signed_report / "results.json", 40)
    report = verify(signed_report)
    assert report.exit_code == 1, report.to_text()
    failure = next(c for c in report.failures if c.file == "attestation.dsse.json")
    for name in ("results.json", "report.html", "predictions.csv", "junit.xml"):
        assert name in failure.message
    assert "report.pdf" not in [c.file for c in report.failures]


def test_only_public_key_left_is_invalid_not_unusable(signed_report):
    for name in ("attestation.dsse.json", "report.pdf"):
        (signed_report / name).unlink()
    report = verify(signed_report)
    assert report.exit_code == 1 and report.failures[0].file == "attestation.dsse.json"


def test_unsigned_folder_stays_invalid(tmp_path):
    from reports.pdf import render_pdf

    render_pdf("<p>x</p>", tmp_path / "report.pdf")
    (tmp_path / "results.json").write_text("{}")
    report = verify(tmp_path)
    assert report.exit_code == 1
    assert [c.file for c in report.failures] == ["report.pdf"]


def test_subject_matched_with_or_without_prefix(signed_report, tmp_path):
    model = signed_report.parent / "derm-resnet50.pt"
    unknown = verify(signed_report, subjects={"resnet.pt": model})
    assert unknown.exit_code == 2 and "no attested subject" in unknown.unusable and "model.pt" in unknown.unusable
    missing = verify(signed_report, subjects={"model.pt": tmp_path / "absent.pt"})
    assert missing.exit_code == 2 and "no such file" in missing.unusable
