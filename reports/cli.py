"""Click commands for keys, reports and verification.

``keygen_command``, ``report_command`` and ``verify_command`` are plain
:class:`click.Command` objects that the main ``cvaudit`` group adds. Library
exceptions become exit codes here and only here: 0 success (or a valid
signature), 1 invalid or tampered (``verify``), 2 unusable input, with a
one-line reason on stderr.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

__all__ = ["PASSPHRASE_ENV", "keygen_command", "passphrase_from_env", "report_command", "verify_command"]

PASSPHRASE_ENV = "CVAUDIT_KEY_PASSPHRASE"


def passphrase_from_env() -> bytes | None:
    """The key passphrase from ``CVAUDIT_KEY_PASSPHRASE``, or ``None`` if unset or empty."""
    value = os.environ.get(PASSPHRASE_ENV)
    return value.encode("utf-8") if value else None


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"cvaudit: {message}", err=True)
    raise SystemExit(code)


@click.command("keygen")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder to create for the keys.")
@click.option("--force", is_flag=True, help="Overwrite existing keys in the folder.")
@click.option("--name", "common_name", default="cvaudit report signer", show_default=True,
              help="Common name in the self-signed PDF-signing certificate.")
def keygen_command(out_dir: Path, force: bool, common_name: str) -> None:
    """Create offline signing keys (ECDSA P-256 + certificate for the PDF, Ed25519 for the attestation).

    Private keys are written with mode 0600 and encrypted with
    $CVAUDIT_KEY_PASSPHRASE when it is set. Give the public files
    (attestation.pub.pem, pdf-signing.cert.pem) to whoever verifies reports.
    """
    from reports.keys import SigningError, keygen

    passphrase = passphrase_from_env()
    try:
        files = keygen(out_dir, passphrase=passphrase, common_name=common_name, overwrite=force)
    except SigningError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"{out_dir}: cannot write keys ({exc.strerror or exc})")
    for path in files:
        click.echo(str(path))
    if passphrase is None:
        click.echo(f"warning: private keys are not encrypted (set {PASSPHRASE_ENV} to encrypt them)", err=True)


@click.command("report")
@click.argument("results_path", metavar="RESULTS.json", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for report.html, report.pdf (and the attestation).")
@click.option("--sign-key", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Key folder from `cvaudit keygen`; signs the PDF and writes attestation.dsse.json.")
@click.option("--format", "formats", default="html,pdf", show_default=True,
              help="Comma-separated report formats: html, pdf.")
def report_command(results_path: Path, out_dir: Path, sign_key: Path | None, formats: str) -> None:
    """Render (and sign) the reports again from a stored results.json.

    The results are rendered as stored, never recomputed. results.json is
    copied into --out when it is elsewhere, so it is attached to the PDF and
    covered by the attestation. Exit 0 when written, 2 on bad input or key.
    """
    from reports import ResultsSchemaError, SigningError, write_reports

    try:
        raw = results_path.read_bytes()
        results = json.loads(raw)
    except OSError as exc:
        _fail(f"{results_path}: cannot be read ({exc.strerror or exc})")
    except ValueError as exc:
        _fail(f"{results_path}: not valid JSON ({str(exc).splitlines()[0]})")
    wanted = tuple(f.strip() for f in formats.split(",") if f.strip())
    try:
        from reports.html import check_schema_version
        from reports.keys import load_signing_keys

        check_schema_version(results)
        if sign_key is not None:
            load_signing_keys(sign_key, passphrase_from_env())  # fail before writing anything
        out_dir.mkdir(parents=True, exist_ok=True)
        target = out_dir / "results.json"
        if not (target.exists() and target.resolve() == results_path.resolve()):
            from reports.atomic import atomic_write_bytes

            atomic_write_bytes(target, raw)
        written = write_reports(out_dir, results, formats=wanted, sign_key=sign_key,
                                passphrase=passphrase_from_env(), extra_subjects=None)
    except ResultsSchemaError as exc:
        _fail(f"{results_path}: {exc}")
    except (SigningError, ValueError) as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"{getattr(exc, 'filename', None) or out_dir}: {exc.strerror or exc}")
    for path in written:
        click.echo(str(path))


@click.command("verify")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--key", "key_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Key folder (public files suffice) that must have signed; without it only integrity is checked.")
@click.option("--subject", "subjects", multiple=True, metavar="NAME=PATH",
              help="Also check an attested file kept outside the report folder (model, manifest).")
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text", show_default=True)
def verify_command(path: Path, key_dir: Path | None, subjects: tuple[str, ...], output_format: str) -> None:
    """Verify a report folder, report.pdf or attestation.dsse.json.

    Checks the PDF's PAdES signature (intact, whole file covered), the DSSE
    signature and every attested file's SHA-256. Exit 0 valid, 1 invalid or
    tampered (the file is named), 2 unusable input.
    """
    from reports.verify import verify

    given: dict[str, Path] = {}
    for item in subjects:
        name, sep, file = item.partition("=")
        if not sep or not name or not file:
            _fail(f"--subject {item!r}: expected NAME=PATH")
        given[name] = Path(file)
    report = verify(path, key_dir=key_dir, subjects=given)
    if output_format == "json":
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        stream_err = report.exit_code == 2
        click.echo(report.to_text(), err=stream_err)
    sys.stdout.flush()
    raise SystemExit(report.exit_code)
