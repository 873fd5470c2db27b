"""Reports: render results as HTML/PDF, sign them, and verify signatures.

:func:`write_outputs` writes the whole output set of one results into the
staging folder of an :class:`reports.outputs.OutputTransaction` and swaps it in;
``cvaudit run`` and ``cvaudit report`` both call it. :func:`write_reports` (the
reports, their signature and the attestation) is its last step. Heavy
dependencies (WeasyPrint, pyHanko) are imported lazily.

Callers outside ``reports`` import from here, never from a submodule (an
import-linter contract in pyproject.toml).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audit.contract.load import parse_results
from audit.contract.results import Results
from audit.contract.version import tool_version
from reports.atomic import atomic_write_bytes, atomic_write_text
from reports.error_examples import error_examples as find_error_examples
from reports.html import render_html
from reports.junit import write_junit
from reports.keys import (
    CA_CERT,
    PASSPHRASE_ENV,
    PUBLIC_DIR,
    TRUST_FILE,
    SigningError,
    SigningKeys,
    keygen,
    load_signing_keys,
    passphrase_from_env,
)
from reports.model_card import write_model_card
from reports.outputs import (
    ATTESTED_FILES,
    DEFAULT_MODE,
    MARKER_FILE,
    OUTPUT_FILES,
    OutputError,
    OutputTransaction,
    check_out_dir,
    claim_output_folder,
    parse_mode,
)
from reports.signature_view import signature_view
from reports.summary_md import render_markdown_summary
from reports.trust import MAX_TRUST_FILE, TRUST_ENV, load_anchors
from reports.verify import verify as verify_report

__all__ = [
    "ATTESTED_FILES",
    "CA_CERT",
    "DEFAULT_MODE",
    "MARKER_FILE",
    "MAX_TRUST_FILE",
    "PASSPHRASE_ENV",
    "PUBLIC_DIR",
    "TRUST_ENV",
    "TRUST_FILE",
    "OutputError",
    "OutputSet",
    "OutputTransaction",
    "SigningError",
    "SigningKeys",
    "atomic_write_text",
    "check_out_dir",
    "claim_output_folder",
    "find_error_examples",
    "keygen",
    "load_anchors",
    "load_signing_keys",
    "parse_mode",
    "passphrase_from_env",
    "render_html",
    "render_markdown_summary",
    "results_json_bytes",
    "verify_report",
    "write_junit",
    "write_model_card",
    "write_outputs",
    "write_reports",
]

FORMATS = ("html", "pdf")


@dataclass(frozen=True)
class OutputSet:
    """What :func:`write_outputs` did.

    Attributes:
        written: The files this call wrote, in writing order (paths in the
            staging folder; after the swap each is ``--out / path.name``).
        files: The output files in ``--out`` after the swap, sorted by name.
        notes: One line each for the person running it: an output kept from
            ``--out`` that the attestation does not cover, a leftover of an
            interrupted run cleaned up during the swap.
    """

    written: tuple[Path, ...]
    files: tuple[Path, ...]
    notes: tuple[str, ...]


def results_json_bytes(results: Results, *, legacy: bool = False) -> bytes:
    """The bytes of a run's ``results.json``: two-space indented UTF-8 JSON, keys in model order, no NaN.

    The one place results are serialised: the keys the results carry (:meth:`Node.to_dict
    <audit.contract.results.base.Node.to_dict>`), written by :func:`json.dumps`. ``legacy``: keys
    sorted and non-ASCII escaped, as :func:`write_reports` writes a missing results.json.
    """
    data = results.to_dict()
    if legacy:
        return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8")
    return (json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")


def write_outputs(
    outputs: OutputTransaction,
    results: Results,
    *,
    results_json: bytes | None,
    formats: Sequence[str] = FORMATS,
    sign_key: str | os.PathLike[str] | None = None,
    passphrase: bytes | None = None,
    extra_subjects: Mapping[str, str | os.PathLike[str]] | None = None,
    predictions: str | os.PathLike[str] | None = None,
    governance: Iterable[Mapping[str, Any]] | None = None,
    check_order: Sequence[str] = (),
    breaking_points: str | os.PathLike[str] | None = None,
    staged: Sequence[str | os.PathLike[str]] = (),
    keep_previous: bool = False,
) -> OutputSet:
    """Write the output set of one results into ``outputs.stage``, the attestation last, and swap it in.

    The one writer of ``cvaudit run`` and ``cvaudit report``; what differs
    between them is given here. In order: ``breaking_points.csv`` is moved in,
    ``results.json``, ``junit.xml`` (when the results have a policy section),
    ``governance.csv`` (when ``governance`` is given), ``groups.csv`` and
    ``skipped.csv`` are written, outputs of ``--out`` are kept when
    ``keep_previous``, then :func:`write_reports` renders, signs and attests, and
    :meth:`OutputTransaction.commit` swaps the set in. The attestation covers
    the files written here, ``results.json`` and, when ``predictions`` is given,
    ``predictions.csv``; an output only kept from ``--out`` is not covered.

    Args:
        outputs: The open transaction on ``--out``; a ``predictions.csv`` of
            these results is already in ``outputs.stage`` or kept from ``--out``.
        results: The results (:func:`audit.contract.load_results`, or as a run built them).
        results_json: The bytes of ``results.json`` (:func:`results_json_bytes`
            for a run; the stored file's bytes for a copy); ``None`` when
            ``--out`` already holds this very file, which is then kept as it is
            (needs ``keep_previous``).
        formats: Report formats, any of ``"html"`` and ``"pdf"``.
        sign_key: A key folder from ``cvaudit keygen``; ``None``: unsigned, no attestation.
        passphrase: Passphrase of the key folder's private keys.
        extra_subjects: Name -> file outside the folder to attest (model, manifest).
        predictions: The predictions.csv known to belong to ``results``: the
            report names samples from it and the attestation covers it.
        governance: The rows of ``governance.csv`` (the governance scan's
            affected samples); ``None`` writes no governance.csv.
        check_order: The order of the governance checks in governance.csv.
        breaking_points: A ``breaking_points.csv`` written outside the staging
            folder; it is moved in.
        staged: Outputs the run already wrote into ``outputs.stage`` (a detection
            run's ``detections.json`` and ``detections.csv``); attested with the rest.
        keep_previous: Carry the outputs of ``--out`` this call does not write
            into the new set unchanged (``cvaudit report`` updates part of a
            folder); ``False`` replaces the whole set (a run).

    Returns:
        The files written, the files in ``--out`` and the notes.

    Raises:
        ValueError: ``results_json`` is ``None`` without ``keep_previous``, or an unknown format.
        SigningError: The key folder cannot be used.
        OSError: A file cannot be read or written (``--out`` is left as it was).
    """
    from reports.attestation import ATTESTATION_FILE
    from reports.governance_csv import write_governance_csv
    from reports.groups_csv import write_groups_csv
    from reports.junit import write_junit
    from reports.keys import ATTESTATION_PUB
    from reports.skipped_csv import write_skipped_csv

    if results_json is None and not keep_previous:
        raise ValueError("write_outputs: results_json is None, but --out is not kept (keep_previous=False)")
    stage, out_dir = outputs.stage, outputs.out_dir
    notes: list[str] = []
    written: list[Path] = []
    if breaking_points is not None:
        os.replace(breaking_points, stage / "breaking_points.csv")
        written.append(stage / "breaking_points.csv")
    written += [Path(p) for p in staged]
    if results_json is not None:
        written.append(atomic_write_bytes(stage / "results.json", results_json))
    if results.policy is not None:
        written.append(write_junit(results.policy, results.governance.findings, stage / "junit.xml"))
    elif keep_previous and (out_dir / "junit.xml").exists():
        notes.append(f"{out_dir / 'junit.xml'} is not covered: these results have no policy section")
    if governance is not None:
        written.append(write_governance_csv(governance, stage / "governance.csv", check_order=list(check_order)))
    written.append(write_groups_csv(results, stage / "groups.csv"))
    written.append(write_skipped_csv(results, stage / "skipped.csv"))
    attest = ["results.json", *(p.name for p in written if p.name != "results.json")]
    attest += [f"report.{fmt}" for fmt in formats]
    if predictions is not None:
        attest.append("predictions.csv")
    if keep_previous:  # outputs this call does not write stay as they are; an old attestation never does
        rewritten = {ATTESTATION_FILE, ATTESTATION_PUB} | {f"report.{fmt}" for fmt in formats}
        outputs.keep(name for name in OUTPUT_FILES if name not in rewritten)
    written += write_reports(
        stage,
        results,
        formats=formats,
        sign_key=sign_key,
        passphrase=passphrase,
        extra_subjects=extra_subjects,
        attest_files=attest,
        predictions=predictions,
    )
    before = len(outputs.notes)
    files = outputs.commit()
    notes += outputs.notes[before:]
    return OutputSet(written=tuple(written), files=tuple(files), notes=tuple(notes))


def write_reports(
    out_dir: str | os.PathLike[str],
    results: Results | Mapping[str, Any],
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
        results: The results (typed, or a dict as in results.json: read by the one reader first).
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
        ResultsError: The results are a mapping that is not valid results.json content.
        SigningError: The key folder cannot be used (nothing is written).
        ValueError: An unknown format.
        OSError: The folder or an extra subject cannot be read or written.
    """
    model = results if isinstance(results, Results) else parse_results(dict(results), source="results")
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
        # the edge where the results become bytes: the caller's mapping as given, or the model's JSON keys
        if isinstance(results, Results):
            written.append(atomic_write_bytes(results_path, results_json_bytes(model, legacy=True)))
        else:
            text = json.dumps(dict(results), indent=2, sort_keys=True) + "\n"
            written.append(atomic_write_text(results_path, text))
    html = render_html(model, signature=signature_view(keys, pdf="pdf" in formats), predictions=predictions)
    if "html" in formats:
        written.append(atomic_write_text(folder / "report.html", html))
    if "pdf" in formats:
        written.append(_write_pdf(folder / "report.pdf", html, [results_path], keys))
    if keys is not None:
        names = ATTESTED_FILES if attest_files is None else tuple(attest_files)
        written.extend(_write_attestation(folder, model, keys, extra_subjects or {}, names))
    return written


def _write_pdf(path: Path, html: str, attachments: list[Path], keys: SigningKeys | None) -> Path:
    from reports.pdf import pdf_bytes

    data = pdf_bytes(html, attachments=attachments)
    if keys is not None:
        from reports.signing import sign_pdf_bytes

        data = sign_pdf_bytes(data, keys)
    return atomic_write_bytes(path, data)


def _write_attestation(folder: Path, results: Results, keys: SigningKeys, extra, names: Sequence[str]) -> list[Path]:
    from reports.attestation import write_attestation
    from reports.keys import ATTESTATION_PUB

    policy = results.policy
    predicate = {
        "verdict": policy.verdict if policy else None,
        "policy": {"name": policy.name if policy else None, "sha256": policy.sha256 if policy else None},
        "tool": {"name": "cvaudit", "version": tool_version()},
        "audit_tool_version": results.tool.version,
        "schema_version": results.schema_version,
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
