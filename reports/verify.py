"""Verify a signed report: the PDF signature, the attestation and every digest.

``verify(path)`` accepts a report folder, a ``report.pdf`` or an
``attestation.dsse.json``. It never needs a private key:

* **PDF** — pyHanko validates the PAdES signature: the CMS signature must be
  intact and valid and cover the *entire* file (nothing appended after
  signing). With ``key_dir`` the signer must be that folder's certificate,
  which is the trust anchor; without it, the certificate embedded in the
  signature is trusted and the report says it is self-signed, because that
  proves integrity only, not who signed.
* **Attestation** — the Ed25519 DSSE signature is checked with the public
  key ``key_dir/attestation.pub.pem`` when ``key_dir`` is given (proves who
  signed), otherwise with ``attestation.pub.pem`` next to the attestation
  (integrity only: whoever can replace the files can replace that key too).
  Then every subject's SHA-256 is recomputed: report files must be present
  next to the attestation; extra subjects (model, manifest) are checked when
  their file is given in ``subjects`` (named as attested, ``model:x.pt``, or
  without the ``model:``/``dataset:`` prefix, ``x.pt``; a name matching no
  subject or a missing file is unusable input) and otherwise listed as not
  checked.
* **Folder without attestation** — when the PDF is signed (or
  ``attestation.pub.pem`` shows the folder was signed), a missing
  ``attestation.dsse.json`` is a failure naming the files left unverified:
  deleting it must not turn a tampered folder into a valid one.

Exit codes (:attr:`VerifyReport.exit_code`): 0 valid, 1 invalid or tampered
(naming the file), 2 unusable input (missing path, unknown file type, no
public key, unreadable key folder).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature

from audit.contract.digest import sha256_file
from reports.attestation import ATTESTATION_FILE, PAYLOAD_TYPE, STATEMENT_TYPE, pae
from reports.keys import ATTESTATION_PUB, PDF_CERT, SigningError, key_id, load_attestation_public_key

__all__ = ["Check", "VerifyReport", "verify"]

PDF_FILE = "report.pdf"


@dataclass(frozen=True)
class Check:
    """One verified item.

    Attributes:
        file: The file the check is about (as named in the folder).
        ok: Whether it passed.
        message: One line saying what was found.
    """

    file: str
    ok: bool
    message: str


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of :func:`verify`.

    Attributes:
        path: What was verified.
        checks: Each signature and digest check.
        notes: Caveats that do not change the outcome (self-signed, unchecked
            external subjects, where the public key came from).
        unusable: Why the input could not be verified at all, or ``None``.
    """

    path: Path
    checks: tuple[Check, ...] = ()
    notes: tuple[str, ...] = ()
    unusable: str | None = None

    @property
    def valid(self) -> bool:
        """True when the input was usable and every check passed."""
        return self.unusable is None and bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def exit_code(self) -> int:
        """0 valid, 1 invalid or tampered, 2 unusable input."""
        if self.unusable is not None:
            return 2
        return 0 if self.valid else 1

    @property
    def failures(self) -> list[Check]:
        """The checks that failed."""
        return [c for c in self.checks if not c.ok]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form (for ``--format json``)."""
        return {
            "path": str(self.path),
            "valid": self.valid,
            "exit_code": self.exit_code,
            "unusable": self.unusable,
            "checks": [{"file": c.file, "ok": c.ok, "message": c.message} for c in self.checks],
            "notes": list(self.notes),
        }

    def to_text(self) -> str:
        """Human-readable lines: one per check, then notes and the outcome."""
        if self.unusable is not None:
            return f"UNUSABLE {self.path}: {self.unusable}"
        lines = [f"{'OK  ' if c.ok else 'FAIL'} {c.file}: {c.message}" for c in self.checks]
        lines += [f"note: {n}" for n in self.notes]
        if self.valid:
            lines.append("VALID")
        else:
            lines.append("INVALID: " + ", ".join(sorted({c.file for c in self.failures})))
        return "\n".join(lines)


@dataclass
class _Acc:
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, file: str, ok: bool, message: str) -> None:
        self.checks.append(Check(file, ok, message))


class _Unusable(Exception):
    """Raised internally when the input cannot be verified at all."""


def verify(
    path: str | os.PathLike[str],
    *,
    key_dir: str | os.PathLike[str] | None = None,
    subjects: Mapping[str, str | os.PathLike[str]] | None = None,
) -> VerifyReport:
    """Verify a report folder, a signed PDF or an attestation.

    Args:
        path: A report folder, ``report.pdf`` or ``attestation.dsse.json``.
        key_dir: A key folder (only its public files are read:
            ``pdf-signing.cert.pem`` and ``attestation.pub.pem``). Without it
            the signer is not authenticated, only the integrity is checked.
        subjects: Name -> file for attested artefacts outside the report
            folder (model file, manifest) to check as well.

    Returns:
        The report; see :attr:`VerifyReport.exit_code`.
    """
    target = Path(path)
    acc = _Acc()
    try:
        given = dict(subjects or {})
        for name, file in given.items():
            if not Path(file).is_file():
                raise _Unusable(f"--subject {name}={file}: no such file")
        pdf, att = _targets(target)
        trusted_cert, pub_path = _trusted_material(key_dir, att)
        if pdf is not None:
            _verify_pdf(pdf, trusted_cert, acc)
        if att is not None:
            _verify_attestation(att, pub_path, key_dir is not None, given, acc)
        elif target.is_dir():
            _missing_attestation(target, pdf, acc)
        elif given:
            raise _Unusable(
                f"--subject {', '.join(given)}: only an attestation lists subjects, and none is checked here"
            )
    except _Unusable as exc:
        return VerifyReport(path=target, unusable=str(exc))
    return VerifyReport(path=target, checks=tuple(acc.checks), notes=tuple(acc.notes))


def _targets(target: Path) -> tuple[Path | None, Path | None]:
    if target.is_dir():
        pdf, att = target / PDF_FILE, target / ATTESTATION_FILE
        pdf_opt = pdf if pdf.is_file() else None
        att_opt = att if att.is_file() else None
        if pdf_opt is None and att_opt is None and not (target / ATTESTATION_PUB).is_file():
            raise _Unusable(f"no {PDF_FILE} or {ATTESTATION_FILE} in this folder: nothing to verify")
        return pdf_opt, att_opt
    if not target.is_file():
        raise _Unusable("no such file or folder")
    if target.suffix.lower() == ".pdf":
        return target, None
    if target.name.endswith(".json"):
        return None, target
    raise _Unusable("not a report folder, a .pdf or an attestation .json")


def _missing_attestation(folder: Path, pdf: Path | None, acc: _Acc) -> None:
    """A signed report folder without its attestation hides changes to every other file.

    When the PDF carries a signature, or ``attestation.pub.pem`` shows the folder
    was signed, the missing ``attestation.dsse.json`` is a failure naming the
    files that are left unverified. An entirely unsigned folder already fails
    on its unsigned PDF and gets no extra line.
    """
    pdf_signed = pdf is not None and any(c.file == pdf.name and c.ok for c in acc.checks)
    pdf_checked = pdf is not None and any(c.file == pdf.name and "not signed" not in c.message for c in acc.checks)
    if not (pdf_signed or pdf_checked or (folder / ATTESTATION_PUB).is_file()):
        return
    left = sorted(
        p.name for p in folder.iterdir() if p.is_file() and p.name not in (PDF_FILE, ATTESTATION_FILE, ATTESTATION_PUB)
    )
    acc.add(
        ATTESTATION_FILE,
        False,
        "missing from a signed report folder: "
        + (", ".join(left) if left else "no other file")
        + (" left unverified" if left else " to verify")
        + " (only report.pdf carries its own signature)",
    )


def _trusted_material(key_dir: str | os.PathLike[str] | None, att: Path | None):
    """The trusted certificate (or None) and the attestation public key path."""
    if key_dir is None:
        return None, (att.parent / ATTESTATION_PUB) if att is not None else None
    folder = Path(key_dir)
    if not folder.is_dir():
        raise _Unusable(f"key folder {folder} does not exist")
    from pyhanko.keys import load_cert_from_pemder

    cert_path = folder / PDF_CERT
    try:
        cert = load_cert_from_pemder(str(cert_path))
    except (OSError, ValueError) as exc:
        raise _Unusable(f"{cert_path}: cannot load certificate ({exc.__class__.__name__})") from None
    return cert, folder / ATTESTATION_PUB


def _verify_pdf(pdf: Path, trusted_cert, acc: _Acc) -> None:
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko.sign.validation.status import SignatureCoverageLevel
    from pyhanko_certvalidator import ValidationContext

    name = pdf.name
    try:
        with open(pdf, "rb") as handle:
            reader = PdfFileReader(handle, strict=False)
            signatures = reader.embedded_signatures
            if not signatures:
                acc.add(name, False, "not signed (no PDF signature found)")
                return
            for sig in signatures:
                signer = sig.signer_cert
                if trusted_cert is not None and signer.dump() != trusted_cert.dump():
                    acc.add(
                        name, False, f"signed by {signer.subject.human_friendly}, not by the key folder's certificate"
                    )
                    continue
                root = trusted_cert if trusted_cert is not None else signer
                context = ValidationContext(trust_roots=[root], allow_fetching=False, revocation_mode="soft-fail")
                status = validate_pdf_signature(sig, context)
                _judge_pdf_status(name, sig.field_name, signer, status, SignatureCoverageLevel, trusted_cert, acc)
    except Exception as exc:
        acc.add(name, False, f"cannot be validated as a signed PDF (damaged or tampered): {_one_line(exc)}")


def _judge_pdf_status(name, field_name, signer, status, coverage_levels, trusted_cert, acc: _Acc) -> None:
    problems = []
    if not status.intact:
        problems.append("content changed after signing (digest mismatch)")
    elif not status.valid:
        problems.append("signature does not verify")
    if status.coverage != coverage_levels.ENTIRE_FILE:
        problems.append(f"signature does not cover the whole file ({status.coverage.name})")
    if not status.trusted:
        problems.append("certificate not trusted")
    who = signer.subject.human_friendly
    if problems:
        acc.add(name, False, f"signature {field_name!r}: " + "; ".join(problems))
        return
    acc.add(name, True, f"PAdES signature {field_name!r} by {who} is valid and covers the whole file")
    if trusted_cert is None:
        kind = "self-signed" if signer.self_signed in ("yes", "maybe") else "not checked against a trust anchor"
        acc.notes.append(
            f"{name}: the certificate ({who}) is {kind} and was taken from the signature itself: this proves "
            "integrity, not who signed; pass --key DIR to check the signer"
        )


def _verify_attestation(att: Path, pub_path: Path | None, trusted: bool, subjects, acc: _Acc) -> None:
    name = att.name
    if pub_path is None or not pub_path.is_file():
        raise _Unusable(f"no public key to check {name}: pass --key DIR or put {ATTESTATION_PUB} next to it")
    try:
        public_key = load_attestation_public_key(pub_path)
    except SigningError as exc:
        raise _Unusable(str(exc)) from None
    if not trusted:
        acc.notes.append(
            f"{name}: checked with the {ATTESTATION_PUB} found next to it, which proves integrity, not who "
            "signed; pass --key DIR to check the signer"
        )
    try:
        envelope = json.loads(att.read_bytes())
        payload = base64.b64decode(envelope["payload"], validate=True)
        signatures = envelope["signatures"]
        payload_type = envelope["payloadType"]
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        acc.add(name, False, f"not a readable DSSE envelope (damaged or tampered): {_one_line(exc)}")
        return
    if payload_type != PAYLOAD_TYPE:
        acc.add(name, False, f"payloadType is {payload_type!r}, expected {PAYLOAD_TYPE!r}")
        return
    if not _any_signature_verifies(public_key, payload_type, payload, signatures):
        acc.add(name, False, f"DSSE signature does not verify with {key_id(public_key)}")
        return
    try:
        statement = json.loads(payload)
        if statement.get("_type") != STATEMENT_TYPE:
            raise ValueError(f"_type is not {STATEMENT_TYPE}")
        listed = statement["subject"]
        report_files = set(statement.get("predicate", {}).get("report_files", []))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        acc.add(name, False, f"signed payload is not an in-toto Statement v1: {_one_line(exc)}")
        return
    acc.add(name, True, f"DSSE signature valid ({key_id(public_key)}), {len(listed)} subjects")
    _verify_subjects(att.parent, listed, report_files, subjects, acc)


def _any_signature_verifies(public_key, payload_type: str, payload: bytes, signatures) -> bool:
    message = pae(payload_type, payload)
    for entry in signatures if isinstance(signatures, list) else []:
        try:
            public_key.verify(base64.b64decode(entry["sig"], validate=True), message)
            return True
        except (InvalidSignature, KeyError, TypeError, ValueError, binascii.Error):
            continue
    return False


SUBJECT_PREFIXES = ("model:", "dataset:")


def _short_name(name: str) -> str:
    """``model:resnet.pt`` -> ``resnet.pt``; other names unchanged."""
    for prefix in SUBJECT_PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def _given_for(name: str, given) -> str | None:
    """The ``--subject`` key that names this subject (exactly or without its prefix), if any."""
    if name in given:
        return name
    short = _short_name(name)
    return short if short in given else None


def _verify_subjects(folder: Path, listed, report_files: set[str], given, acc: _Acc) -> None:
    names = [str(subject.get("name", "?")) for subject in listed if isinstance(subject, dict)]
    unmatched = [key for key in given if not any(_given_for(n, {key: None}) for n in names)]
    if unmatched:
        raise _Unusable(
            f"--subject {', '.join(unmatched)}: no attested subject has that name; attested: "
            + (", ".join(f"{n} (or {_short_name(n)})" if _short_name(n) != n else n for n in names) or "none")
        )
    for subject in listed:
        name = str(subject.get("name", "?"))
        expected = str(subject.get("digest", {}).get("sha256", ""))
        key = _given_for(name, given)
        if key is not None:
            path = Path(given[key])
        else:
            path = folder / name
            if not _inside(folder, path):
                acc.add(name, False, "subject name points outside the report folder")
                continue
            if not path.is_file():
                if name in report_files:
                    acc.add(name, False, "attested report file is missing")
                else:
                    acc.notes.append(
                        f"{name}: not in the report folder, digest not checked (pass --subject {_short_name(name)}=PATH)"
                    )
                continue
        try:
            actual = sha256_file(path)
        except OSError as exc:
            acc.add(name, False, f"cannot be read ({exc.strerror})")
            continue
        if actual == expected:
            acc.add(name, True, f"sha256 matches the attestation ({actual[:16]}...)")
        else:
            acc.add(name, False, "sha256 differs from the attestation: file changed after signing")


def _inside(folder: Path, path: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
