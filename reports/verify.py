"""Verify a signed report: who signed it, the PDF signature, the attestation and every digest.

``verify(path)`` accepts a report folder, a ``report.pdf`` or an
``attestation.dsse.json``. It never needs a private key. It answers two
questions and keeps them apart:

1. **Integrity** — is everything as it was signed?

   * **PDF**: pyHanko validates the PAdES signature: the CMS signature must be
     intact and valid and cover the *entire* file (nothing appended after
     signing). In a folder, the ``results.json`` attached inside the PDF must
     equal the folder's ``results.json``, byte for byte.
   * **Attestation**: the Ed25519 DSSE signature is checked with the public
     key whose fingerprint is the envelope's ``keyid`` (``attestation.pub.pem``
     next to it, or the one in ``--key``); then every subject's SHA-256 is
     recomputed: report files must be present next to the attestation; extra
     subjects (model, manifest) are checked when their file is given in
     ``subjects`` (named as attested, ``model:x.pt``, or without the
     ``model:``/``dataset:`` prefix, ``x.pt``; a name matching no subject or
     a missing file is unusable input) and otherwise listed as not checked.
   * **One key set**: the attestation names the fingerprint of the
     certificate that must have signed the PDF, and a cvaudit certificate
     names the attestation key's fingerprint; a PDF and an attestation from
     different key sets are invalid.
   * **Folder without attestation**: when the PDF is signed (or
     ``attestation.pub.pem`` shows the folder was signed), a missing
     ``attestation.dsse.json`` is a failure naming the files left unverified.

2. **Trust** — is the signer one the reviewer trusts? Only trust anchors
   (:mod:`reports.trust`: ``--key``, ``--trust``, ``CVAUDIT_TRUST``) answer
   that, never a key or certificate shipped inside the report. A signature is
   trusted when its fingerprint is an anchor, when the PDF certificate chains
   to a CA certificate whose fingerprint is an anchor (pyHanko validates the
   path: signatures, validity now, basic constraints, key usage; the CA
   certificate is the anchor's file or the copy embedded in the signature
   with that exact fingerprint), or when the other half of the same key set
   is trusted and names it (the attestation names the PDF certificate; the
   certificate names the attestation key).

3. **What the signature does not say** — two warnings, each an error under
   ``strict`` (``--strict``):

   * **An anchor inside the report folder**: a ``--key`` folder, a ``--trust``
     file or a ``CVAUDIT_TRUST`` entry that lies inside the folder verified
     (its path as given, made absolute, or its resolved path; for a PDF or an
     attestation given alone, the folder holding it) is the key shipped with
     the report: the report vouches for itself, and anyone who can write the
     folder can sign it. Under ``strict`` the report is ``UNTRUSTED`` (exit 1)
     whatever the anchors say.
   * **Unattested files**: every entry of the attestation's folder that no
     attested subject names is listed (folders end with ``/``; nothing is
     opened or read, so a FIFO or a device is only named). Not listed are the
     names cvaudit writes unattested: ``attestation.dsse.json``,
     ``attestation.pub.pem``, the output marker ``.cvaudit-output`` and
     atomic-write temporaries of cvaudit's own outputs (``.<output>.<random>.tmp``).
     An output name the attestation leaves out (``predictions.csv`` rendered
     into another folder) is listed. Under ``strict`` each is a failed check:
     ``INVALID`` (exit 1) naming the files.

Every file verify reads is read through :func:`audit.contract.files.read_bounded`
(or hashed through ``open_bounded``): a folder, a device such as ``/dev/zero``,
a FIFO or a file over the limit (:data:`MAX_ATTESTATION_BYTES`,
:data:`MAX_RESULTS_BYTES`, :data:`MAX_PDF_BYTES`) is one line naming it, never
a hang or a memory error: ``UNUSABLE`` (exit 2) for the attestation, the PDF
and results.json, a failed check for an attested file.

Outcome (:attr:`VerifyReport.outcome`) and exit code: ``VALID`` 0 (intact and
every signer trusted) · ``INVALID`` 1 (changed, damaged, mixed key sets;
the file is named) · ``UNTRUSTED`` 1 (intact, but a signer is not among the
anchors, or no anchor was given) · ``INTACT`` 0 (intact, no anchor given and
``allow_untrusted``: the signer is not authenticated) · ``UNUSABLE`` 2.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from audit.contract.errors import CvauditError, echo
from audit.contract.files import open_bounded, read_bounded
from audit.contract.load import MAX_RESULTS_BYTES, ResultsError, parse_results
from reports.attestation import ATTESTATION_FILE, MAX_ATTESTATION_BYTES, PAYLOAD_TYPE, STATEMENT_TYPE, pae
from reports.keys import ATTESTATION_PUB, SigningError, attestation_key_of_certificate, key_id
from reports.outputs import MARKER_FILE, OUTPUT_FILES
from reports.signing import MAX_PDF_BYTES
from reports.trust import TrustAnchors, load_anchors

__all__ = ["Check", "SignedResults", "Signer", "VerifyReport", "verify"]

PDF_FILE = "report.pdf"
RESULTS_FILE = "results.json"

#: The most bytes read of an attestation public key (a PEM of about 113 bytes).
MAX_KEY_BYTES = 64 << 10
#: The largest attested file hashed (read in chunks: a bound on time, not memory).
MAX_SUBJECT_BYTES = 1 << 40

#: Names cvaudit writes into a report folder that no attestation covers by design (the output marker too).
UNATTESTED_OWN = (ATTESTATION_FILE, ATTESTATION_PUB, MARKER_FILE)
#: An atomic-write temporary (:func:`reports.atomic.atomic_write`): ``.<name>.<random>.tmp``.
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.[A-Za-z0-9_]+\.tmp$")


class _Refused(CvauditError):
    """A file verify reads is not a regular file, too large or unreadable (one line naming it)."""


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
class SignedResults:
    """What the signed results.json says, read through :func:`audit.contract.parse_results`.

    Attributes:
        source: The file read (the folder's results.json, or the copy attached inside the PDF).
        schema_version: Its ``schema_version``.
        policy: The policy it was judged against.
        verdict: ``"pass"`` or ``"fail"``.
        blocking_failures: The ids that failed the verdict.
        report_only: The policy gates nothing (``report_only``): its ``pass`` is no gate's.
    """

    source: str
    schema_version: str
    policy: str
    verdict: str
    blocking_failures: tuple[str, ...]
    report_only: bool = False

    def to_text(self) -> str:
        """One line: the signed verdict, its policy and its blocking failures."""
        failures = (
            f"{len(self.blocking_failures)} blocking failure(s)" if self.blocking_failures else "no blocking failure"
        )
        verdict = "REPORT ONLY (the policy gates nothing)" if self.report_only else self.verdict.upper()
        return (
            f"signed results: verdict {verdict} under policy {echo(self.policy)} "
            f"({failures}; schema {self.schema_version}; {self.source})"
        )


@dataclass(frozen=True)
class Signer:
    """One signature's signer, identified by fingerprint.

    Attributes:
        file: The signed file (``report.pdf`` or ``attestation.dsse.json``).
        kind: ``"pdf-certificate"`` or ``"attestation-key"``.
        fingerprint: ``sha256:<hex>`` of the certificate (DER) or of the
            public key (DER SubjectPublicKeyInfo, the DSSE ``keyid``).
        subject: The certificate subject (PDF), or the subject named for this
            key in the attestation (unauthenticated unless trusted).
        trusted: Whether a trust anchor vouches for it.
        why: How it is trusted, or why not.
    """

    file: str
    kind: str
    fingerprint: str
    subject: str
    trusted: bool
    why: str


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of :func:`verify`.

    Attributes:
        path: What was verified.
        checks: Each integrity check (signatures, digests, bindings).
        signers: Each signature's signer and whether it is trusted.
        notes: Caveats that do not change the outcome (unchecked external
            subjects, where a public key came from).
        unusable: Why the input could not be verified at all, or ``None``.
        anchored: Whether any trust anchor was given.
        allow_untrusted: Whether an intact report with no anchor given may
            exit 0 (outcome ``INTACT``).
        results: What the signed results.json says, when the report is
            intact and carries one; ``None`` otherwise.
        self_anchors: One warning per trust anchor that lies inside the
            report folder (the report vouching for itself).
        unattested: Entries of the attestation's folder that no attested
            subject covers (folders end with ``/``), sorted.
        strict: Whether either of the two above makes the outcome fail.
    """

    path: Path
    checks: tuple[Check, ...] = ()
    signers: tuple[Signer, ...] = ()
    notes: tuple[str, ...] = ()
    unusable: str | None = None
    anchored: bool = False
    allow_untrusted: bool = False
    results: SignedResults | None = None
    self_anchors: tuple[str, ...] = ()
    unattested: tuple[str, ...] = ()
    strict: bool = False

    @property
    def intact(self) -> bool:
        """True when the input was usable and every integrity check passed."""
        return self.unusable is None and bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def trusted(self) -> bool:
        """True when intact, there is a signer, and every signer is trusted (under ``strict``: and no
        anchor lies inside the report folder)."""
        if self.strict and self.self_anchors:
            return False
        return self.intact and bool(self.signers) and all(s.trusted for s in self.signers)

    @property
    def valid(self) -> bool:
        """True only for ``VALID``: intact and signed by trusted signers."""
        return self.trusted

    @property
    def outcome(self) -> str:
        """``VALID``, ``INVALID``, ``UNTRUSTED``, ``INTACT`` or ``UNUSABLE`` (see the module docstring)."""
        if self.unusable is not None:
            return "UNUSABLE"
        if not self.intact:
            return "INVALID"
        if self.trusted:
            return "VALID"
        if not self.anchored and self.allow_untrusted:
            return "INTACT"
        return "UNTRUSTED"

    @property
    def exit_code(self) -> int:
        """0 ``VALID`` or ``INTACT``, 1 ``INVALID`` or ``UNTRUSTED``, 2 ``UNUSABLE``."""
        return {"VALID": 0, "INTACT": 0, "INVALID": 1, "UNTRUSTED": 1}.get(self.outcome, 2)

    @property
    def failures(self) -> list[Check]:
        """The integrity checks that failed."""
        return [c for c in self.checks if not c.ok]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form (for ``--format json``)."""
        return {
            "path": str(self.path),
            "outcome": self.outcome,
            "valid": self.valid,
            "intact": self.intact,
            "trusted": self.trusted,
            "exit_code": self.exit_code,
            "unusable": self.unusable,
            "checks": [{"file": c.file, "ok": c.ok, "message": c.message} for c in self.checks],
            "signers": [
                {
                    "file": s.file,
                    "kind": s.kind,
                    "fingerprint": s.fingerprint,
                    "subject": s.subject,
                    "trusted": s.trusted,
                    "why": s.why,
                }
                for s in self.signers
            ],
            "notes": list(self.notes),
            "self_anchors": list(self.self_anchors),
            "unattested": list(self.unattested),
            "strict": self.strict,
            "results": None
            if self.results is None
            else {
                "source": self.results.source,
                "schema_version": self.results.schema_version,
                "policy": self.results.policy,
                "verdict": self.results.verdict,
                "report_only": self.results.report_only,
                "blocking_failures": list(self.results.blocking_failures),
            },
        }

    def to_text(self) -> str:
        """Human-readable lines: one per check and signer, then notes and the outcome."""
        if self.unusable is not None:
            return f"UNUSABLE {self.path}: {self.unusable}"
        lines = [f"{'OK  ' if c.ok else 'FAIL'} {c.file}: {c.message}" for c in self.checks]
        lines += [
            f"signer {s.file}: {s.subject} {s.kind} {s.fingerprint} "
            f"({'trusted' if s.trusted else 'NOT trusted'}: {s.why})"
            for s in self.signers
        ]
        lines += [f"note: {n}" for n in self.notes]
        lines += [f"warning: {w}" for w in self.self_anchors]
        if self.unattested:
            lines.append(
                "warning: in the report folder but not covered by the attestation: "
                + ", ".join(echo(n, 120) for n in self.unattested)
                + ("" if self.strict else " (nothing vouches for them; --strict makes this an error)")
            )
        if self.results is not None:
            lines.append(self.results.to_text())
        outcome = self.outcome
        if outcome == "INVALID":
            lines.append("INVALID: " + ", ".join(sorted({c.file for c in self.failures})))
        elif outcome == "UNTRUSTED":
            if self.strict and self.self_anchors and self.intact:
                lines.append(
                    "UNTRUSTED: --strict: a trust anchor lies inside the report folder, so the report vouches "
                    "for itself; give the signer's key from outside the report"
                )
            elif not self.signers:
                lines.append("UNTRUSTED: no signature to tell who signed")
            elif self.anchored:
                lines.append("UNTRUSTED: the signer is not among the trust anchors given")
            else:
                lines.append(
                    "UNTRUSTED: intact, but no trust anchor was given, so who signed is unknown; pass --key DIR, "
                    "--trust FILE or set CVAUDIT_TRUST (or --allow-untrusted to accept integrity alone)"
                )
        elif outcome == "INTACT":
            lines.append("INTACT (not authenticated: --allow-untrusted and no trust anchor; anyone could have signed)")
        else:
            lines.append("VALID")
        return "\n".join(lines)


@dataclass
class _Acc:
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    pdf_signers: list[tuple[str, str, str | None]] = field(default_factory=list)  # fingerprint, subject, names key
    pdf_chains: dict[str, str] = field(default_factory=dict)  # PDF certificate -> why a trusted CA vouches for it
    att_signer: tuple[str, str | None, str | None] | None = None  # key fingerprint, named cert, named subject
    attached_results: bytes | None = None
    bound: bool = False  # the PDF certificate and the attestation key proved to be one key set
    covered: set[str] | None = None  # the attested subjects' names, once the attestation verified

    def add(self, file: str, ok: bool, message: str) -> None:
        self.checks.append(Check(file, ok, message))


class _Unusable(Exception):
    """Raised internally when the input cannot be verified at all."""


def verify(
    path: str | os.PathLike[str],
    *,
    key_dir: str | os.PathLike[str] | None = None,
    anchors: TrustAnchors | None = None,
    allow_untrusted: bool = False,
    subjects: Mapping[str, str | os.PathLike[str]] | None = None,
    strict: bool = False,
) -> VerifyReport:
    """Verify a report folder, a signed PDF or an attestation, and who signed it.

    Args:
        path: A report folder, ``report.pdf`` or ``attestation.dsse.json``.
        key_dir: A key folder or its public bundle (only the public files are
            read); a trust anchor, and a source of the attestation public key.
        anchors: Further trust anchors (:func:`reports.trust.load_anchors`).
        allow_untrusted: With no anchor at all, an intact report exits 0 as
            ``INTACT`` instead of 1 as ``UNTRUSTED``.
        subjects: Name -> file for attested artefacts outside the report
            folder (model file, manifest) to check as well.
        strict: An anchor inside the report folder makes the outcome
            ``UNTRUSTED`` and each unattested file a failed check (``INVALID``);
            without it both are warnings (see the module docstring).

    Returns:
        The report; see :attr:`VerifyReport.outcome` and :attr:`VerifyReport.exit_code`.
    """
    target = Path(path)
    acc = _Acc()
    try:
        trust = TrustAnchors() if anchors is None else anchors
        if key_dir is not None:
            extra = load_anchors(key_dirs=[key_dir])
            trust = _merge(trust, extra)
        given = dict(subjects or {})
        for name, file in given.items():
            if not Path(file).is_file():
                raise _Unusable(f"--subject {name}={file}: no such file")
        pdf, att = _targets(target)
        folder = target if target.is_dir() else target.parent
        self_anchors = _anchors_inside(folder, trust)
        if pdf is not None:
            _verify_pdf(pdf, acc, trust)
        if att is not None:
            key_folder = Path(key_dir) if key_dir is not None else None
            _verify_attestation(att, key_folder, given, acc)
        elif target.is_dir():
            _missing_attestation(target, pdf, acc)
        elif given:
            raise _Unusable(
                f"--subject {', '.join(given)}: only an attestation lists subjects, and none is checked here"
            )
        if target.is_dir() and pdf is not None:
            _compare_attached_results(target, acc)
        _check_binding(acc)
        signed = _read_signed_results(target, pdf, acc)
        signers = _judge_trust(acc, trust)
        unattested = _unattested(att.parent, acc.covered) if att is not None and acc.covered is not None else []
        if strict:
            for name in unattested:
                acc.add(name.rstrip("/"), False, "in the report folder but not covered by the attestation (--strict)")
    except (SigningError, _Refused) as exc:
        return VerifyReport(path=target, unusable=str(exc))
    except _Unusable as exc:
        return VerifyReport(path=target, unusable=str(exc))
    return VerifyReport(
        path=target,
        checks=tuple(acc.checks),
        signers=tuple(signers),
        notes=tuple(acc.notes),
        anchored=bool(trust),
        allow_untrusted=allow_untrusted,
        results=signed,
        self_anchors=tuple(self_anchors),
        unattested=tuple(unattested),
        strict=strict,
    )


def _merge(a: TrustAnchors, b: TrustAnchors) -> TrustAnchors:
    out = TrustAnchors(dict(a.fingerprints), dict(a.vouched), list(a.sources), dict(a.certificates))
    for fingerprint, der in b.certificates.items():
        out.certificates.setdefault(fingerprint, der)
    for fingerprint, source in b.fingerprints.items():
        out.add(fingerprint, source)
    for fingerprint, cert in b.vouched.items():
        out.vouched.setdefault(fingerprint, cert)
    out.sources += b.sources
    out.paths += a.paths + b.paths
    return out


def _inside_folder(folder: Path, path: Path) -> bool:
    """Whether ``path`` is ``folder`` or lies under it, by its absolute path as given or its resolved path."""
    lexical_folder, lexical = Path(os.path.abspath(folder)), Path(os.path.abspath(path))
    if lexical == lexical_folder or lexical_folder in lexical.parents:
        return True
    try:
        real_folder, real = folder.resolve(), path.resolve()
    except (OSError, RuntimeError):  # a symlink loop: judged by the path as given
        return False
    return real == real_folder or real_folder in real.parents


def _anchors_inside(folder: Path, anchors: TrustAnchors) -> list[str]:
    """One warning per anchor (``--key``, ``--trust``, ``CVAUDIT_TRUST``) inside the report folder."""
    return [
        f"{what} {path}: the trust anchor lies inside the report folder {folder}, so the report vouches for "
        "itself (this is the key shipped with the report; anyone who can write the folder can sign it)"
        for what, path in anchors.paths
        if _inside_folder(folder, Path(path))
    ]


def _unattested(folder: Path, covered: set[str]) -> list[str]:
    """Entries of ``folder`` no attested subject covers, minus cvaudit's own unattested names.

    Only names and entry types are looked at (``lstat``): nothing is opened, so a FIFO,
    a device or a symlink to one is named, never read. Folders end with ``/``.
    """
    tops = {name.split("/", 1)[0] for name in covered}
    found = []
    try:
        entries = list(os.scandir(folder))
    except OSError as exc:
        raise _Refused(f"{folder}: cannot list the report folder ({exc.strerror})") from None
    for entry in entries:
        name = entry.name
        if name in covered or name in UNATTESTED_OWN:
            continue
        temporary = _TEMPORARY.match(name)
        if temporary is not None and temporary.group("name") in OUTPUT_FILES:
            continue
        is_folder = entry.is_dir(follow_symlinks=False)
        if is_folder and name in tops:
            continue  # holds attested files; those are checked one by one
        found.append(name + "/" if is_folder else name)
    return sorted(found)


def _targets(target: Path) -> tuple[Path | None, Path | None]:
    if target.is_dir():
        pdf, att = target / PDF_FILE, target / ATTESTATION_FILE
        # present in any form: a FIFO or a device by that name is refused by the bounded reader, by name
        pdf_opt = pdf if os.path.lexists(pdf) else None
        att_opt = att if os.path.lexists(att) else None
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


# --------------------------------------------------------------------------- PDF


def _verify_pdf(pdf: Path, acc: _Acc, trust: TrustAnchors) -> None:
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko.sign.validation.status import SignatureCoverageLevel
    from pyhanko_certvalidator import ValidationContext

    name = pdf.name
    stream = open_bounded(pdf, limit=MAX_PDF_BYTES, what="signed PDF", error=_Refused)
    try:
        with stream as handle:
            reader = PdfFileReader(handle, strict=False)
            signatures = reader.embedded_signatures
            if not signatures:
                acc.add(name, False, "not signed (no PDF signature found)")
                return
            for sig in signatures:
                signer = sig.signer_cert
                # Integrity only: the signer's own certificate is the root here; whether the
                # signer is trusted is decided by fingerprint against the anchors (_judge_trust).
                context = ValidationContext(trust_roots=[signer], allow_fetching=False, revocation_mode="soft-fail")
                status = validate_pdf_signature(sig, context)
                ok = _judge_pdf_status(name, sig.field_name, signer, status, SignatureCoverageLevel, acc)
                if ok:
                    der = signer.dump()
                    cert = x509.load_der_x509_certificate(der)
                    fingerprint = "sha256:" + hashlib.sha256(der).hexdigest()
                    acc.pdf_signers.append(
                        (fingerprint, cert.subject.rfc4514_string(), attestation_key_of_certificate(cert))
                    )
                    if not trust.trusts(fingerprint):
                        chained = _trusted_ca(sig, trust)
                        if chained is not None:
                            acc.pdf_chains[fingerprint] = chained
            acc.attached_results = _attached_file(reader, RESULTS_FILE)
    except Exception as exc:  # fail closed: a damaged or forged PDF makes pyHanko's and asn1crypto's parsers
        # raise whatever they hit (PdfReadError, PdfStreamError, zlib.error, ValueError, KeyError, ...);
        # each is this file failing verification, never a crash of the verifier
        acc.add(name, False, f"cannot be validated as a signed PDF (damaged or tampered): {_one_line(exc)}")


def _trusted_ca(sig, trust: TrustAnchors) -> str | None:
    """How a trusted CA vouches for the PDF signer's certificate, or None when none does.

    The candidate roots are CA certificates whose fingerprint is an anchor:
    those given as files, and those embedded in the signature (matched by
    fingerprint, so a certificate an attacker embeds is used only when it is
    exactly the trusted one). pyHanko then validates the signer's path to one
    of them, offline, now; the signature must also be intact and valid.
    """
    from asn1crypto import x509 as asn1_x509
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko_certvalidator import ValidationContext

    roots: dict[str, asn1_x509.Certificate] = {}
    for cert in sig.other_embedded_certs:
        fingerprint = "sha256:" + hashlib.sha256(cert.dump()).hexdigest()
        if trust.trusts(fingerprint):
            roots.setdefault(fingerprint, cert)
    for fingerprint, der in trust.certificates.items():
        roots.setdefault(fingerprint, asn1_x509.Certificate.load(der))
    for fingerprint, root in roots.items():
        if not root.ca:
            continue
        context = ValidationContext(trust_roots=[root], allow_fetching=False, revocation_mode="soft-fail")
        status = validate_pdf_signature(sig, context, key_usage_settings=_document_signer())
        if status.intact and status.valid and status.trusted:
            subject = x509.load_der_x509_certificate(root.dump()).subject.rfc4514_string()
            return f"issued under the trusted CA {subject} ({fingerprint}, in {trust.fingerprints[fingerprint]})"
    return None


def _document_signer():
    """What a certificate issued under a trusted CA must be to vouch for a report: a document signer, not any
    certificate of that CA (an organisation's root also issues e-mail and TLS certificates). Key usage
    nonRepudiation (pyHanko's default) and an extended key usage for signing documents: RFC 9336's
    id-kp-documentSigning (what ``cvaudit keygen`` issues), Microsoft's or Adobe's."""
    from pyhanko.sign.validation.settings import KeyUsageConstraints

    return KeyUsageConstraints(
        key_usage={"non_repudiation"},
        extd_key_usage=set(DOCUMENT_SIGNING_USAGES),
        explicit_extd_key_usage_required=True,
    )


#: Extended key usages that make a certificate under a trusted CA a document signer (dotted or asn1crypto's names).
DOCUMENT_SIGNING_USAGES = ("1.3.6.1.5.5.7.3.36", "microsoft_document_signing", "adobe_authentic_documents_trust")


def _judge_pdf_status(name, field_name, signer, status, coverage_levels, acc: _Acc) -> bool:
    problems = []
    if not status.intact:
        problems.append("content changed after signing (digest mismatch)")
    elif not status.valid:
        problems.append("signature does not verify")
    if status.coverage != coverage_levels.ENTIRE_FILE:
        problems.append(f"signature does not cover the whole file ({status.coverage.name})")
    if problems:
        acc.add(name, False, f"signature {field_name!r}: " + "; ".join(problems))
        return False
    acc.add(
        name,
        True,
        f"PAdES signature {field_name!r} by {signer.subject.human_friendly} is intact and covers the whole file",
    )
    return True


def _attached_file(reader, wanted: str) -> bytes | None:
    """The bytes of the embedded file named ``wanted`` (the /EmbeddedFiles name tree), or None."""
    try:
        tree = reader.root["/Names"]["/EmbeddedFiles"]
    except (KeyError, TypeError):
        return None
    stack, seen = [tree], 0
    while stack and seen < 1000:
        node = stack.pop()
        seen += 1
        if "/Kids" in node:
            stack.extend(kid for kid in node["/Kids"])
        names = node.get("/Names") if hasattr(node, "get") else None
        if names:
            for i in range(0, len(names) - 1, 2):
                if str(names[i]) == wanted:
                    return names[i + 1]["/EF"]["/F"].data
    return None


def _compare_attached_results(folder: Path, acc: _Acc) -> None:
    """The results.json inside the signed PDF must be the folder's results.json."""
    if not any(c.file == PDF_FILE and c.ok for c in acc.checks):
        return
    attached = acc.attached_results
    here = folder / RESULTS_FILE
    if attached is None:
        if here.is_file():
            acc.add(PDF_FILE, False, f"carries no attached {RESULTS_FILE}, so it cannot vouch for {here.name}")
        return
    if not here.is_file():
        acc.notes.append(f"{PDF_FILE} carries {RESULTS_FILE} (sha256 {_sha(attached)[:16]}...); none in the folder")
        return
    data = read_bounded(here, limit=MAX_RESULTS_BYTES, what=RESULTS_FILE, error=_Refused)
    if data == attached:
        acc.add(RESULTS_FILE, True, f"equals the {RESULTS_FILE} attached inside the signed {PDF_FILE}")
    else:
        acc.add(
            RESULTS_FILE,
            False,
            f"differs from the {RESULTS_FILE} attached inside the signed {PDF_FILE} "
            f"(folder sha256 {_sha(data)[:16]}..., attached sha256 {_sha(attached)[:16]}...)",
        )


def _read_signed_results(target: Path, pdf: Path | None, acc: _Acc) -> SignedResults | None:
    """Read the signed results through the one reader, once every integrity check has passed.

    A changed or damaged report is not read (INVALID says which file). An intact
    one whose results.json the reader rejects (another schema major version, a
    key this version does not allow) is unusable input: one line naming the
    file and the JSON path, exit 2.
    """
    if not acc.checks or not all(c.ok for c in acc.checks):
        return None
    here = target / RESULTS_FILE if target.is_dir() else None
    if here is not None and here.is_file():
        data, source = read_bounded(here, limit=MAX_RESULTS_BYTES, what=RESULTS_FILE, error=_Refused), str(here)
    elif acc.attached_results is not None and pdf is not None:
        data, source = acc.attached_results, f"{pdf} (attached {RESULTS_FILE})"
    else:
        return None
    try:
        results = parse_results(data, source=source)
    except ResultsError as exc:
        raise _Unusable(str(exc)) from None
    if results.policy is None:
        raise _Unusable(f"{source}: $.policy: required key is missing (results without a verdict were never final)")
    return SignedResults(
        source=source,
        schema_version=results.schema_version,
        policy=results.policy.name,
        verdict=results.policy.verdict,
        blocking_failures=tuple(results.policy.blocking_failures),
        report_only=bool(results.policy.report_only),
    )


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------- attestation


def _public_key_for(att: Path, key_folder: Path | None, keyids: list[str]):
    """The attestation public key: the one whose fingerprint the envelope names, from --key or beside it."""
    candidates = []
    if key_folder is not None and (key_folder / ATTESTATION_PUB).is_file():
        candidates.append(key_folder / ATTESTATION_PUB)
    if (att.parent / ATTESTATION_PUB).is_file():
        candidates.append(att.parent / ATTESTATION_PUB)
    if not candidates:
        raise _Unusable(f"no public key to check {att.name}: pass --key DIR or put {ATTESTATION_PUB} next to it")
    loaded = []
    for path in candidates:
        try:
            loaded.append((path, _load_public_key(path)))
        except SigningError as exc:
            raise _Unusable(str(exc)) from None
    for path, key in loaded:
        if key_id(key) in keyids:
            return path, key
    return loaded[0]


def _load_public_key(path: Path) -> ed25519.Ed25519PublicKey:
    """The Ed25519 public key in ``path``, read through the bounded reader (a FIFO, a device or a large
    file in the report folder is one line naming it)."""
    data = read_bounded(path, limit=MAX_KEY_BYTES, what="attestation public key", error=_Refused)
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise SigningError(f"{path}: not a PEM public key ({_one_line(exc)})") from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise SigningError(f"{path}: unsupported key type {type(key).__name__}; expected Ed25519")
    return key


def _verify_attestation(att: Path, key_folder: Path | None, subjects, acc: _Acc) -> None:
    name = att.name
    raw = read_bounded(att, limit=MAX_ATTESTATION_BYTES, what="attestation", error=_Refused)
    try:
        envelope = json.loads(raw)
        payload = base64.b64decode(envelope["payload"], validate=True)
        signatures = envelope["signatures"]
        payload_type = envelope["payloadType"]
        keyids = [str(s.get("keyid")) for s in signatures if isinstance(s, dict)]
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError, binascii.Error) as exc:
        acc.add(name, False, f"not a readable DSSE envelope (damaged or tampered): {_one_line(exc)}")
        return
    pub_path, public_key = _public_key_for(att, key_folder, keyids)
    fingerprint = key_id(public_key)
    if payload_type != PAYLOAD_TYPE:
        acc.add(name, False, f"payloadType is {echo(payload_type, 80)}, expected {PAYLOAD_TYPE!r}")
        return
    signature_keyid = _verifying_keyid(public_key, payload_type, payload, signatures)
    if signature_keyid is None:
        acc.add(name, False, f"DSSE signature does not verify with {fingerprint} ({pub_path})")
        return
    if signature_keyid != fingerprint:
        acc.add(
            name,
            False,
            f"the signature's keyid {echo(signature_keyid, 80)} is not the fingerprint {fingerprint} of the key "
            "that verifies it",
        )
        return
    try:
        statement = json.loads(payload)
        if statement.get("_type") != STATEMENT_TYPE:
            raise ValueError(f"_type is not {STATEMENT_TYPE}")
        listed = statement["subject"]
        predicate = statement.get("predicate", {})
        report_files = set(predicate.get("report_files", []))
        signer = predicate.get("signer") if isinstance(predicate.get("signer"), dict) else {}
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        acc.add(name, False, f"signed payload is not an in-toto Statement v1: {_one_line(exc)}")
        return
    acc.add(name, True, f"DSSE signature intact (keyid {fingerprint}), {len(listed)} subjects")
    acc.covered = {str(s.get("name")) for s in listed if isinstance(s, dict) and s.get("name")}
    named_cert = signer.get("pdf_certificate")
    acc.att_signer = (
        fingerprint,
        str(named_cert) if named_cert else None,
        str(signer.get("subject")) if signer.get("subject") else None,
    )
    _verify_subjects(att.parent, listed, report_files, subjects, acc)


def _verifying_keyid(public_key, payload_type: str, payload: bytes, signatures) -> str | None:
    """The ``keyid`` of the first signature that verifies with ``public_key``, or None."""
    message = pae(payload_type, payload)
    for entry in signatures if isinstance(signatures, list) else []:
        try:
            public_key.verify(base64.b64decode(entry["sig"], validate=True), message)
            return str(entry.get("keyid"))
        except (InvalidSignature, KeyError, TypeError, ValueError, AttributeError, binascii.Error):
            continue
    return None


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
            if not os.path.lexists(path):
                if name in report_files:
                    acc.add(name, False, "attested report file is missing")
                else:
                    acc.notes.append(
                        f"{name}: not in the report folder, digest not checked (pass --subject {_short_name(name)}=PATH)"
                    )
                continue
        try:
            actual = _sha256_bounded(path)
        except _Refused as exc:
            acc.add(name, False, str(exc))
            continue
        if actual == expected:
            acc.add(name, True, f"sha256 matches the attestation ({actual[:16]}...)")
        else:
            acc.add(name, False, "sha256 differs from the attestation: file changed after signing")


def _sha256_bounded(path: Path) -> str:
    """Hex SHA-256 of a regular file, opened once and checked on the descriptor (a FIFO or a device is refused)."""
    digest = hashlib.sha256()
    with open_bounded(path, limit=MAX_SUBJECT_BYTES, what="attested file", error=_Refused) as handle:
        try:
            while block := handle.read(1 << 20):
                digest.update(block)
        except OSError as exc:
            raise _Refused(f"{path}: cannot read attested file ({exc.strerror or exc})") from None
    return digest.hexdigest()


def _inside(folder: Path, path: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


# ------------------------------------------------------------- binding and trust


def _check_binding(acc: _Acc) -> None:
    """The PDF signature and the attestation must come from one key set."""
    if acc.att_signer is None or not acc.pdf_signers:
        return
    att_fp, named_cert, _ = acc.att_signer
    for cert_fp, subject, named_key in acc.pdf_signers:
        if named_cert is None:
            acc.add(
                ATTESTATION_FILE,
                False,
                f"names no PDF certificate, so nothing shows that it and {PDF_FILE} (signed by {cert_fp}) come "
                "from one signer (re-sign with this cvaudit: `cvaudit report RESULTS --out DIR --sign-key KEYS`)",
            )
        elif named_cert != cert_fp:
            acc.add(
                ATTESTATION_FILE,
                False,
                f"names PDF certificate {echo(named_cert, 80)}, but {PDF_FILE} is signed by {cert_fp} ({subject}): "
                "the PDF and the attestation come from different key sets",
            )
        elif named_key is not None and named_key != att_fp:
            acc.add(
                PDF_FILE,
                False,
                f"its certificate ({subject}) names attestation key {named_key}, but {ATTESTATION_FILE} is signed "
                f"by {att_fp}: different key sets",
            )
        else:
            acc.add(PDF_FILE, True, f"signed by the key set of the attestation (certificate {cert_fp})")
            acc.bound = True


def _judge_trust(acc: _Acc, anchors: TrustAnchors) -> list[Signer]:
    """Who signed, and whether the anchors vouch for each signature (see the module docstring)."""
    bound = acc.bound
    att_fp = acc.att_signer[0] if acc.att_signer else None
    att_direct = anchors.trusts(att_fp)
    pdf_direct = {fp: anchors.trusts(fp) or fp in acc.pdf_chains for fp, _, _ in acc.pdf_signers}
    signers: list[Signer] = []
    for fp, subject, _ in acc.pdf_signers:
        if anchors.trusts(fp):
            ok, why = True, f"fingerprint in {anchors.fingerprints[fp]}"
        elif fp in acc.pdf_chains:
            ok, why = True, acc.pdf_chains[fp]
        elif bound and att_direct:
            ok, why = True, f"named by the attestation, whose key is in {anchors.fingerprints[att_fp]}"
        else:
            ok, why = False, _untrusted_reason(anchors)
        signers.append(Signer(PDF_FILE, "pdf-certificate", fp, subject, ok, why))
    if acc.att_signer is not None:
        subject = next((s for _, s, _ in acc.pdf_signers), None) or acc.att_signer[2] or "(no certificate subject)"
        vouching_pdf = [fp for fp, _, named in acc.pdf_signers if named == att_fp and pdf_direct[fp]]
        if att_direct:
            ok, why = True, f"fingerprint in {anchors.fingerprints[att_fp]}"
        elif bound and vouching_pdf:
            ok, why = True, f"named by the PDF certificate {vouching_pdf[0]}, which is trusted"
        elif att_fp in anchors.vouched:
            ok, why = True, f"named by the trusted certificate {anchors.vouched[att_fp]}"
        else:
            ok, why = False, _untrusted_reason(anchors)
        signers.append(Signer(ATTESTATION_FILE, "attestation-key", att_fp, subject, ok, why))
    return signers


def _untrusted_reason(anchors: TrustAnchors) -> str:
    if not anchors:
        return "no trust anchor given"
    return f"not among the anchors ({anchors.describe()})"


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
