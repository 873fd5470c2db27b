"""verify(): valid reports, every one-byte tampering, wrong keys, trust anchors and unusable input."""

from __future__ import annotations

import base64
import json
import shutil

import pytest
from conftest import PASSPHRASE, flip_byte

from reports import write_reports
from reports.attestation import write_attestation
from reports.keys import ATTESTATION_KEY, ATTESTATION_PUB, PDF_CERT, PDF_KEY, keygen
from reports.trust import load_anchors
from reports.verify import verify


@pytest.fixture
def trusted(key_dir_pw):
    """verify() with the fixture's key folder as the trust anchor."""

    def run(path, **kwargs):
        return verify(path, key_dir=key_dir_pw, **kwargs)

    return run


def _statement(folder) -> dict:
    envelope = json.loads((folder / "attestation.dsse.json").read_text())
    return json.loads(base64.b64decode(envelope["payload"]))


def test_valid_folder(signed_report, trusted):
    report = trusted(signed_report)
    assert report.exit_code == 0 and report.outcome == "VALID", report.to_text()
    assert report.to_text().splitlines()[-1] == "VALID"
    assert any("model.pt: not in the report folder" in note for note in report.notes)
    assert [s.trusted for s in report.signers] == [True, True]


def test_no_trust_anchor_is_untrusted_never_valid(signed_report):
    """Regression: without an anchor, any key was accepted and verify printed VALID, exit 0."""
    report = verify(signed_report)
    assert report.exit_code == 1 and report.outcome == "UNTRUSTED"
    text = report.to_text()
    assert "VALID" not in text.replace("INVALID", "") and text.splitlines()[-1].startswith("UNTRUSTED")
    fingerprints = {s.fingerprint for s in report.signers}
    assert len(fingerprints) == 2 and all(fp in text for fp in fingerprints)


def test_allow_untrusted_is_intact_not_valid(signed_report):
    report = verify(signed_report, allow_untrusted=True)
    assert report.exit_code == 0 and report.outcome == "INTACT" and not report.valid
    assert "VALID" not in report.to_text().replace("INVALID", "")
    tampered = signed_report / "junit.xml"
    flip_byte(tampered, 10)
    assert verify(signed_report, allow_untrusted=True).exit_code == 1


def test_valid_with_public_bundle_only(signed_report, key_dir_pw, trusted):
    (signed_report / ATTESTATION_PUB).unlink()  # the public key comes from --key
    report = verify(signed_report, key_dir=key_dir_pw / "public")
    assert report.exit_code == 0, report.to_text()


def test_valid_with_copied_public_files(signed_report, key_dir_pw, tmp_path):
    public_only = tmp_path / "public"
    shutil.copytree(key_dir_pw, public_only)
    (public_only / PDF_KEY).unlink()
    (public_only / ATTESTATION_KEY).unlink()
    report = verify(signed_report, key_dir=public_only)
    assert report.exit_code == 0, report.to_text()


def test_trust_file_from_keygen(signed_report, key_dir_pw):
    anchors = load_anchors(trust_files=[key_dir_pw / "public" / "trust.txt"])
    assert verify(signed_report, anchors=anchors).exit_code == 0


def test_env_anchor(signed_report, key_dir_pw, tmp_path):
    other = tmp_path / "other"
    keygen(other)
    anchors = load_anchors(env=f"{other / 'public' / 'trust.txt'}:{key_dir_pw / 'public'}")
    assert verify(signed_report, anchors=anchors).exit_code == 0
    only_other = load_anchors(env=str(other))
    assert verify(signed_report, anchors=only_other).outcome == "UNTRUSTED"


def test_certificate_alone_vouches_for_the_attestation_key(signed_report, key_dir_pw):
    """The certificate names the attestation key, so trusting the certificate trusts both signatures."""
    anchors = load_anchors(trust_files=[key_dir_pw / PDF_CERT])
    report = verify(signed_report, anchors=anchors)
    assert report.exit_code == 0, report.to_text()
    assert "named by" in report.signers[1].why
    # a lone attestation is trusted through the certificate's extension too
    assert verify(signed_report / "attestation.dsse.json", anchors=anchors).exit_code == 0


def test_attestation_key_alone_vouches_for_the_pdf(signed_report, key_dir_pw):
    fingerprint = [
        line for line in (key_dir_pw / "public" / "trust.txt").read_text().splitlines() if "attestation-key" in line
    ]
    trust = signed_report.parent / "att-only.txt"
    trust.write_text(fingerprint[0] + "\n")
    report = verify(signed_report, anchors=load_anchors(trust_files=[trust]))
    assert report.exit_code == 0, report.to_text()
    # the PDF alone carries nothing that names the attestation key's owner: untrusted
    assert verify(signed_report / "report.pdf", anchors=load_anchors(trust_files=[trust])).outcome == "UNTRUSTED"


