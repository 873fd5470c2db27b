"""keygen and load_signing_keys: file modes, passphrases and every bad-key path."""

from __future__ import annotations

import shutil
import stat

import pytest
from conftest import PASSPHRASE
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from reports.keys import (
    ATTESTATION_KEY,
    ATTESTATION_PUB,
    PDF_CERT,
    PDF_KEY,
    PUBLIC_DIR,
    TRUST_FILE,
    KeyPermissionWarning,
    SigningError,
    attestation_key_of_certificate,
    keygen,
    load_signing_keys,
)


def _pem(key, passphrase=None) -> bytes:
    enc = serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)


@pytest.fixture
def own_keys(key_dir, tmp_path):
    folder = tmp_path / "k"
    shutil.copytree(key_dir, folder)
    return folder


def test_keygen_files_and_modes(key_dir_pw):
    for name in (PDF_KEY, ATTESTATION_KEY):
        assert stat.S_IMODE((key_dir_pw / name).stat().st_mode) == 0o600
        assert b"ENCRYPTED PRIVATE KEY" in (key_dir_pw / name).read_bytes()
    assert b"BEGIN CERTIFICATE" in (key_dir_pw / PDF_CERT).read_bytes()
    keys = load_signing_keys(key_dir_pw, PASSPHRASE)
    assert isinstance(keys.pdf_key, ec.EllipticCurvePrivateKey) and keys.pdf_key.curve.name == "secp256r1"
    assert isinstance(keys.attestation_key, ed25519.Ed25519PrivateKey)
    assert keys.attestation_public_pem == (key_dir_pw / ATTESTATION_PUB).read_bytes()


def test_keygen_refuses_to_overwrite(key_dir):
    with pytest.raises(SigningError, match="already exists"):
        keygen(key_dir)


def test_plain_keys_ignore_a_passphrase(key_dir):
    assert load_signing_keys(key_dir, b"unused").key_dir == key_dir


def _one_line(exc_info) -> str:
    message = str(exc_info.value)
    assert "\n" not in message
    return message


def test_wrong_passphrase(key_dir_pw):
    with pytest.raises(SigningError) as info:
        load_signing_keys(key_dir_pw, b"wrong")
    assert f"{PDF_KEY}: wrong passphrase" in _one_line(info)


def test_missing_passphrase(key_dir_pw):
    with pytest.raises(SigningError) as info:
        load_signing_keys(key_dir_pw, None)
    assert "encrypted; set CVAUDIT_KEY_PASSPHRASE" in _one_line(info)


def test_key_not_matching_certificate(own_keys, tmp_path):
    other = tmp_path / "other"
    keygen(other)
    shutil.copy2(other / PDF_CERT, own_keys / PDF_CERT)
    with pytest.raises(SigningError) as info:
        load_signing_keys(own_keys)
    assert "does not match the certificate" in _one_line(info)


def test_attestation_key_not_matching_public_key(own_keys):
    (own_keys / ATTESTATION_KEY).write_bytes(_pem(ed25519.Ed25519PrivateKey.generate()))
    with pytest.raises(SigningError, match=f"{ATTESTATION_KEY}: private key does not match"):
        load_signing_keys(own_keys)


@pytest.mark.parametrize("name", [PDF_KEY, PDF_CERT, ATTESTATION_KEY])
def test_missing_file(own_keys, name):
    (own_keys / name).unlink()
    with pytest.raises(SigningError) as info:
        load_signing_keys(own_keys)
    assert f"{name}: missing" in _one_line(info)


def test_missing_folder(tmp_path):
    with pytest.raises(SigningError, match="key folder does not exist"):
        load_signing_keys(tmp_path / "nowhere")


@pytest.mark.parametrize(
    "key", [rsa.generate_private_key(65537, 2048), ec.generate_private_key(ec.SECP384R1())], ids=["rsa", "p384"]
)
def test_unsupported_pdf_key_type(own_keys, key):
    (own_keys / PDF_KEY).write_bytes(_pem(key))
    with pytest.raises(SigningError) as info:
        load_signing_keys(own_keys)
    assert "unsupported key type" in _one_line(info) and "expected ECDSA P-256" in str(info.value)


