"""``cvaudit keygen``, ``cvaudit report`` and ``cvaudit verify``: keys, reports from stored results, verification.

Exit codes: 0 success (``verify``: valid), 1 invalid or tampered
(``verify``), 2 unusable input, with one line on stderr (the command boundary,
:mod:`audit.cli.boundary`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from audit.cli.boundary import boundary, fail, say

if TYPE_CHECKING:
    from audit.contract.results import Results

__all__ = ["keygen_command", "report_command", "verify_command"]


@click.command("keygen")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to create for the keys.",
)
@click.option("--force", is_flag=True, help="Overwrite existing keys in the folder.")
@click.option(
    "--subject",
    default=None,
    metavar="DN",
    help='The signer\'s identity in the certificate, e.g. "CN=Jane Doe,O=Acme Audit" (RFC 4514). '
    "Default: a CN with the key's fingerprint, which names nobody.",
)
@boundary
def keygen_command(out_dir: Path, force: bool, subject: str | None) -> None:
    """Create offline signing keys (ECDSA P-256 + certificate for the PDF, Ed25519 for the attestation).

    The PDF certificate is issued by a small CA made for it (ca.cert.pem; its
    private key is thrown away). Private keys are written with mode 0600 and
    encrypted with $CVAUDIT_KEY_PASSPHRASE when it is set. OUT/public/ is the
    bundle to give reviewers (CA and signing certificates, attestation public
    key, trust.txt with the fingerprints): they verify with `cvaudit verify DIR
    --key OUT/public` or `--trust trust.txt`, after checking the fingerprints
    with you, and may import ca.cert.pem into an NSS database for pdfsig.
    """
    from audit.contract.files import read_bounded
    from reports import (
        CA_CERT,
        MAX_TRUST_FILE,
        PASSPHRASE_ENV,
        PUBLIC_DIR,
        TRUST_FILE,
        SigningError,
        keygen,
        passphrase_from_env,
    )

    passphrase = passphrase_from_env()
    files = keygen(out_dir, passphrase=passphrase, subject=subject, overwrite=force)
    for path in files:
        click.echo(str(path))
    trust = out_dir / PUBLIC_DIR / TRUST_FILE
    text = read_bounded(trust, limit=MAX_TRUST_FILE, what="trust file", error=SigningError).decode("utf-8", "replace")
    for line in text.splitlines():
        if line.startswith("sha256:"):
            say(f"fingerprint: {line}")
    say(f"give {out_dir / PUBLIC_DIR} to reviewers; tell them the fingerprints over another channel")
    say(
        f"pdfsig users: certutil -d sql:NSSDIR -A -t ',C,' -n cvaudit-ca -i {out_dir / PUBLIC_DIR / CA_CERT}, "
        "then pdfsig -nssdir sql:NSSDIR report.pdf"
    )
    if passphrase is None:
        say(f"warning: private keys are not encrypted (set {PASSPHRASE_ENV} to encrypt them)")
    if subject is None:
        say('warning: the certificate names no one (pass --subject "CN=...,O=..." to name the signer)')


@click.command("report")
@click.argument("results_path", metavar="RESULTS.json", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for report.html, report.pdf (and the attestation).",
)
@click.option(
    "--sign-key",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Key folder from `cvaudit keygen`; signs the PDF and writes attestation.dsse.json.",
)
@click.option(
    "--format", "formats", default="html,pdf", show_default=True, help="Comma-separated report formats: html, pdf."
)
@click.option(
    "--force",
    is_flag=True,
    help="Write into a non-empty --out that cvaudit did not make (no .cvaudit-output marker); its files are kept.",
)
@click.option(
    "--out-mode",
    default="700",
    show_default=True,
    metavar="OCTAL",
    help="Mode of the --out folder; its files get the same bits without execute (700: folder 0700, files 0600).",
)
@boundary
def report_command(
    results_path: Path, out_dir: Path, sign_key: Path | None, formats: str, force: bool, out_mode: str
) -> None:
    """Render (and sign) the reports again from a stored results.json.

    The results are rendered as stored, never recomputed. results.json is
    copied into --out when it is elsewhere, so it is attached to the PDF and
    covered by the attestation; junit.xml, groups.csv and skipped.csv are written
    afresh from the results.
    The attestation covers only what belongs to these results: the files
    written now, predictions.csv only when --out is the folder the results
    came from, and the model and manifest only when their files still have the
    digests recorded in the results. Exit 0 when written, 2 on bad input or key, or an --out that
    cvaudit must not replace (a symbolic link, a system folder, a non-empty folder it did not make
    unless --force: docs/security.md#output-folders).
    """
    from audit.contract.load import parse_results, read_results_bytes
    from reports import (
        FORMATS,
        OutputTransaction,
        load_signing_keys,
        parse_mode,
        passphrase_from_env,
        write_outputs,
    )

    mode = parse_mode(out_mode)

    wanted = tuple(f.strip() for f in formats.split(",") if f.strip())
    if not wanted:
        fail(f"--format {formats!r}: no format given; expected {' and/or '.join(FORMATS)}")
    unknown = sorted(set(wanted) - set(FORMATS))
    if unknown:
        fail(f"--format {formats!r}: unknown format(s) {', '.join(unknown)}; expected {' and/or '.join(FORMATS)}")
    raw = read_results_bytes(results_path)  # bounded: a device, FIFO or huge file is refused before reading
    results = parse_results(raw, source=str(results_path))
    if sign_key is not None:
        load_signing_keys(sign_key, passphrase_from_env())  # fail before writing anything
    notes: list[str] = []
    target = out_dir / "results.json"
    same_folder = target.is_file() and target.resolve() == results_path.resolve()
    with OutputTransaction(out_dir, force=force, mode=mode) as outputs:  # all or nothing, under a lock on --out
        for note in outputs.notes:
            say(f"note: {note}")
        # named samples and the attestation take predictions.csv only from the folder of these results
        predictions = out_dir / "predictions.csv" if same_folder and (out_dir / "predictions.csv").is_file() else None
        if predictions is None and (out_dir / "predictions.csv").exists():
            notes.append(
                f"{out_dir / 'predictions.csv'} is left out of the reports and the attestation: it is not "
                "known to belong to these results (render into the folder the results came from)"
            )
        elif predictions is None and (results_path.parent / "predictions.csv").is_file():
            notes.append(
                f"{results_path.parent / 'predictions.csv'} was not copied: only results.json is "
                "re-rendered (render into that folder to attest it)"
            )
        extra = _external_subjects(results, results_path, notes) if sign_key is not None else {}
        written = write_outputs(
            outputs,
            results,
            results_json=None if same_folder else raw,  # the same folder: results.json is kept as it is
            formats=wanted,
            sign_key=sign_key,
            passphrase=passphrase_from_env(),
            extra_subjects=extra,
            predictions=predictions,
            keep_previous=True,
        )
    for path in written.written:
        click.echo(str(out_dir / path.name))
    for note in [*notes, *written.notes]:
        say(f"note: {note}")


def _external_subjects(results: Results, results_path: Path, notes: list[str]) -> dict[str, Path]:
    """``model:<name>`` / ``dataset:<name>`` subjects whose files still match the recorded digests."""
    from audit.contract.digest import sha256_file

    extra: dict[str, Path] = {}
    for kind, section in (("model", results.model), ("dataset", results.dataset)):
        recorded, where = section.sha256, section.path
        if not where:
            continue
        candidates = [Path(str(where))]
        if not candidates[0].is_absolute():
            candidates.append(results_path.parent / candidates[0])
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            notes.append(f"{kind} {where}: not found, so it is not in the attestation")
            continue
        if not recorded or sha256_file(found) != str(recorded):
            notes.append(
                f"{kind} {found}: sha256 differs from the one recorded in the results, so it is not in the attestation"
            )
            continue
        extra[f"{kind}:{found.name}"] = found
    return extra


@click.command("verify")
@click.argument("path", type=click.Path(path_type=Path))
@click.option(
    "--key",
    "key_dirs",
    type=click.Path(file_okay=False, path_type=Path),
    multiple=True,
    help="A trusted signer's key folder or its public bundle (public files suffice); repeatable.",
)
@click.option(
    "--trust",
    "trust_files",
    type=click.Path(dir_okay=False, path_type=Path),
    multiple=True,
    help="A file of trusted signer fingerprints (e.g. public/trust.txt) or PEM certificates/public keys; repeatable.",
)
@click.option(
    "--allow-untrusted",
    is_flag=True,
    help="With no trust anchor at all, exit 0 for an intact report (outcome INTACT: the signer is not authenticated).",
)
@click.option(
    "--subject",
    "subjects",
    multiple=True,
    metavar="NAME=PATH",
    help="Also check an attested file kept outside the report folder (model, manifest).",
)
@click.option(
    "--strict",
    is_flag=True,
    help="Fail when a trust anchor lies inside the report folder (UNTRUSTED) or a file there is not "
    "covered by the attestation (INVALID); both exit 1. Without it, both are warnings.",
)
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text", show_default=True)
@boundary
def verify_command(
    path: Path,
    key_dirs: tuple[Path, ...],
    trust_files: tuple[Path, ...],
    allow_untrusted: bool,
    subjects: tuple[str, ...],
    strict: bool,
    output_format: str,
) -> int:
    """Verify a report folder, report.pdf or attestation.dsse.json, and who signed it.

    Checks the PDF's PAdES signature (intact, whole file covered), the DSSE
    signature, every attested file's SHA-256, that the PDF and the attestation
    come from one key set and that the results.json inside the PDF is the
    folder's; then whether the signer is trusted: its fingerprint must come
    from --key, --trust or $CVAUDIT_TRUST. Exit 0 VALID, 1 INVALID (the file is
    named) or UNTRUSTED (intact but the signer is not trusted, or no anchor
    was given), 2 unusable input. --allow-untrusted: with no anchor, an intact
    report exits 0 as INTACT, never VALID.

    Warnings (errors under --strict, exit 1): an anchor that lies inside the
    report folder (the report vouching for itself: UNTRUSTED under --strict)
    and files in the folder that the attestation does not cover (INVALID under
    --strict, naming them).
    """
    import os

    from reports import TRUST_ENV, load_anchors
    from reports import verify_report as verify

    if allow_untrusted and (key_dirs or trust_files):
        fail("--allow-untrusted contradicts --key/--trust: with trust anchors, the signer must be among them")
    given: dict[str, Path] = {}
    for item in subjects:
        name, sep, file = item.partition("=")
        if not sep or not name or not file:
            fail(f"--subject {item!r}: expected NAME=PATH")
        given[name] = Path(file)
    anchors = load_anchors(key_dirs=key_dirs[1:], trust_files=trust_files, env=os.environ.get(TRUST_ENV))
    report = verify(
        path,
        key_dir=key_dirs[0] if key_dirs else None,
        anchors=anchors,
        allow_untrusted=allow_untrusted,
        subjects=given,
        strict=strict,
    )
    if output_format == "json":
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        for line in report.to_text().splitlines():
            say(line, err=report.exit_code == 2)
    return report.exit_code  # the boundary exits with it
