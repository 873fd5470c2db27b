"""One way to exit: commands return their exit code and only :mod:`audit.cli.boundary` ends the process."""

from __future__ import annotations

import re
from pathlib import Path

import click
from click.testing import CliRunner

from audit.cli.boundary import boundary
from audit.contract.errors import ExitCode

CLI = Path(__file__).resolve().parents[2] / "audit" / "cli"
EXITS = re.compile(r"\bsys\.exit\(|\bSystemExit\(|\bexceptions\.Exit\(|\bctx\.exit\(")


def test_no_command_module_ends_the_process_itself():
    offenders = [
        f"{path.name}:{n}"
        for path in sorted(CLI.glob("*.py"))
        if path.name != "boundary.py"
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if EXITS.search(line)
    ]
    assert offenders == []
    assert len(EXITS.findall((CLI / "boundary.py").read_text(encoding="utf-8"))) == 1  # exit_with


def _command(code):
    @click.command()
    @boundary
    def command():
        return code

    return command


def test_a_returned_exit_code_becomes_the_process_exit_code():
    assert CliRunner().invoke(_command(ExitCode.FAIL)).exit_code == 1
    assert CliRunner().invoke(_command(ExitCode.PASS)).exit_code == 0
    assert CliRunner().invoke(_command(None)).exit_code == 0
    assert CliRunner().invoke(_command(2)).exit_code == 2
