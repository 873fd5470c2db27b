"""Reports: render results as HTML/PDF, sign them, and verify signatures.

The orchestrator calls :func:`write_reports` once, after it has written
``results.json`` (and ``predictions.csv``, ``junit.xml``) into the output
folder. Heavy dependencies (WeasyPrint, pyHanko) are imported lazily.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from audit.contract.version import tool_version
from reports.atomic import atomic_write_bytes, atomic_write_text
from reports.html import as_results_dict, render_html
from reports.keys import SigningError, SigningKeys, keygen, load_signing_keys
from reports.outputs import ATTESTED_FILES
from reports.signature_view import signature_view

__all__ = [
    "ATTESTED_FILES",
    "SigningError",
    "SigningKeys",
    "keygen",
    "load_signing_keys",
    "render_html",
    "write_reports",
]

FORMATS = ("html", "pdf")


def write_reports(
    out_dir: str | os.PathLike[str],
    results: Mapping[str, Any],
    *,
    formats: Sequence[str] = FORMATS,
    sign_key: str | os.PathLike[str] | None = None,
    passphrase: bytes | None = None,
    extra_subjects: Mapping[str, str | os.PathLike[str]] | None = None,
    attest_files: Sequence[str] | None = None,
    predictions: str | os.PathLike[str] | None = None,
) -> list[Path]:
    """Render, sign and attest the reports of one run; every write is atomic.

    Order: check the schema and load the keys (so a bad key writes nothing),
    remove a stale ``attestation.dsse.json``, write ``report.html``, render
    the PDF with ``results.json`` attached and sign it in memory before its
    single atomic write, then write ``attestation.pub.pem`` and the
    attestation over every report file present plus ``extra_subjects``.

    Args:
        out_dir: The run's output folder; ``results.json`` should already be
            there (it is written from ``results`` if missing).
        results: The results (typed, or a dict as in results.json: validated first).
        formats: Any of ``"html"`` and ``"pdf"``.
        sign_key: A key folder from ``cvaudit keygen``; ``None`` writes
            unsigned reports and no attestation.
        passphrase: Passphrase of the key folder's private keys.
        extra_subjects: Name -> file to attest besides the folder's files,
            e.g. ``{"model.pt": model_path, "manifest.csv": manifest_path}``.
        attest_files: Names of the folder's files to attest; ``None`` attests
            every file of :data:`ATTESTED_FILES` present (right for a fresh run
            folder). A caller re-rendering into a folder that may hold files of
            another run passes only the files it wrote or checked.
        predictions: The run's predictions.csv, when it is known to belong to ``results``: the
            report names misclassified samples from it (:mod:`reports.error_examples`).

    Returns:
        The files written, in writing order.

    Raises:
        ResultsError: The results are not valid results.json content.
        SigningError: The key folder cannot be used (nothing is written).
        ValueError: An unknown format.
        OSError: The folder or an extra subject cannot be read or written.
    """
    results = as_results_dict(results)
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ValueError(f"unknown report format(s) {', '.join(unknown)}; expected html and/or pdf")
    keys = load_signing_keys(sign_key, passphrase) if sign_key is not None else None
    for name, path in (extra_subjects or {}).items():
        if not Path(path).is_file():
            raise OSError(f"{path}: attestation subject {name!r} is not a readable file")
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    if keys is not None:
        _remove_stale_attestation(folder)
    results_path = folder / "results.json"
    if not results_path.exists():
        written.append(atomic_write_text(results_path, json.dumps(results, indent=2, sort_keys=True) + "\n"))
    html = render_html(results, signature=signature_view(keys, pdf="pdf" in formats), predictions=predictions)
    if "html" in formats:
        written.append(atomic_write_text(folder / "report.html", html))
    if "pdf" in formats:
        written.append(_write_pdf(folder / "report.pdf", html, [results_path], keys))
    if keys is not None:
        names = ATTESTED_FILES if attest_files is None else tuple(attest_files)
        written.extend(_write_attestation(folder, results, keys, extra_subjects or {}, names))
    return written


def _write_pdf(path: Path, html: str, attachments: list[Path], keys: SigningKeys | None) -> Path:
    from reports.pdf import pdf_bytes

    data = pdf_bytes(html, attachments=attachments)
    if keys is not None:
        from reports.signing import sign_pdf_bytes

        data = sign_pdf_bytes(data, keys)
    return atomic_write_bytes(path, data)


def _write_attestation(
    folder: Path, results: Mapping[str, Any], keys: SigningKeys, extra, names: Sequence[str]
) -> list[Path]:
    from reports.attestation import write_attestation
    from reports.keys import ATTESTATION_PUB

    policy = results.get("policy") if isinstance(results.get("policy"), Mapping) else {}
    audit_tool = results.get("tool") if isinstance(results.get("tool"), Mapping) else {}
    predicate = {
        "verdict": policy.get("verdict"),
        "policy": {"name": policy.get("name"), "sha256": policy.get("sha256")},
        "tool": {"name": "cvaudit", "version": tool_version()},
        "audit_tool_version": audit_tool.get("version"),
        "schema_version": results.get("schema_version"),
        # binds this attestation to the PDF signature: the verifier requires report.pdf to be
        # signed by exactly this certificate (and the DSSE keyid is the attestation key's fingerprint)
        "signer": {
            "pdf_certificate": keys.certificate_fingerprint,
            "attestation_key": keys.attestation_key_id,
            "subject": keys.subject,
        },
    }
    pub = atomic_write_bytes(folder / ATTESTATION_PUB, keys.attestation_public_pem)
    files = [folder / name for name in names if (folder / name).is_file()]
    return [pub, write_attestation(folder, files, extra, predicate, keys)]


def _remove_stale_attestation(folder: Path) -> None:
    """An attestation from an earlier run must not outlive a partial re-run."""
    from reports.attestation import ATTESTATION_FILE

    try:
        (folder / ATTESTATION_FILE).unlink()
    except FileNotFoundError:
        pass