def test_unsupported_attestation_key_type(own_keys):
    (own_keys / ATTESTATION_KEY).write_bytes(_pem(ec.generate_private_key(ec.SECP256R1())))
    with pytest.raises(SigningError, match="expected Ed25519"):
        load_signing_keys(own_keys)


def test_garbage_key_file(own_keys):
    (own_keys / PDF_KEY).write_text("hello")
    with pytest.raises(SigningError, match="not a PEM private key"):
        load_signing_keys(own_keys)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_unencrypted_key_readable_by_others_is_refused(own_keys, mode):
    """Regression: a world-readable unencrypted private key signed without a word."""
    (own_keys / PDF_KEY).chmod(mode)
    with pytest.raises(SigningError) as info:
        load_signing_keys(own_keys)
    message = _one_line(info)
    assert f"mode {mode:04o}" in message and f"chmod 600 {own_keys / PDF_KEY}" in message


def test_encrypted_key_readable_by_others_warns(key_dir_pw, tmp_path):
    folder = tmp_path / "k"
    shutil.copytree(key_dir_pw, folder)
    (folder / ATTESTATION_KEY).chmod(0o644)
    with pytest.warns(KeyPermissionWarning, match="chmod 600"):
        keys = load_signing_keys(folder, PASSPHRASE)
    assert len(keys.warnings) == 1 and ATTESTATION_KEY in keys.warnings[0]


def test_keygen_subject_and_public_bundle(tmp_path):
    files = keygen(tmp_path / "k", subject="CN=Jane Doe,O=Acme Audit,C=DE")
    public = tmp_path / "k" / PUBLIC_DIR
    assert [p.name for p in files[-3:]] == [PDF_CERT, ATTESTATION_PUB, TRUST_FILE] and all(
        p.parent == public for p in files[-3:]
    )
    assert not [p for p in public.iterdir() if b"PRIVATE" in p.read_bytes()]
    keys = load_signing_keys(tmp_path / "k")
    assert keys.subject == "CN=Jane Doe,O=Acme Audit,C=DE"
    assert attestation_key_of_certificate(keys.pdf_cert) == keys.attestation_key_id
    trust = (public / TRUST_FILE).read_text()
    assert f"{keys.certificate_fingerprint}  pdf-certificate" in trust
    assert f"{keys.attestation_key_id}  attestation-key" in trust


def test_default_subjects_tell_key_sets_apart(tmp_path):
    """Regression: every key pair had the subject 'cvaudit report signer'."""
    keygen(tmp_path / "a")
    keygen(tmp_path / "b")
    a, b = load_signing_keys(tmp_path / "a"), load_signing_keys(tmp_path / "b")
    assert a.subject != b.subject
    assert a.attestation_key_id.split(":")[1][:16] in a.subject


@pytest.mark.parametrize(("subject", "message"), [("O=Acme", "needs a CN"), ("not a name", "not a distinguished name")])
def test_keygen_bad_subject(tmp_path, subject, message):
    with pytest.raises(SigningError, match=message):
        keygen(tmp_path / "k", subject=subject)
    assert not (tmp_path / "k").exists()


def test_certificate_naming_another_attestation_key_is_refused(own_keys, tmp_path):
    other = tmp_path / "other"
    keygen(other)
    for name in (ATTESTATION_KEY, ATTESTATION_PUB):
        shutil.copy2(other / name, own_keys / name)
    with pytest.raises(SigningError, match="not one key set"):
        load_signing_keys(own_keys)


# ------------------------------------------------------------ the CA of keygen (issue 30)


def _ext(cert, kind):
    from cryptography import x509

    return cert.extensions.get_extension_for_class(getattr(x509, kind)).value


