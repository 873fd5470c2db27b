"""Offline signing keys: creation (``cvaudit keygen``) and checked loading.

A key folder holds two key pairs, each for one job:

=========================  ==================================================
``pdf-signing.key.pem``    ECDSA P-256 private key (PKCS#8, mode 0600) that
                           signs ``report.pdf`` (PAdES).
``pdf-signing.cert.pem``   its self-signed X.509 certificate, embedded in the
                           PDF signature.
``pdf-signing.pub.pem``    its public key.
``attestation.key.pem``    Ed25519 private key (PKCS#8, mode 0600) that signs
                           ``attestation.dsse.json``.
``attestation.pub.pem``    its public key; verification needs only this file.
=========================  ==================================================

Both private keys are encrypted with the same passphrase when one is given
(the CLI reads it from ``CVAUDIT_KEY_PASSPHRASE``). Nothing here touches the
network. Every problem with a key folder is reported as a one-line
:class:`SigningError` naming the file.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from audit.contract.errors import CvauditError
from reports.atomic import atomic_write_bytes

__all__ = [
    "ATTESTATION_KEY",
    "ATTESTATION_PUB",
    "PASSPHRASE_ENV",
    "PDF_CERT",
    "PDF_KEY",
    "PDF_PUB",
    "SigningError",
    "SigningKeys",
    "key_id",
    "keygen",
    "load_attestation_public_key",
    "load_signing_keys",
    "passphrase_from_env",
]

PDF_KEY = "pdf-signing.key.pem"
PDF_CERT = "pdf-signing.cert.pem"
PDF_PUB = "pdf-signing.pub.pem"
ATTESTATION_KEY = "attestation.key.pem"
ATTESTATION_PUB = "attestation.pub.pem"

_CERT_DAYS = 3 * 365
_PEM_PUBLIC = dict(encoding=serialization.Encoding.PEM, format=serialization.PublicFormat.SubjectPublicKeyInfo)


#: The environment variable holding the passphrase of encrypted private keys.
PASSPHRASE_ENV = "CVAUDIT_KEY_PASSPHRASE"


class SigningError(CvauditError):
    """A key folder cannot be used; the message is one line naming the file."""


def passphrase_from_env() -> bytes | None:
    """The key passphrase from ``CVAUDIT_KEY_PASSPHRASE``, or ``None`` if unset or empty."""
    value = os.environ.get(PASSPHRASE_ENV)
    return value.encode("utf-8") if value else None


@dataclass(frozen=True)
class SigningKeys:
    """Checked, decrypted keys loaded from a key folder.

    Attributes:
        key_dir: The folder the keys came from.
        pdf_key: ECDSA P-256 private key for the PDF signature.
        pdf_cert: Its certificate (public key checked to match ``pdf_key``).
        attestation_key: Ed25519 private key for the DSSE attestation.
    """

    key_dir: Path
    pdf_key: ec.EllipticCurvePrivateKey
    pdf_cert: x509.Certificate
    attestation_key: ed25519.Ed25519PrivateKey

    @property
    def attestation_public_pem(self) -> bytes:
        """The attestation public key as a SubjectPublicKeyInfo PEM."""
        return self.attestation_key.public_key().public_bytes(**_PEM_PUBLIC)


def keygen(
    out_dir: str | os.PathLike[str],
    *,
    passphrase: bytes | None = None,
    common_name: str = "cvaudit report signer",
    overwrite: bool = False,
) -> list[Path]:
    """Create a key folder for signing reports, fully offline.

    Args:
        out_dir: Folder to create or fill (created with mode 0700).
        passphrase: Encrypts both private keys when given (and non-empty).
        common_name: Subject CN of the self-signed PDF-signing certificate.
        overwrite: Replace existing key files instead of refusing.

    Returns:
        The five files written, in the order of the module table.

    Raises:
        SigningError: A key file already exists and ``overwrite`` is false.
    """
    folder = Path(out_dir)
    names = (PDF_KEY, PDF_CERT, PDF_PUB, ATTESTATION_KEY, ATTESTATION_PUB)
    if not overwrite:
        for name in names:
            if (folder / name).exists():
                raise SigningError(f"{folder / name}: already exists; refusing to overwrite a signing key")
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    private = dict(encoding=serialization.Encoding.PEM, format=serialization.PrivateFormat.PKCS8)

    pdf_key = ec.generate_private_key(ec.SECP256R1())
    cert = _self_signed_certificate(pdf_key, common_name)
    att_key = ed25519.Ed25519PrivateKey.generate()
    contents = (
        (PDF_KEY, pdf_key.private_bytes(encryption_algorithm=encryption, **private), 0o600),
        (PDF_CERT, cert.public_bytes(serialization.Encoding.PEM), 0o644),
        (PDF_PUB, pdf_key.public_key().public_bytes(**_PEM_PUBLIC), 0o644),
        (ATTESTATION_KEY, att_key.private_bytes(encryption_algorithm=encryption, **private), 0o600),
        (ATTESTATION_PUB, att_key.public_key().public_bytes(**_PEM_PUBLIC), 0o644),
    )
    return [atomic_write_bytes(folder / name, data, mode=mode) for name, data, mode in contents]


def _self_signed_certificate(key: ec.EllipticCurvePrivateKey, common_name: str) -> x509.Certificate:
    """A self-signed certificate fit for document signing."""
    name = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, common_name), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cvaudit")]
    )
    now = _dt.datetime.now(_dt.timezone.utc)
    public = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(minutes=5))
        .not_valid_after(now + _dt.timedelta(days=_CERT_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )


def load_signing_keys(key_dir: str | os.PathLike[str], passphrase: bytes | str | None = None) -> SigningKeys:
    """Load and check a key folder before anything is written.

    Args:
        key_dir: A folder made by :func:`keygen` (or laid out the same way).
        passphrase: The passphrase of encrypted keys; ignored for plain keys.

    Returns:
        The decrypted keys.

    Raises:
        SigningError: The folder or a file is missing, unreadable, encrypted
            without a passphrase, the passphrase is wrong, a key type is
            unsupported, the certificate is not valid now, or the PDF key
            does not match its certificate.
    """
    folder = Path(key_dir)
    if not folder.is_dir():
        raise SigningError(f"{folder}: key folder does not exist (create one with `cvaudit keygen --out {folder}`)")
    if isinstance(passphrase, str):
        passphrase = passphrase.encode()
    pdf_key = _load_private_key(folder / PDF_KEY, passphrase)
    if not isinstance(pdf_key, ec.EllipticCurvePrivateKey) or pdf_key.curve.name != "secp256r1":
        raise SigningError(f"{folder / PDF_KEY}: unsupported key type {_describe(pdf_key)}; expected ECDSA P-256")
    cert = _load_certificate(folder / PDF_CERT)
    own = pdf_key.public_key().public_bytes(**_PEM_PUBLIC)
    if cert.public_key().public_bytes(**_PEM_PUBLIC) != own:
        raise SigningError(f"{folder / PDF_KEY}: private key does not match the certificate {folder / PDF_CERT}")
    now = _dt.datetime.now(_dt.timezone.utc)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise SigningError(
            f"{folder / PDF_CERT}: certificate is not valid now (valid {cert.not_valid_before_utc:%Y-%m-%d} "
            f"to {cert.not_valid_after_utc:%Y-%m-%d})"
        )
    att_key = _load_private_key(folder / ATTESTATION_KEY, passphrase)
    if not isinstance(att_key, ed25519.Ed25519PrivateKey):
        raise SigningError(f"{folder / ATTESTATION_KEY}: unsupported key type {_describe(att_key)}; expected Ed25519")
    pub_path = folder / ATTESTATION_PUB
    if pub_path.exists():
        pub = load_attestation_public_key(pub_path)
        if pub.public_bytes(**_PEM_PUBLIC) != att_key.public_key().public_bytes(**_PEM_PUBLIC):
            raise SigningError(f"{folder / ATTESTATION_KEY}: private key does not match {pub_path}")
    return SigningKeys(key_dir=folder, pdf_key=pdf_key, pdf_cert=cert, attestation_key=att_key)


def load_attestation_public_key(path: str | os.PathLike[str]) -> ed25519.Ed25519PublicKey:
    """Load an Ed25519 public key PEM (the only key verification needs).

    Args:
        path: A SubjectPublicKeyInfo PEM file such as ``attestation.pub.pem``.

    Returns:
        The public key.

    Raises:
        SigningError: The file is missing, not a PEM public key, or not Ed25519.
    """
    path = Path(path)
    data = _read(path)
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise SigningError(f"{path}: not a PEM public key ({_first_line(exc)})") from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise SigningError(f"{path}: unsupported key type {_describe(key)}; expected Ed25519")
    return key


def key_id(public_key: ed25519.Ed25519PublicKey) -> str:
    """The DSSE ``keyid``: SHA-256 of the public key's DER SubjectPublicKeyInfo.

    Args:
        public_key: The attestation public key.

    Returns:
        ``"sha256:<hex>"``, the same value ``openssl pkey -pubin -outform DER |
        sha256sum`` gives.
    """
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(der).hexdigest()


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise SigningError(f"{path}: missing (expected in a folder made by `cvaudit keygen`)") from None
    except OSError as exc:
        raise SigningError(f"{path}: cannot be read ({exc.strerror})") from None


def _load_private_key(path: Path, passphrase: bytes | None):
    data = _read(path)
    if b"PRIVATE KEY" not in data:
        raise SigningError(f"{path}: not a PEM private key")
    try:
        return serialization.load_pem_private_key(data, password=passphrase or None)
    except TypeError:
        if passphrase:  # the key is not encrypted: the passphrase is not needed
            return _load_private_key(path, None)
        raise SigningError(f"{path}: key is encrypted; set CVAUDIT_KEY_PASSPHRASE") from None
    except UnsupportedAlgorithm:
        raise SigningError(f"{path}: unsupported key type") from None
    except ValueError as exc:
        if b"ENCRYPTED" in data:
            raise SigningError(f"{path}: wrong passphrase") from None
        raise SigningError(f"{path}: cannot be loaded ({_first_line(exc)})") from None


def _load_certificate(path: Path) -> x509.Certificate:
    data = _read(path)
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise SigningError(f"{path}: not a PEM certificate ({_first_line(exc)})") from None


def _describe(key: object) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return f"ECDSA {key.curve.name}"
    return type(key).__name__.lstrip("_").replace("PrivateKey", "").replace("PublicKey", "") or "unknown"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
