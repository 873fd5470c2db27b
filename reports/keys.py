"""Offline signing keys: creation (``cvaudit keygen``) and checked loading.

A key folder holds two key pairs, each for one job, and the certificate of the
CA that issued the PDF-signing certificate:

=========================  ==================================================
``pdf-signing.key.pem``    ECDSA P-256 private key (PKCS#8, mode 0600) that
                           signs ``report.pdf`` (PAdES).
``pdf-signing.cert.pem``   its X.509 certificate, issued by ``ca.cert.pem``
                           and embedded in the PDF signature.
``ca.cert.pem``            the issuer: the small CA ``cvaudit keygen`` makes
                           (its private key is thrown away after issuing, see
                           :mod:`reports.certificates`), or an organisation's
                           chain, issuer first and root last. The root is the
                           trust anchor reviewers import. Folders made by
                           cvaudit before the CA have no such file and a
                           self-signed certificate; they still work, anchored
                           on the certificate's own fingerprint.
``pdf-signing.pub.pem``    its public key.
``attestation.key.pem``    Ed25519 private key (PKCS#8, mode 0600) that signs
                           ``attestation.dsse.json``.
``attestation.pub.pem``    its public key.
``public/``                the shareable public bundle for reviewers: the CA
                           and signing certificates, the attestation public
                           key and ``trust.txt`` (the fingerprints, in the
                           format ``cvaudit verify --trust`` reads).
=========================  ==================================================

A key set is identified by two fingerprints (:func:`certificate_fingerprint`
of the certificate, :func:`key_id` of the attestation public key), both
``sha256:<hex>``. They are bound to each other in both directions: the
certificate carries the attestation key's fingerprint in a non-critical
extension (:data:`ATTESTATION_KEY_OID`), and every attestation names the
certificate's fingerprint, so that a verifier can tell that the PDF signature
and the attestation come from the same key set. The fingerprint of the CA
certificate (the trust anchor) is a third one: trusting it trusts whatever
certificate that CA issued.

Private keys are checked like ssh checks them: an unencrypted private key
that group or others may read is refused (``chmod 600`` fixes it); an
encrypted one may be looser but gets a :class:`KeyPermissionWarning`.

Both private keys are encrypted with the same passphrase when one is given
(the CLI reads it from ``CVAUDIT_KEY_PASSPHRASE``). Nothing here touches the
network. Every problem with a key folder is reported as a one-line
:class:`SigningError` naming the file.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import stat
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from audit.contract.errors import CvauditError, echo
from audit.contract.files import check_path_name, read_bounded
from reports.atomic import atomic_write_bytes
from reports.certificates import ATTESTATION_KEY_OID, ca_name_for, check_chain, issue_signing_certificate, make_ca

__all__ = [
    "ATTESTATION_KEY",
    "ATTESTATION_KEY_OID",
    "ATTESTATION_PUB",
    "CA_CERT",
    "MAX_KEY_FILE",
    "PASSPHRASE_ENV",
    "PDF_CERT",
    "PDF_KEY",
    "PDF_PUB",
    "PUBLIC_DIR",
    "TRUST_FILE",
    "KeyPermissionWarning",
    "SigningError",
    "SigningKeys",
    "attestation_key_of_certificate",
    "certificate_fingerprint",
    "key_id",
    "keygen",
    "load_attestation_public_key",
    "load_signing_keys",
    "parse_subject",
    "passphrase_from_env",
]

PDF_KEY = "pdf-signing.key.pem"
PDF_CERT = "pdf-signing.cert.pem"
PDF_PUB = "pdf-signing.pub.pem"
ATTESTATION_KEY = "attestation.key.pem"
ATTESTATION_PUB = "attestation.pub.pem"
CA_CERT = "ca.cert.pem"
PUBLIC_DIR = "public"
TRUST_FILE = "trust.txt"
#: Largest key or certificate file read (bytes); a PEM key is under 4 KiB, a long chain a few dozen KiB.
MAX_KEY_FILE = 1 << 20

_PEM_PUBLIC = dict(encoding=serialization.Encoding.PEM, format=serialization.PublicFormat.SubjectPublicKeyInfo)


#: The environment variable holding the passphrase of encrypted private keys.
PASSPHRASE_ENV = "CVAUDIT_KEY_PASSPHRASE"


class SigningError(CvauditError):
    """A key folder cannot be used; the message is one line naming the file."""


class KeyPermissionWarning(UserWarning):
    """An encrypted private key that group or others may read (it is still used)."""


def passphrase_from_env() -> bytes | None:
    """The key passphrase from ``CVAUDIT_KEY_PASSPHRASE``, or ``None`` if unset or empty."""
    value = os.environ.get(PASSPHRASE_ENV)
    if not value:
        return None
    # the variable's bytes as the system gave them: a passphrase that is not UTF-8 (os.environ holds its
    # undecodable bytes as surrogates) is still the passphrase the key was encrypted with
    return os.fsencode(value) if os.name == "posix" else value.encode("utf-8")


@dataclass(frozen=True)
class SigningKeys:
    """Checked, decrypted keys loaded from a key folder.

    Attributes:
        key_dir: The folder the keys came from.
        pdf_key: ECDSA P-256 private key for the PDF signature.
        pdf_cert: Its certificate (public key checked to match ``pdf_key``).
        attestation_key: Ed25519 private key for the DSSE attestation.
        warnings: Problems that did not stop loading (loose permissions).
        chain: The certificates that issued ``pdf_cert`` (``ca.cert.pem``),
            issuer first, root last; empty for an older, self-signed folder.
    """

    key_dir: Path
    pdf_key: ec.EllipticCurvePrivateKey
    pdf_cert: x509.Certificate
    attestation_key: ed25519.Ed25519PrivateKey
    warnings: tuple[str, ...] = field(default=())
    chain: tuple[x509.Certificate, ...] = field(default=())

    @property
    def anchor(self) -> x509.Certificate:
        """The trust anchor reviewers pin: the chain's root, or the self-signed certificate itself."""
        return self.chain[-1] if self.chain else self.pdf_cert

    @property
    def attestation_public_pem(self) -> bytes:
        """The attestation public key as a SubjectPublicKeyInfo PEM."""
        return self.attestation_key.public_key().public_bytes(**_PEM_PUBLIC)

    @property
    def certificate_fingerprint(self) -> str:
        """``sha256:<hex>`` of the PDF-signing certificate (DER)."""
        return certificate_fingerprint(self.pdf_cert)

    @property
    def attestation_key_id(self) -> str:
        """``sha256:<hex>`` of the attestation public key (the DSSE ``keyid``)."""
        return key_id(self.attestation_key.public_key())

    @property
    def subject(self) -> str:
        """The certificate subject as an RFC 4514 string (``CN=...,O=...``)."""
        return self.pdf_cert.subject.rfc4514_string()