def test_keygen_issues_the_signing_certificate_from_a_ca(key_dir):
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    from reports.certificates import DOCUMENT_SIGNING_OID
    from reports.keys import CA_CERT

    ca = x509.load_pem_x509_certificate((key_dir / CA_CERT).read_bytes())
    cert = x509.load_pem_x509_certificate((key_dir / PDF_CERT).read_bytes())
    assert _ext(ca, "BasicConstraints").ca and _ext(ca, "BasicConstraints").path_length == 0
    usage = _ext(ca, "KeyUsage")
    assert usage.key_cert_sign and usage.crl_sign and not usage.digital_signature
    assert ca.issuer == ca.subject and cert.issuer == ca.subject != cert.subject
    cert.verify_directly_issued_by(ca)
    assert not _ext(cert, "BasicConstraints").ca
    usage = _ext(cert, "KeyUsage")
    assert usage.digital_signature and usage.content_commitment and not usage.key_cert_sign
    assert set(_ext(cert, "ExtendedKeyUsage")) == {ExtendedKeyUsageOID.EMAIL_PROTECTION, DOCUMENT_SIGNING_OID}
    assert (key_dir / PUBLIC_DIR / CA_CERT).read_bytes() == (key_dir / CA_CERT).read_bytes()
    # the CA's private key is never written: only the two signing keys are private keys
    private = sorted(p.name for p in key_dir.rglob("*") if p.is_file() and b"PRIVATE KEY" in p.read_bytes())
    assert private == sorted([ATTESTATION_KEY, PDF_KEY])
    assert load_signing_keys(key_dir).chain == (ca,)


def test_openssl_accepts_the_chain_for_signing(key_dir):
    """openssl builds the path from the CA to the signing certificate (S/MIME signing purpose, as NSS checks)."""
    import subprocess

    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl not installed")
    done = subprocess.run(
        [openssl, "verify", "-purpose", "smimesign", "-CAfile", key_dir / "ca.cert.pem", key_dir / PDF_CERT],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and done.stdout.strip().endswith(": OK"), done.stdout + done.stderr


def test_trust_file_lists_the_ca_first(key_dir):
    from cryptography import x509

    from reports.keys import CA_CERT, certificate_fingerprint

    ca = x509.load_pem_x509_certificate((key_dir / CA_CERT).read_bytes())
    lines = [line for line in (key_dir / PUBLIC_DIR / TRUST_FILE).read_text().splitlines() if line.startswith("sha")]
    assert [line.split()[1] for line in lines] == ["ca-certificate", "pdf-certificate", "attestation-key"]
    assert lines[0].split()[0] == certificate_fingerprint(ca)


def test_keygen_refuses_to_overwrite_a_ca(tmp_path):
    folder = tmp_path / "k"
    keygen(folder)
    for name in (PDF_KEY, PDF_CERT, ATTESTATION_KEY, ATTESTATION_PUB, "pdf-signing.pub.pem"):
        (folder / name).unlink()
    with pytest.raises(SigningError, match="ca.cert.pem: already exists"):
        keygen(folder)


def test_folder_of_the_old_keygen_still_loads(key_dir, tmp_path):
    from key_folders import legacy_folder

    folder = legacy_folder(shutil.copytree(key_dir, tmp_path / "old"))
    keys = load_signing_keys(folder)
    assert keys.chain == () and keys.anchor == keys.pdf_cert


def test_issued_certificate_without_its_ca_is_refused(own_keys):
    (own_keys / "ca.cert.pem").unlink()
    with pytest.raises(SigningError) as info:
        load_signing_keys(own_keys)
    assert "not self-signed, and no issuer is given" in _one_line(info) and "ca.cert.pem" in _one_line(info)


def test_another_ca_is_refused(own_keys, tmp_path):
    keygen(tmp_path / "other")
    shutil.copy2(tmp_path / "other" / "ca.cert.pem", own_keys / "ca.cert.pem")
    with pytest.raises(SigningError) as info:
        load_signing_keys(own_keys)
    assert "does not chain to" in _one_line(info) and "is not issued by" in _one_line(info)


def test_a_non_ca_issuer_is_refused(own_keys):
    """A leaf certificate named as the issuer (CA:FALSE) is not a CA, whatever it signed."""
    shutil.copy2(own_keys / PDF_CERT, own_keys / "ca.cert.pem")
    with pytest.raises(SigningError) as info:
        load_signing_keys(own_keys)
    assert "is not a CA" in _one_line(info)


def test_an_organisations_chain_loads(key_dir, tmp_path):
    from key_folders import org_folder

    keys = load_signing_keys(org_folder(key_dir, tmp_path / "org"))
    assert [c.subject.rfc4514_string() for c in keys.chain] == [
        "O=Acme Audit,CN=Acme Document Signing CA",
        "O=Acme Audit,CN=Acme Root CA",
    ]
    assert keys.anchor == keys.chain[-1]
