"""Key folders as other tools or older cvaudit versions made them, built by hand for the tests.

``legacy_folder`` is what ``cvaudit keygen`` wrote before it made a CA: a
self-signed certificate with CA:FALSE and no ``ca.cert.pem``. ``org_folder``
holds an organisation's certificate issued by an intermediate CA under a root
(``ca.cert.pem``: intermediate, then root), without the attestation-key
extension, as a company PKI would issue it.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from reports.certificates import ATTESTATION_KEY_OID, DOCUMENT_SIGNING_OID
from reports.keys import CA_CERT, PDF_CERT, PDF_KEY, PUBLIC_DIR, TRUST_FILE, key_id, load_signing_keys, trust_file_text

SIGNING_USAGE = x509.KeyUsage(True, True, False, False, False, False, False, False, False)
CA_USAGE = x509.KeyUsage(False, False, False, False, False, True, True, False, False)


def _name(cn: str, org: str = "Acme Audit") -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn), x509.NameAttribute(NameOID.ORGANIZATION_NAME, org)])


def _builder(subject: x509.Name, issuer: x509.Name, public) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
    )


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _signing_key(folder: Path) -> ec.EllipticCurvePrivateKey:
    return serialization.load_pem_private_key((folder / PDF_KEY).read_bytes(), password=None)


def legacy_folder(keygen_folder: Path) -> Path:
    """Turn an unencrypted keygen folder into the pre-CA layout, in place (same keys)."""
    key = _signing_key(keygen_folder)
    attestation = key_id(load_signing_keys(keygen_folder).attestation_key.public_key())
    name = _name("Old Signer")
    text = attestation.encode()
    cert = (
        _builder(name, name, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(SIGNING_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.UnrecognizedExtension(ATTESTATION_KEY_OID, bytes([0x0C, len(text)]) + text), critical=False)
        .sign(key, hashes.SHA256())
    )
    for where in (keygen_folder, keygen_folder / PUBLIC_DIR):
        (where / CA_CERT).unlink()
        (where / PDF_CERT).write_bytes(_pem(cert))
    (keygen_folder / PUBLIC_DIR / TRUST_FILE).write_text(trust_file_text(cert, attestation))
    return keygen_folder


def org_folder(keygen_folder: Path, out: Path, *, usages=None) -> Path:
    """A copy of an unencrypted keygen folder whose certificate an organisation's PKI issued (extended key
    usages ``usages``; default: e-mail protection and document signing)."""
    shutil.copytree(keygen_folder, out)
    key = _signing_key(out)
    root_key, mid_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    root_name, mid_name = _name("Acme Root CA"), _name("Acme Document Signing CA")
    root = (
        _builder(root_name, root_name, root_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(CA_USAGE, critical=True)
        .sign(root_key, hashes.SHA256())
    )
    mid = (
        _builder(mid_name, root_name, mid_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(CA_USAGE, critical=True)
        .sign(root_key, hashes.SHA256())
    )
    cert = (
        _builder(_name("Jane Doe"), mid_name, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(SIGNING_USAGE, critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(usages or [ExtendedKeyUsageOID.EMAIL_PROTECTION, DOCUMENT_SIGNING_OID]),
            critical=False,
        )
        .sign(mid_key, hashes.SHA256())
    )
    for where in (out, out / PUBLIC_DIR):
        (where / CA_CERT).write_bytes(_pem(mid) + _pem(root))
        (where / PDF_CERT).write_bytes(_pem(cert))
    return out
