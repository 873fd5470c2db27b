"""Trust anchors for ``cvaudit verify``: which signers the reviewer trusts.

A signature only says who signed when the verifier knows the signer's key from
somewhere other than the report itself. The anchors come from:

- ``--key DIR``: a key folder made by ``cvaudit keygen`` or its public bundle
  (``DIR/public``); its ``ca.cert.pem``, ``pdf-signing.cert.pem`` and
  ``attestation.pub.pem`` are read (never a private key);
- ``--trust FILE`` (several allowed): a text file of fingerprints, one per
  line (``sha256:<64 hex digits>``, or the colon-separated upper-case form
  ``openssl ... -fingerprint -sha256`` prints; anything after the first word
  and lines starting with ``#`` are comments), such as ``public/trust.txt``
  from ``cvaudit keygen``; or a PEM file of certificates and/or public keys;
- ``CVAUDIT_TRUST``: the same files or folders, separated by ``os.pathsep``
  (``:`` on POSIX).

A fingerprint is SHA-256 over the DER encoding of a certificate, or of a
public key's SubjectPublicKeyInfo (for the attestation key, the DSSE
``keyid``). The fingerprint of a CA certificate (CA:TRUE, such as the
``ca.cert.pem`` of ``cvaudit keygen``) also trusts every certificate that
chains to it: :mod:`reports.verify` has pyHanko validate the path, using the
CA certificate given here or the copy embedded in the signature with that
fingerprint. Every problem with an anchor is a one-line :class:`SigningError`
(exit 2): a verifier that cannot read its anchors must not guess.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from audit.contract.errors import echo
from audit.contract.files import check_path_name, read_bounded
from reports.keys import (
    ATTESTATION_PUB,
    CA_CERT,
    PDF_CERT,
    SigningError,
    attestation_key_of_certificate,
    certificate_fingerprint,
)

__all__ = ["MAX_TRUST_FILE", "TRUST_ENV", "TrustAnchors", "load_anchors", "normalise_fingerprint"]

#: The environment variable naming trust files or key folders (os.pathsep-separated).
TRUST_ENV = "CVAUDIT_TRUST"

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_OPENSSL_LINE = re.compile(r"^\s*sha256\s+fingerprint=(\S+)", re.IGNORECASE)  # `openssl x509 -fingerprint -sha256`
#: Largest trust file, or public file in a key folder, read (bytes); refused before a byte is read.
MAX_TRUST_FILE = 1 << 20


@dataclass
class TrustAnchors:
    """The fingerprints a reviewer trusts, and where each came from.

    Attributes:
        fingerprints: ``sha256:<hex>`` -> a description of its source.
        vouched: attestation-key fingerprints named by a trusted certificate
            (:func:`reports.keys.attestation_key_of_certificate`) -> the
            certificate's fingerprint.
        sources: The anchors given, for messages.
        certificates: The trusted certificates given as files (fingerprint ->
            DER), for path validation when a signature does not embed them.
        paths: Each anchor's file or folder as given, with the option that named it
            (``--key``, ``--trust``, ``CVAUDIT_TRUST``), so that ``verify`` can tell an
            anchor that lies inside the report folder it checks.
    """

    fingerprints: dict[str, str] = field(default_factory=dict)
    vouched: dict[str, str] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)
    certificates: dict[str, bytes] = field(default_factory=dict)
    paths: list[tuple[str, Path]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.fingerprints)

    def trusts(self, fingerprint: str | None) -> bool:
        """Whether ``fingerprint`` is an anchor itself."""
        return fingerprint is not None and fingerprint in self.fingerprints

    def describe(self) -> str:
        """The sources in one short phrase."""
        return ", ".join(self.sources) or "none"

    def add(self, fingerprint: str, source: str) -> None:
        self.fingerprints.setdefault(fingerprint, source)

    def add_certificate(self, cert: x509.Certificate, source: str) -> None:
        fingerprint = certificate_fingerprint(cert)
        self.add(fingerprint, source)
        self.certificates.setdefault(fingerprint, cert.public_bytes(serialization.Encoding.DER))
        named = attestation_key_of_certificate(cert)
        if named is not None:
            self.vouched.setdefault(named, fingerprint)


def normalise_fingerprint(text: str) -> str | None:
    """``sha256:<hex>``, ``SHA256:AB:CD:...`` or bare hex -> ``sha256:<lower hex>``; None if not SHA-256.

    >>> normalise_fingerprint("AB:" * 31 + "AB")[:11]
    'sha256:abab'
    """
    value = text.strip()
    lower = value.lower()
    for prefix in ("sha256:", "sha256="):
        if lower.startswith(prefix):
            value = value[len(prefix) :]
            break
    digits = value.replace(":", "").lower()
    return "sha256:" + digits if _HEX64.match(digits) else None


def _spki_fingerprint(public_key) -> str:
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(der).hexdigest()


def _read(path: Path, what: str) -> bytes:
    """A trust file or a key folder's public file, read with the bound :data:`MAX_TRUST_FILE`.

    Opened once and checked on the descriptor (:func:`audit.contract.files.read_bounded`): a
    larger file, a folder, a character device such as ``/dev/zero``, a FIFO or a socket is
    refused before a byte is read; one line starting with ``what`` (``--trust``, ``--key``).
    """
    if not os.path.lexists(path):
        raise SigningError(f"{what} {path}: no such file")
    try:
        return read_bounded(path, limit=MAX_TRUST_FILE, what="trust file", error=SigningError)
    except SigningError as exc:
        hint = " (use --key for a key folder)" if path.is_dir() else ""
        raise SigningError(f"{what} {exc}{hint}") from None


def _add_key_folder(anchors: TrustAnchors, folder: Path, what: str) -> None:
    folder = check_path_name(folder, what=f"{what} key folder", error=SigningError)
    if os.path.lexists(folder) and not folder.is_dir():
        raise SigningError(f"{what} {folder}: is not a folder; expected a key folder (use --trust for a file)")
    if not folder.is_dir():
        raise SigningError(f"{what} {folder}: key folder does not exist")
    found = False
    ca_path = folder / CA_CERT
    if ca_path.is_file():
        try:
            chain = x509.load_pem_x509_certificates(_read(ca_path, what))
        except ValueError:
            raise SigningError(f"{what} {ca_path}: not PEM certificates") from None
        for cert in chain:
            anchors.add_certificate(cert, f"{what} {folder}")
        found = True
    cert_path = folder / PDF_CERT
    if cert_path.is_file():
        try:
            cert = x509.load_pem_x509_certificate(_read(cert_path, what))
        except ValueError:
            raise SigningError(f"{what} {cert_path}: not a PEM certificate") from None
        anchors.add_certificate(cert, f"{what} {folder}")
        found = True
    pub_path = folder / ATTESTATION_PUB
    if pub_path.is_file():
        try:
            key = serialization.load_pem_public_key(_read(pub_path, what))
        except (ValueError, TypeError):
            raise SigningError(f"{what} {pub_path}: not a PEM public key") from None
        anchors.add(_spki_fingerprint(key), f"{what} {folder}")
        found = True
    if not found:
        raise SigningError(f"{what} {folder}: holds none of {CA_CERT}, {PDF_CERT}, {ATTESTATION_PUB}")
    anchors.sources.append(f"{what} {folder}")
    anchors.paths.append((what, folder))


def _add_trust_file(anchors: TrustAnchors, path: Path, what: str) -> None:
    data = _read(path, what)
    source = f"{what} {path}"
    if b"-----BEGIN" in data:
        _add_pem_bundle(anchors, data, path, source)
    else:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise SigningError(f"{source}: not UTF-8 text or PEM") from None
        count = 0
        for number, line in enumerate(text.splitlines(), start=1):
            openssl = _OPENSSL_LINE.match(line)
            words = [openssl.group(1)] if openssl else line.strip().split()
            if not words or words[0].startswith("#"):
                continue
            fingerprint = normalise_fingerprint(words[0])
            if fingerprint is None:
                raise SigningError(f"{source}: line {number}: {echo(words[0], 80)} is not a SHA-256 fingerprint")
            anchors.add(fingerprint, source)
            count += 1
        if count == 0:
            raise SigningError(f"{source}: no fingerprint in the file")
    anchors.sources.append(source)
    anchors.paths.append((what, path))


def _add_pem_bundle(anchors: TrustAnchors, data: bytes, path: Path, source: str) -> None:
    blocks = list(re.finditer(rb"-----BEGIN ([A-Z0-9 ]+)-----.+?-----END \1-----", data, flags=re.DOTALL))
    if not blocks:
        raise SigningError(f"{source}: no complete PEM block")
    for block in blocks:
        kind, pem = block.group(1), block.group(0)
        label = kind.decode("ascii", "replace")
        if b"PRIVATE KEY" in kind:
            raise SigningError(f"{source}: holds a private key; give the signer's public files only")
        try:
            if kind == b"CERTIFICATE":
                anchors.add_certificate(x509.load_pem_x509_certificate(pem), source)
            elif kind == b"PUBLIC KEY":
                anchors.add(_spki_fingerprint(serialization.load_pem_public_key(pem)), source)
            else:
                raise SigningError(f"{source}: PEM block {label!r} is not a certificate or a public key")
        except (ValueError, TypeError):
            raise SigningError(f"{source}: a {label} block cannot be parsed") from None


def load_anchors(
    key_dirs: Sequence[str | os.PathLike[str]] = (),
    trust_files: Sequence[str | os.PathLike[str]] = (),
    env: str | None = None,
) -> TrustAnchors:
    """Collect the trust anchors from ``--key``, ``--trust`` and ``CVAUDIT_TRUST``.

    Args:
        key_dirs: Key folders or public bundles.
        trust_files: Fingerprint or PEM files.
        env: The value of ``CVAUDIT_TRUST`` (None or empty: not set); each
            entry is a folder (read as a key folder) or a file (a trust file).

    Returns:
        The anchors; empty when nothing was given.

    Raises:
        SigningError: An anchor is missing, unreadable or holds no fingerprint.
    """
    anchors = TrustAnchors()
    for folder in key_dirs:
        _add_key_folder(anchors, Path(folder), "--key")
    for file in trust_files:
        _add_trust_file(anchors, check_path_name(file, what="--trust file", error=SigningError), "--trust")
    for entry in _env_entries(env):
        path = check_path_name(entry, what=f"{TRUST_ENV} entry", error=SigningError)
        if path.is_dir():
            _add_key_folder(anchors, path, TRUST_ENV)
        else:
            _add_trust_file(anchors, path, TRUST_ENV)
    return anchors


def _env_entries(env: str | None) -> Iterable[str]:
    if not env:
        return []
    return [part for part in env.split(os.pathsep) if part.strip()]
