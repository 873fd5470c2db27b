"""X.509 certificates of a key folder: the small CA ``cvaudit keygen`` makes, and chain checks.

``cvaudit keygen`` makes a one-certificate CA (``ca.cert.pem``: CA:TRUE,
path length 0, keyCertSign and cRLSign) and issues the PDF-signing certificate
from it (CA:FALSE, digitalSignature and nonRepudiation, extended key usage
emailProtection and documentSigning, RFC 9336). The CA's private key signs that
one certificate and is then thrown away, so nobody, not even the signer, can
issue another certificate under it. A reviewer who imports ``ca.cert.pem`` into
an NSS database (or any trust store) sees the PDF signature as trusted, and
``cvaudit verify`` accepts the CA's fingerprint as a trust anchor.

emailProtection is there because NSS (and so poppler's ``pdfsig``) checks a
PDF signer for the e-mail signer usage, which a certificate with an extended
key usage must name.

Older key folders hold a self-signed certificate (CA:FALSE) and no
``ca.cert.pem``; they still load, sign and verify by the certificate's
fingerprint. A folder may instead hold an organisation's certificate with
its issuing chain in ``ca.cert.pem`` (issuer first, root last):
:func:`check_chain` checks that each certificate is issued by the next.
"""

from __future__ import annotations

import datetime as _dt

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

__all__ = [
    "ATTESTATION_KEY_OID",
    "DOCUMENT_SIGNING_OID",
    "ca_name_for",
    "check_chain",
    "is_ca",
    "is_self_signed",
    "issue_signing_certificate",
    "make_ca",
]

#: Extension of the PDF-signing certificate naming the attestation key's
#: fingerprint (UTF8String ``sha256:<hex>``). A UUID-based OID (ITU-T X.667,
#: arc 2.25), so it needs no registration; non-critical, other tools ignore it.
ATTESTATION_KEY_OID = x509.ObjectIdentifier("2.25.4448436788810008238773743744737812543")
#: id-kp-documentSigning (RFC 9336).
DOCUMENT_SIGNING_OID = ObjectIdentifier("1.3.6.1.5.5.7.3.36")

_CERT_DAYS = 3 * 365


def _key_usage(**set_bits: bool) -> x509.KeyUsage:
    bits = dict.fromkeys(
        (
            "digital_signature",
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "key_cert_sign",
            "crl_sign",
            "encipher_only",
            "decipher_only",
        ),
        False,
    )
    bits.update(set_bits)
    return x509.KeyUsage(**bits)


def _validity(builder: x509.CertificateBuilder, days: int) -> x509.CertificateBuilder:
    now = _dt.datetime.now(_dt.timezone.utc)
    return builder.not_valid_before(now - _dt.timedelta(minutes=5)).not_valid_after(now + _dt.timedelta(days=days))


def ca_name_for(signer: x509.Name) -> x509.Name:
    """The CA's subject: the signer's name with ``(cvaudit CA)`` after its common name.

    >>> ca_name_for(x509.Name.from_rfc4514_string("CN=Jane Doe,O=Acme")).rfc4514_string()
    'CN=Jane Doe (cvaudit CA),O=Acme'
    """
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, f"{attr.value} (cvaudit CA)")
            if attr.oid == NameOID.COMMON_NAME
            else attr
            for attr in signer
        ]
    )


def make_ca(key: ec.EllipticCurvePrivateKey, name: x509.Name) -> x509.Certificate:
    """A self-signed root: CA:TRUE with path length 0, keyCertSign and cRLSign only.

    Args:
        key: The CA's private key (thrown away by the caller after issuing).
        name: Its subject (and issuer).

    Returns:
        The CA certificate, valid a day longer than the certificate it issues.
    """
    public = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )
    return _validity(builder, _CERT_DAYS + 1).sign(key, hashes.SHA256())


def issue_signing_certificate(
    public: ec.EllipticCurvePublicKey,
    name: x509.Name,
    attestation_key_id: str,
    *,
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
) -> x509.Certificate:
    """The PDF-signing certificate, issued by ``ca`` and naming its attestation key.

    Args:
        public: The PDF-signing public key.
        name: The signer's subject.
        attestation_key_id: ``sha256:<hex>`` of the attestation public key
            (:data:`ATTESTATION_KEY_OID`).
        ca: The issuing CA certificate.
        ca_key: The CA's private key.

    Returns:
        A certificate with CA:FALSE, digitalSignature and nonRepudiation
        (critical), extended key usage emailProtection and documentSigning.
    """
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(ca.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True, content_commitment=True), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION, DOCUMENT_SIGNING_OID]), critical=False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
        .add_extension(x509.UnrecognizedExtension(ATTESTATION_KEY_OID, _der_utf8(attestation_key_id)), critical=False)
    )
    return _validity(builder, _CERT_DAYS).sign(ca_key, hashes.SHA256())


def _der_utf8(text: str) -> bytes:
    """DER encoding of an ASN.1 UTF8String (short texts only)."""
    data = text.encode("utf-8")
    if len(data) >= 128:
        raise ValueError("text too long for a short-form DER length")
    return bytes([0x0C, len(data)]) + data


def is_ca(cert: x509.Certificate) -> bool:
    """Whether the certificate says CA:TRUE in its basic constraints."""
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def is_self_signed(cert: x509.Certificate) -> bool:
    """Whether the certificate's own public key verifies its signature (and issuer equals subject)."""
    return cert.issuer == cert.subject and _issued_by(cert, cert)


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def check_chain(leaf: x509.Certificate, chain: list[x509.Certificate]) -> str | None:
    """Why ``leaf`` and its issuing ``chain`` (issuer first, root last) do not form a path, or None.

    Each certificate must be directly issued by the next one (names and
    signature), every certificate of the chain must be a CA, and the last must
    be self-signed. Validity periods and key usages are left to the verifiers
    (pyHanko, NSS), which check them at verification time.

    Args:
        leaf: The signing certificate.
        chain: Its issuers; empty means ``leaf`` must be self-signed.

    Returns:
        ``None`` when they chain, else one line saying where it breaks; a certificate whose
        names or extensions cannot be parsed (cryptography parses them on first use, so a file
        that loaded may still hold a damaged name) breaks the chain too.
    """
    try:
        return _chain_break(leaf, chain)
    except ValueError as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        return f"a certificate cannot be parsed ({reason})"


def _chain_break(leaf: x509.Certificate, chain: list[x509.Certificate]) -> str | None:
    if not chain:
        if is_self_signed(leaf):
            return None
        return f"the certificate is issued by {leaf.issuer.rfc4514_string()}, not self-signed, and no issuer is given"
    path = [leaf, *chain]
    for child, parent in zip(path, path[1:], strict=False):
        if not is_ca(parent):
            return f"{parent.subject.rfc4514_string()} is not a CA (basic constraints CA:FALSE or missing)"
        if not _issued_by(child, parent):
            return f"{child.subject.rfc4514_string()} is not issued by {parent.subject.rfc4514_string()}"
    if not is_self_signed(chain[-1]):
        return f"the last certificate, {chain[-1].subject.rfc4514_string()}, is not a self-signed root"
    return None