def test_openssl_style_fingerprint_is_accepted(signed_report, key_dir_pw):
    lines = (key_dir_pw / "public" / "trust.txt").read_text().splitlines()
    cert_fp = next(line.split()[0] for line in lines if "pdf-certificate" in line)
    digits = cert_fp.split(":")[1].upper()
    trust = signed_report.parent / "openssl.txt"
    trust.write_text("SHA256 Fingerprint=" + ":".join(digits[i : i + 2] for i in range(0, 64, 2)) + "\n")
    assert verify(signed_report, anchors=load_anchors(trust_files=[trust])).exit_code == 0


def test_pdf_and_attestation_alone(signed_report, trusted):
    assert trusted(signed_report / "report.pdf").exit_code == 0
    assert trusted(signed_report / "attestation.dsse.json").exit_code == 0


def test_signed_verdict_is_read_through_the_results_reader(signed_report, trusted, base_results):
    """The reviewer sees which verdict was signed: from the folder's results.json, or the copy inside the PDF."""
    policy = base_results["policy"]
    for target, source in [(signed_report, "results.json"), (signed_report / "report.pdf", "attached results.json")]:
        report = trusted(target)
        assert report.outcome == "VALID" and report.results is not None and source in report.results.source
        assert (report.results.verdict, report.results.policy) == (policy["verdict"], policy["name"])
        assert report.results.blocking_failures == tuple(policy["blocking_failures"])
        line = report.to_text().splitlines()[-2]
        assert line.startswith(f"signed results: verdict {policy['verdict'].upper()} under policy ")
        assert report.to_dict()["results"]["verdict"] == policy["verdict"]
    flip_byte(signed_report / "results.json", 40)
    assert trusted(signed_report).results is None  # a changed file is not read: INVALID names it


def test_intact_report_with_results_this_version_cannot_read_is_unusable(signed_report, trusted, key_dir_pw):
    """Signed by someone, intact, but its results.json is another schema major version: exit 2, one line."""
    statement = _statement(signed_report)
    (signed_report / "report.pdf").unlink()
    results = json.loads((signed_report / "results.json").read_text())
    results["schema_version"] = "9.0"
    (signed_report / "results.json").write_text(json.dumps(results))
    files = [
        signed_report / s["name"] for s in statement["subject"] if s["name"] in statement["predicate"]["report_files"]
    ]
    files = [f for f in files if f.name != "report.pdf"]
    predicate = {k: v for k, v in statement["predicate"].items() if k != "report_files"}
    write_attestation(signed_report, files, None, predicate, key_dir_pw, PASSPHRASE)
    report = trusted(signed_report)
    assert report.exit_code == 2 and report.outcome == "UNUSABLE", report.to_text()
    assert "results.json: $.schema_version: 9.0 is a newer major version" in report.to_text()
    assert len(report.to_text().splitlines()) == 1


def test_extra_subject_checked_when_given(signed_report, trusted):
    model = signed_report.parent / "derm-resnet50.pt"
    assert trusted(signed_report, subjects={"model.pt": model}).exit_code == 0
    flip_byte(model, 5)
    report = trusted(signed_report, subjects={"model.pt": model})
    assert report.exit_code == 1 and [c.file for c in report.failures] == ["model.pt"]