def parse_subject(subject: str) -> x509.Name:
    """Parse an RFC 4514 distinguished name such as ``"CN=Jane Doe,O=Acme Audit"``.

    Args:
        subject: The name; it must contain a ``CN``.

    Returns:
        The X.509 name.

    Raises:
        SigningError: Not a distinguished name, or no ``CN``.
    """
    try:
        name = x509.Name.from_rfc4514_string(subject)
    except ValueError as exc:
        raise SigningError(
            f"--subject {echo(subject)}: not a distinguished name such as 'CN=Jane Doe,O=Acme' ({_first_line(exc)})"
        ) from None
    if not name.get_attributes_for_oid(NameOID.COMMON_NAME):
        raise SigningError(f"--subject {echo(subject)}: needs a CN (common name), e.g. 'CN=Jane Doe,O=Acme'")
    return name


def keygen(
    out_dir: str | os.PathLike[str],
    *,
    passphrase: bytes | None = None,
    subject: str | None = None,
    overwrite: bool = False,
) -> list[Path]:
    """Create a key folder for signing reports, fully offline.

    Args:
        out_dir: Folder to create or fill (created with mode 0700).
        passphrase: Encrypts both private keys when given (and non-empty).
        subject: The certificate subject as an RFC 4514 name
            (``"CN=Jane Doe,O=Acme Audit"``), the signer's identity shown by
            every verifier. ``None`` gives ``CN=cvaudit report signer <first 16
            hex digits of the attestation key fingerprint>,O=cvaudit``, which
            tells key sets apart but names nobody.
        overwrite: Replace existing key files instead of refusing.

    The PDF-signing certificate is issued by a new CA (``ca.cert.pem``)
    whose private key is used for that one certificate and never written
    (see :mod:`reports.certificates`).

    Returns:
        The files written: the six of the module table, then the public
        bundle (``public/ca.cert.pem``, ``public/pdf-signing.cert.pem``,
        ``public/attestation.pub.pem``, ``public/trust.txt``).

    Raises:
        SigningError: A key file already exists and ``overwrite`` is false, or
            ``subject`` is not a distinguished name with a CN.
    """
    folder = Path(out_dir)
    names = (PDF_KEY, PDF_CERT, CA_CERT, PDF_PUB, ATTESTATION_KEY, ATTESTATION_PUB)
    name = parse_subject(subject) if subject is not None else None
    if not overwrite:
        for file in names:
            if (folder / file).exists():
                raise SigningError(f"{folder / file}: already exists; refusing to overwrite a signing key")
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    private = dict(encoding=serialization.Encoding.PEM, format=serialization.PrivateFormat.PKCS8)

    pdf_key = ec.generate_private_key(ec.SECP256R1())
    att_key = ed25519.Ed25519PrivateKey.generate()
    att_id = key_id(att_key.public_key())
    if name is None:
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, f"cvaudit report signer {att_id.split(':')[1][:16]}"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cvaudit"),
            ]
        )
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = make_ca(ca_key, ca_name_for(name))
    cert = issue_signing_certificate(pdf_key.public_key(), name, att_id, ca=ca, ca_key=ca_key)
    del ca_key  # never written: no further certificate can be issued under this CA
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    ca_pem = ca.public_bytes(serialization.Encoding.PEM)
    att_pub_pem = att_key.public_key().public_bytes(**_PEM_PUBLIC)
    contents = (
        (PDF_KEY, pdf_key.private_bytes(encryption_algorithm=encryption, **private), 0o600),
        (PDF_CERT, cert_pem, 0o644),
        (CA_CERT, ca_pem, 0o644),
        (PDF_PUB, pdf_key.public_key().public_bytes(**_PEM_PUBLIC), 0o644),
        (ATTESTATION_KEY, att_key.private_bytes(encryption_algorithm=encryption, **private), 0o600),
        (ATTESTATION_PUB, att_pub_pem, 0o644),
    )
    written = [atomic_write_bytes(folder / file, data, mode=mode) for file, data, mode in contents]
    public = folder / PUBLIC_DIR
    public.mkdir(mode=0o755, exist_ok=True)
    trust = trust_file_text(cert, att_id, ca=ca)
    bundle = ((CA_CERT, ca_pem), (PDF_CERT, cert_pem), (ATTESTATION_PUB, att_pub_pem), (TRUST_FILE, trust.encode()))
    for file, data in bundle:
        written.append(atomic_write_bytes(public / file, data, mode=0o644))
    return written


