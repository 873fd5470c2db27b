"""DSSE-wrapped in-toto Statement v1 over a report folder.

``attestation.dsse.json`` is a DSSE envelope::

    {"payloadType": "application/vnd.in-toto+json",
     "payload": base64(Statement),
     "signatures": [{"keyid": "sha256:<hex of the public key's DER>", "sig": base64(Ed25519 sig)}]}

The signature is Ed25519 over the DSSE pre-authentication encoding
``PAE(type, body) = b"DSSEv1 %d %s %d %s" % (len(type), type, len(body), body)``
(see :func:`pae`), so any tool with the public key checks it, for example
``openssl pkeyutl -verify -pubin -inkey attestation.pub.pem -rawin -in pae.bin
-sigfile sig.bin``.

The Statement names each subject by its file name inside the report folder,
plus the caller's extra subjects (model file, data manifest) by the name the
caller gives; digests are SHA-256.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from audit.contract.digest import sha256_file
from reports.atomic import atomic_write_text
from reports.keys import SigningKeys, key_id, load_signing_keys

__all__ = [
    "ATTESTATION_FILE",
    "MAX_ATTESTATION_BYTES",
    "PAYLOAD_TYPE",
    "PREDICATE_TYPE",
    "STATEMENT_TYPE",
    "build_statement",
    "pae",
    "sign_envelope",
    "write_attestation",
]

ATTESTATION_FILE = "attestation.dsse.json"
#: Largest attestation read (bytes): one subject per attested file, a few hundred bytes each.
MAX_ATTESTATION_BYTES = 64 << 20
PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://cvaudit.dev/attestation/audit-report/v1"


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: the exact bytes that are signed.

    Args:
        payload_type: The envelope's ``payloadType``.
        payload: The decoded payload.

    Returns:
        ``b"DSSEv1 <len(type)> <type> <len(payload)> <payload>"``.

    Example:
        >>> pae("t", b"ab")
        b'DSSEv1 1 t 2 ab'
    """
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def build_statement(subjects: Mapping[str, str | os.PathLike[str]], predicate: Mapping[str, Any]) -> dict[str, Any]:
    """An in-toto Statement v1 with SHA-256 subject digests.

    Args:
        subjects: Subject name -> file to hash.
        predicate: The cvaudit predicate (verdict, policy digest, tool version...).

    Returns:
        The Statement as a JSON-serialisable dict, subjects sorted by name.
    """
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": name, "digest": {"sha256": sha256_file(subjects[name])}} for name in sorted(subjects)],
        "predicateType": PREDICATE_TYPE,
        "predicate": dict(predicate),
    }


def sign_envelope(statement: Mapping[str, Any], keys: SigningKeys) -> dict[str, Any]:
    """Wrap and sign a Statement as a DSSE envelope.

    Args:
        statement: The in-toto Statement.
        keys: Loaded signing keys (the Ed25519 attestation key is used).

    Returns:
        The envelope dict.
    """
    payload = json.dumps(statement, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    signature = keys.attestation_key.sign(pae(PAYLOAD_TYPE, payload))
    return {
        "payloadType": PAYLOAD_TYPE,
        "payload": base64.b64encode(payload).decode("ascii"),
        "signatures": [
            {"keyid": key_id(keys.attestation_key.public_key()), "sig": base64.b64encode(signature).decode("ascii")}
        ],
    }


def write_attestation(
    out_dir: str | os.PathLike[str],
    files: Sequence[str | os.PathLike[str]],
    extra_subjects: Mapping[str, str | os.PathLike[str]] | None,
    predicate: Mapping[str, Any],
    key_dir: str | os.PathLike[str] | SigningKeys,
    passphrase: bytes | None = None,
) -> Path:
    """Write ``attestation.dsse.json`` over report files and extra subjects.

    Args:
        out_dir: The report folder; the attestation is written there.
        files: Files to attest; those inside ``out_dir`` are named by their
            path relative to it, others by their file name.
        extra_subjects: Name -> file for artefacts outside the folder (the
            model file, the data manifest). Names must not clash with files.
        predicate: The cvaudit predicate: ``verdict``, ``policy`` (name and
            sha256), ``tool`` (name and version). ``report_files`` (the
            subject names that are files of the report folder, which a
            verifier requires to be present) is added.
        key_dir: A key folder or already loaded keys.
        passphrase: Passphrase of the key folder's private keys.

    Returns:
        The path of the envelope.

    Raises:
        SigningError: The keys cannot be used.
        ValueError: Two subjects have the same name.
        OSError: A subject file cannot be read (nothing is written then).
    """
    keys = key_dir if isinstance(key_dir, SigningKeys) else load_signing_keys(key_dir, passphrase)
    folder = Path(out_dir)
    subjects: dict[str, Path] = {}
    for file in files:
        path = Path(file)
        try:
            name = path.resolve().relative_to(folder.resolve()).as_posix()
        except ValueError:
            name = path.name
        _add_subject(subjects, name, path)
    report_files = sorted(subjects)
    for name, path in (extra_subjects or {}).items():
        _add_subject(subjects, str(name), Path(path))
    full_predicate = {**predicate, "report_files": report_files}
    envelope = sign_envelope(build_statement(subjects, full_predicate), keys)
    return atomic_write_text(folder / ATTESTATION_FILE, json.dumps(envelope, indent=2) + "\n")


def _add_subject(subjects: dict[str, Path], name: str, path: Path) -> None:
    if name in subjects:
        raise ValueError(f"attestation subject {name!r} given twice")
    subjects[name] = path