@pytest.mark.parametrize("name", ["predictions.csv", "junit.xml", "report.html"])
def test_one_byte_changed_in_attested_file(signed_report, trusted, name):
    flip_byte(signed_report / name, len((signed_report / name).read_bytes()) // 2)
    report = trusted(signed_report)
    assert report.exit_code == 1
    assert [c.file for c in report.failures] == [name]
    assert name in report.to_text().splitlines()[-1]


def test_results_json_changed_fails_twice(signed_report, trusted):
    """results.json is checked against the attestation and against the copy inside the signed PDF."""
    flip_byte(signed_report / "results.json", len((signed_report / "results.json").read_bytes()) // 2)
    report = trusted(signed_report)
    assert report.exit_code == 1
    messages = [c.message for c in report.failures if c.file == "results.json"]
    assert len(messages) == 2 and any("attached inside the signed report.pdf" in m for m in messages)


@pytest.mark.parametrize("where", ["start", "middle", "signature", "end"])
def test_one_byte_changed_in_pdf(signed_report, trusted, where):
    pdf = signed_report / "report.pdf"
    data = pdf.read_bytes()
    offset = {"start": 20, "middle": len(data) // 2, "end": -3, "signature": data.rindex(b"/Contents <") + 40}[where]
    flip_byte(pdf, offset)
    alone = trusted(pdf)
    assert alone.exit_code == 1, alone.to_text()
    assert alone.failures[0].file == "report.pdf"
    assert trusted(signed_report).exit_code == 1


def test_bytes_appended_to_pdf(signed_report, trusted):
    pdf = signed_report / "report.pdf"
    pdf.write_bytes(pdf.read_bytes() + b"\n% appended\n")
    report = trusted(pdf)
    assert report.exit_code == 1 and "whole file" in report.to_text()


@pytest.mark.parametrize("offset", [10, 200, -40])
def test_one_byte_changed_in_attestation(signed_report, trusted, offset):
    flip_byte(signed_report / "attestation.dsse.json", offset)
    report = trusted(signed_report)
    assert report.exit_code == 1
    assert "attestation.dsse.json" in {c.file for c in report.failures}


def test_keyid_must_be_the_attestation_key_fingerprint(signed_report, trusted):
    path = signed_report / "attestation.dsse.json"
    envelope = json.loads(path.read_text())
    assert envelope["signatures"][0]["keyid"] == next(
        s.fingerprint for s in trusted(signed_report).signers if s.kind == "attestation-key"
    )
    envelope["signatures"][0]["keyid"] = "sha256:" + "0" * 64
    path.write_text(json.dumps(envelope))
    report = trusted(signed_report)
    assert report.exit_code == 1 and "keyid" in report.failures[0].message


def test_attestation_names_the_pdf_certificate(signed_report, trusted):
    statement = _statement(signed_report)
    pdf_signer = next(s for s in trusted(signed_report).signers if s.kind == "pdf-certificate")
    assert statement["predicate"]["signer"]["pdf_certificate"] == pdf_signer.fingerprint


def test_attested_file_removed(signed_report, trusted):
    (signed_report / "junit.xml").unlink()
    report = trusted(signed_report)
    assert report.exit_code == 1 and report.failures[0].message == "attested report file is missing"


def test_other_signer_is_untrusted_with_key(signed_report, tmp_path):
    other = tmp_path / "other"
    keygen(other)
    report = verify(signed_report, key_dir=other)
    assert report.exit_code == 1 and report.outcome in ("UNTRUSTED", "INVALID")
    assert not report.valid


def test_replaced_public_key_next_to_report_fails(signed_report, trusted, tmp_path):
    other = tmp_path / "other"
    keygen(other)
    shutil.copy2(other / ATTESTATION_PUB, signed_report / ATTESTATION_PUB)
    assert verify(signed_report).exit_code == 1
    assert trusted(signed_report).exit_code == 0  # --key's own public key is used, by the envelope's keyid


def test_forged_report_signed_with_another_key(signed_report, key_dir_pw, tmp_path):
    """Regression: edit a number, re-sign with key B: VALID, exit 0 without --key; now UNTRUSTED / not VALID."""
    results = json.loads((signed_report / "results.json").read_text())
    results["conditions"][0]["metrics"]["accuracy"] = 0.999
    forged = tmp_path / "forged"
    forged.mkdir()
    (forged / "results.json").write_text(json.dumps(results, indent=2))
    key_b = tmp_path / "keyB"
    keygen(key_b)
    write_reports(forged, results, sign_key=key_b)
    assert verify(forged).outcome == "UNTRUSTED" and verify(forged).exit_code == 1
    against_a = verify(forged, key_dir=key_dir_pw)
    assert against_a.exit_code == 1 and not against_a.valid
    assert "not among the anchors" in against_a.to_text()


def test_pdf_of_key_a_with_attestation_of_key_b_is_invalid(signed_report, key_dir_pw, tmp_path):
    """Regression: a genuine PDF (key A) with an attestation by key B over an edited results.json was VALID."""
    results = json.loads((signed_report / "results.json").read_text())
    results["conditions"][0]["metrics"]["accuracy"] = 0.999
    (signed_report / "results.json").write_text(json.dumps(results, indent=2))
    key_b = tmp_path / "keyB"
    keygen(key_b)
    write_reports(
        signed_report, results, formats=("html",), sign_key=key_b, attest_files=["results.json", "report.html"]
    )
    # even a reviewer who trusts both A and B must see that the two halves do not belong together
    anchors = load_anchors(key_dirs=[key_dir_pw, key_b])
    report = verify(signed_report, anchors=anchors)
    assert report.exit_code == 1 and report.outcome == "INVALID", report.to_text()
    text = report.to_text()
    assert "different key sets" in text and "attached inside the signed report.pdf" in text
    assert verify(signed_report).exit_code == 1 and verify(signed_report, key_dir=key_dir_pw).exit_code == 1


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


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("sha256:1234\n", "not a SHA-256 fingerprint"),
        ("# only a comment\n", "no fingerprint"),
        ("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "private key"),
        ("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "cannot be parsed"),
    ],
)
def test_bad_trust_file_is_an_error(tmp_path, content, message):
    from reports.keys import SigningError

    path = tmp_path / "trust.txt"
    path.write_text(content)
    with pytest.raises(SigningError, match=message):
        load_anchors(trust_files=[path])


def test_report_as_dict(signed_report, trusted):
    data = trusted(signed_report).to_dict()
    assert data["valid"] and data["exit_code"] == 0 and data["outcome"] == "VALID" and len(data["signers"]) == 2
    assert len(data["checks"]) == 9


def test_deleted_attestation_next_to_signed_pdf_is_invalid(signed_report, trusted):
    """B1: removing attestation.dsse.json must not hide changes to the other files."""
    (signed_report / "attestation.dsse.json").unlink()
    flip_byte(signed_report / "junit.xml", 40)
    report = trusted(signed_report)
    assert report.exit_code == 1, report.to_text()
    failure = next(c for c in report.failures if c.file == "attestation.dsse.json")
    for name in ("results.json", "report.html", "predictions.csv", "junit.xml"):
        assert name in failure.message
    assert "report.pdf" not in [c.file for c in report.failures]


def test_only_public_key_left_is_invalid_not_unusable(signed_report, trusted):
    for name in ("attestation.dsse.json", "report.pdf"):
        (signed_report / name).unlink()
    report = trusted(signed_report)
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


# ------------------------------------------------- anchoring on the CA (issue 30)


def _signed(folder, results, key_dir, **kwargs):
    folder.mkdir()
    (folder / "results.json").write_text(json.dumps(results, indent=2))
    write_reports(folder, results, formats=("pdf",), sign_key=key_dir, **kwargs)
    return folder


def _trust_lines(path, key_dir, *kinds):
    lines = (key_dir / "public" / "trust.txt").read_text().splitlines()
    path.write_text("".join(line + "\n" for line in lines if line.split()[1:2] and line.split()[1] in kinds))
    return path


def test_the_ca_fingerprint_alone_anchors_the_report(signed_report, key_dir_pw, tmp_path):
    ca_only = _trust_lines(tmp_path / "ca.txt", key_dir_pw, "ca-certificate")
    assert len(ca_only.read_text().splitlines()) == 1
    report = verify(signed_report, anchors=load_anchors(trust_files=[ca_only]))
    assert report.outcome == "VALID", report.to_text()
    pdf, att = report.signers
    assert pdf.trusted and pdf.why.startswith("issued under the trusted CA") and "(cvaudit CA)" in pdf.why
    assert att.trusted and "named by the PDF certificate" in att.why
    # the CA as a PEM file (a reviewer's ca.cert.pem) anchors it the same way
    pem = verify(signed_report, anchors=load_anchors(trust_files=[key_dir_pw / "public" / "ca.cert.pem"]))
    assert pem.outcome == "VALID", pem.to_text()


def test_a_ca_of_the_same_name_from_another_key_set_does_not_anchor(tmp_path, small_results):
    """Trust is by the CA's fingerprint and a validated path, never by its name."""
    subject = "CN=Jane Doe,O=Acme Audit"
    keygen(tmp_path / "mine", subject=subject)
    keygen(tmp_path / "theirs", subject=subject)
    out = _signed(tmp_path / "out", small_results, tmp_path / "mine")
    theirs = tmp_path / "theirs" / "public"
    for anchors in (
        load_anchors(trust_files=[_trust_lines(tmp_path / "t.txt", tmp_path / "theirs", "ca-certificate")]),
        load_anchors(trust_files=[theirs / "ca.cert.pem"]),
    ):
        report = verify(out, anchors=anchors)
        assert report.outcome == "UNTRUSTED" and report.intact, report.to_text()
        assert not any(s.trusted for s in report.signers)
    mine = verify(out, anchors=load_anchors(trust_files=[tmp_path / "mine" / "public" / "ca.cert.pem"]))
    assert mine.outcome == "VALID", mine.to_text()


def test_a_trusted_certificate_that_is_no_ca_vouches_for_nothing_else(tmp_path, small_results):
    """A leaf certificate's fingerprint trusts that certificate only, not what it might have signed."""
    keygen(tmp_path / "mine")
    keygen(tmp_path / "other")
    out = _signed(tmp_path / "out", small_results, tmp_path / "mine")
    leaf = load_anchors(trust_files=[tmp_path / "other" / "public" / PDF_CERT])
    assert verify(out, anchors=leaf).outcome == "UNTRUSTED"


def test_a_report_signed_with_an_old_key_folder_still_verifies(key_dir, tmp_path, small_results):
    from key_folders import legacy_folder

    old = legacy_folder(shutil.copytree(key_dir, tmp_path / "old"))
    out = _signed(tmp_path / "out", small_results, old)
    report = verify(out, key_dir=old / "public")
    assert report.outcome == "VALID", report.to_text()
    assert verify(out, anchors=load_anchors(trust_files=[old / "public" / "trust.txt"])).outcome == "VALID"
    assert verify(out).outcome == "UNTRUSTED"


def test_an_organisations_certificate_needs_its_attestation_key_trusted_too(key_dir, tmp_path, small_results):
    """An organisation's certificate does not name the attestation key: trusting its root trusts the PDF only."""
    from key_folders import org_folder

    org = org_folder(key_dir, tmp_path / "org")
    out = _signed(tmp_path / "out", small_results, org)
    root_only = load_anchors(trust_files=[_root_pem(org, tmp_path / "root.pem")])
    report = verify(out, anchors=root_only)
    assert report.outcome == "UNTRUSTED" and report.intact, report.to_text()
    pdf, att = report.signers
    assert pdf.trusted and "Acme Root CA" in pdf.why and not att.trusted
    both = load_anchors(trust_files=[tmp_path / "root.pem", org / "public" / ATTESTATION_PUB])
    assert verify(out, anchors=both).outcome == "VALID"


def test_a_certificate_of_the_trusted_root_that_is_no_document_signer_does_not_vouch(key_dir, tmp_path, small_results):
    """Trusting an organisation's root trusts its document signers, not its e-mail (S/MIME) certificates."""
    from cryptography.x509.oid import ExtendedKeyUsageOID
    from key_folders import org_folder

    org = org_folder(key_dir, tmp_path / "org", usages=[ExtendedKeyUsageOID.EMAIL_PROTECTION])
    out = _signed(tmp_path / "out", small_results, org)
    report = verify(out, anchors=load_anchors(trust_files=[_root_pem(org, tmp_path / "root.pem")]))
    assert report.outcome == "UNTRUSTED" and report.intact, report.to_text()
    pdf, _ = report.signers
    assert not pdf.trusted, pdf.why  # with a document-signing usage the same root vouches (the test above)


def _root_pem(folder, path):
    blocks = (folder / "public" / "ca.cert.pem").read_text().split("-----END CERTIFICATE-----")
    path.write_text(blocks[1].strip() + "\n-----END CERTIFICATE-----\n")
    return path


def test_a_folder_holding_only_the_ca_certificate_is_an_anchor(signed_report, key_dir_pw, tmp_path):
    """--key reads ca.cert.pem: a reviewer's folder with the CA alone verifies the report."""
    folder = tmp_path / "reviewer"
    folder.mkdir()
    shutil.copy2(key_dir_pw / "public" / "ca.cert.pem", folder / "ca.cert.pem")
    report = verify(signed_report, key_dir=folder)
    assert report.outcome == "VALID", report.to_text()
    assert report.signers[0].why.startswith("issued under the trusted CA")


@pytest.mark.parametrize("seed", range(6))
def test_a_damaged_pdf_fails_verification_and_never_crashes(signed_report, trusted, seed):
    """Truncated or overwritten at random (seeded): report.pdf fails closed, whatever pyHanko's parser raised."""
    import random

    rng = random.Random(seed)
    pdf = signed_report / "report.pdf"
    data = bytearray(pdf.read_bytes())
    if seed % 2 == 0:
        data = data[: rng.randrange(len(data) // 4, len(data) - 64)]
    else:
        for _ in range(40):
            data[rng.randrange(len(data))] = rng.randrange(256)
    pdf.write_bytes(bytes(data))
    report = trusted(pdf)
    assert report.exit_code == 1, report.to_text()
    assert report.failures and report.failures[0].file == "report.pdf"