def trust_file_text(cert: x509.Certificate, attestation_key_id: str, *, ca: x509.Certificate | None = None) -> str:
    """The ``trust.txt`` of a key set: its fingerprints, in the format ``cvaudit verify --trust`` reads.

    Args:
        cert: The PDF-signing certificate.
        attestation_key_id: ``sha256:<hex>`` of the attestation public key.
        ca: The CA certificate that issued ``cert``, if any.

    Returns:
        Comment lines naming the subject and how to check the fingerprints with
        openssl, then one fingerprint per line: the CA (first, when given),
        the PDF certificate and the attestation key.
    """
    subject = cert.subject.rfc4514_string()
    lines = [
        f"# cvaudit trust anchors for the report signer {subject}",
        "# Check them against what the signer tells you over another channel:",
    ]
    if ca is not None:
        lines.append("#   openssl x509 -in ca.cert.pem -outform DER | sha256sum")
    lines += [
        "#   openssl x509 -in pdf-signing.cert.pem -outform DER | sha256sum",
        "#   openssl pkey -pubin -in attestation.pub.pem -outform DER | sha256sum",
    ]
    if ca is not None:
        lines.append(f"{certificate_fingerprint(ca)}  ca-certificate {ca.subject.rfc4514_string()}")
    lines += [
        f"{certificate_fingerprint(cert)}  pdf-certificate {subject}",
        f"{attestation_key_id}  attestation-key {subject}",
    ]
    return "\n".join(lines) + "\n"


def certificate_fingerprint(cert: x509.Certificate) -> str:
    """``sha256:<hex>`` of a certificate's DER encoding.

    Args:
        cert: Any X.509 certificate.

    Returns:
        The fingerprint ``openssl x509 -outform DER | sha256sum`` gives (as
        ``sha256:`` plus lower-case hex).
    """
    return "sha256:" + hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def attestation_key_of_certificate(cert: x509.Certificate) -> str | None:
    """The attestation key fingerprint a certificate names (:data:`ATTESTATION_KEY_OID`), if any.

    Args:
        cert: A PDF-signing certificate.

    Returns:
        ``sha256:<hex>``, or ``None`` for a certificate without the extension
        (made by another tool or an older cvaudit) or with a malformed one.
    """
    try:
        value = cert.extensions.get_extension_for_oid(ATTESTATION_KEY_OID).value
    except (x509.ExtensionNotFound, ValueError):
        return None
    raw = getattr(value, "value", b"")
    if len(raw) < 2 or raw[0] != 0x0C or raw[1] != len(raw) - 2:
        return None
    try:
        text = raw[2:].decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text if text.startswith("sha256:") and len(text) == 71 else None


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
            unsupported, an unencrypted private key is readable by group or
            others, the certificate is not valid now, the PDF key does not
            match its certificate, or the certificate does not chain to
            ``ca.cert.pem`` (or, without that file, is not self-signed).

    Warns:
        KeyPermissionWarning: An encrypted private key is readable by group or
            others (also listed in :attr:`SigningKeys.warnings`).
    """
    folder = check_path_name(key_dir, what="key folder", error=SigningError)
    if os.path.lexists(folder) and not folder.is_dir():
        raise SigningError(f"{folder}: is not a folder; expected a key folder made by `cvaudit keygen`")
    if not folder.is_dir():
        raise SigningError(f"{folder}: key folder does not exist (create one with `cvaudit keygen --out {folder}`)")
    if isinstance(passphrase, str):
        passphrase = passphrase.encode()
    notes: list[str] = []
    pdf_key = _load_private_key(folder / PDF_KEY, passphrase, notes)
    if not isinstance(pdf_key, ec.EllipticCurvePrivateKey) or pdf_key.curve.name != "secp256r1":
        raise SigningError(f"{folder / PDF_KEY}: unsupported key type {_describe(pdf_key)}; expected ECDSA P-256")
    cert = _load_certificate(folder / PDF_CERT)
    own = pdf_key.public_key().public_bytes(**_PEM_PUBLIC)
    if cert.public_key().public_bytes(**_PEM_PUBLIC) != own:
        raise SigningError(f"{folder / PDF_KEY}: private key does not match the certificate {folder / PDF_CERT}")
    chain = _load_chain(folder / CA_CERT) if (folder / CA_CERT).exists() else []
    broken = check_chain(cert, chain)
    if broken is not None and chain:
        raise SigningError(f"{folder / PDF_CERT}: does not chain to {folder / CA_CERT}: {broken}")
    if broken is not None:
        raise SigningError(
            f"{folder / PDF_CERT}: {broken}; put the issuing CA certificates in {folder / CA_CERT} "
            "(issuer first, root last)"
        )
    now = _dt.datetime.now(_dt.timezone.utc)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise SigningError(
            f"{folder / PDF_CERT}: certificate is not valid now (valid {cert.not_valid_before_utc:%Y-%m-%d} "
            f"to {cert.not_valid_after_utc:%Y-%m-%d})"
        )
    att_key = _load_private_key(folder / ATTESTATION_KEY, passphrase, notes)
    if not isinstance(att_key, ed25519.Ed25519PrivateKey):
        raise SigningError(f"{folder / ATTESTATION_KEY}: unsupported key type {_describe(att_key)}; expected Ed25519")
    pub_path = folder / ATTESTATION_PUB
    if pub_path.exists():
        pub = load_attestation_public_key(pub_path)
        if pub.public_bytes(**_PEM_PUBLIC) != att_key.public_key().public_bytes(**_PEM_PUBLIC):
            raise SigningError(f"{folder / ATTESTATION_KEY}: private key does not match {pub_path}")
    named = attestation_key_of_certificate(cert)
    if named is not None and named != key_id(att_key.public_key()):
        raise SigningError(
            f"{folder / PDF_CERT}: the certificate names attestation key {named}, but {folder / ATTESTATION_KEY} "
            f"is {key_id(att_key.public_key())}: the two keys are not one key set"
        )
    for note in notes:
        warnings.warn(note, KeyPermissionWarning, stacklevel=2)
    return SigningKeys(
        key_dir=folder,
        pdf_key=pdf_key,
        pdf_cert=cert,
        attestation_key=att_key,
        warnings=tuple(notes),
        chain=tuple(chain),
    )


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
    """A key or certificate file, read with the bound :data:`MAX_KEY_FILE`.

    Opened once and checked on the descriptor (:func:`audit.contract.files.read_bounded`): a
    larger file, a folder, a character device such as ``/dev/zero``, a FIFO or a socket is
    refused before a byte is read.
    """
    if not os.path.lexists(path):
        raise SigningError(f"{path}: missing (expected in a folder made by `cvaudit keygen`)")
    return read_bounded(path, limit=MAX_KEY_FILE, what="key file", error=SigningError)


def _loose_mode(path: Path) -> int | None:
    """The permission bits of ``path`` when group or others may read or write it (POSIX), else None."""
    if os.name != "posix":
        return None
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return None
    return mode if mode & 0o077 else None


def _load_private_key(path: Path, passphrase: bytes | None, notes: list[str]):
    data = _read(path)
    if b"PRIVATE KEY" not in data:
        raise SigningError(f"{path}: not a PEM private key")
    loose = _loose_mode(path)
    encrypted = b"ENCRYPTED PRIVATE KEY" in data or b"Proc-Type: 4,ENCRYPTED" in data
    if loose is not None and not encrypted:
        raise SigningError(
            f"{path}: unencrypted private key is accessible by group or others (mode {loose:04o}); "
            f"run `chmod 600 {path}` (or encrypt it with a passphrase)"
        )
    if loose is not None:
        notes.append(
            f"{path}: private key is accessible by group or others (mode {loose:04o}); it is encrypted, "
            f"but `chmod 600 {path}` is safer"
        )
    try:
        return serialization.load_pem_private_key(data, password=passphrase or None)
    except TypeError:
        if passphrase:  # the key is not encrypted: the passphrase is not needed
            return _load_private_key(path, None, [])
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


def _load_chain(path: Path) -> list[x509.Certificate]:
    data = _read(path)
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise SigningError(f"{path}: not PEM certificates ({_first_line(exc)})") from None


def _describe(key: object) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return f"ECDSA {key.curve.name}"
    return type(key).__name__.lstrip("_").replace("PrivateKey", "").replace("PublicKey", "") or "unknown"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
