"""One command boundary for every subcommand: one line, exit 2, and bugs called bugs."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from audit.cli import COMMANDS, main
from audit.contract.errors import ExitCode


def _one_error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == ExitCode.ERROR, result.output
    assert len(lines) == 1 and lines[0].startswith("cvaudit: error: "), result.output
    return lines[0]


@pytest.mark.parametrize(
    "args",
    [
        ["run", "absent.yaml"],
        ["policy", "check", "absent.json", "--policy", "ci-gate"],
        ["policy", "show", "no-such-policy"],
        ["report", "absent.json", "--out", "out"],
        ["report", "absent.json", "--out", "out", "--format", "docx"],
        ["keygen", "--out", "keys"],  # run twice below: refuses to overwrite
        ["verify", "nothing-here"],
        ["verify", ".", "--subject", "no-equals-sign"],
        ["stressors", "preview", "absent.png"],
    ],
    ids=lambda a: " ".join(a[:2]),
)
def test_every_subcommand_reports_bad_input_in_one_line(tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    if args[0] == "keygen":
        assert runner.invoke(main, args).exit_code == 0
    result = runner.invoke(main, args)
    if args[0] == "verify" and args[1] == "nothing-here":
        assert result.exit_code == ExitCode.ERROR and "UNUSABLE" in result.output
        return
    _one_error_line(result)


def test_every_registered_subcommand_loads():
    for name in COMMANDS:
        assert main.get_command(None, name) is not None, name


def test_an_unexpected_exception_is_called_a_bug(tmp_path, monkeypatch):
    import audit.cli.run as run_module

    def broken(*args, **kwargs):
        raise TypeError("NoneType is not subscriptable")

    monkeypatch.setattr(run_module, "run_config", broken)
    result = CliRunner().invoke(main, ["run", str(tmp_path / "c.yaml")])
    line = _one_error_line(result)
    assert "internal error (a bug in cvaudit; please report it): TypeError: NoneType is not subscriptable" in line
    assert "CVAUDIT_DEBUG=1" in line

    monkeypatch.setenv("CVAUDIT_DEBUG", "1")
    result = CliRunner().invoke(main, ["run", str(tmp_path / "c.yaml")])
    assert result.exit_code == ExitCode.ERROR and "Traceback" in result.output


def test_terminal_escape_sequences_in_user_input_are_neutralised(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    name = "evil\x1b]0;owned\x07.json"
    result = CliRunner().invoke(main, ["policy", "check", name, "--policy", "ci-gate"])
    line = _one_error_line(result)
    assert "\x1b" not in line and "\x07" not in line and "\\x1b]0;owned\\x07" in line


def test_help_lists_every_subcommand():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert name in result.output


class CryptographyDeprecationWarning(UserWarning):
    """Named like cryptography's: a UserWarning subclass, so Python's default filters show it."""


def _warnings_printed(emit, capsys, monkeypatch, debug: bool = False) -> str:
    from audit.cli.boundary import command_boundary

    monkeypatch.delenv("CVAUDIT_DEBUG", raising=False)
    if debug:
        monkeypatch.setenv("CVAUDIT_DEBUG", "1")
    with command_boundary():
        emit()
    return capsys.readouterr().err


def test_a_dependency_deprecation_notice_is_not_printed(capsys, monkeypatch, tmp_path):
    """Issue 30: `cvaudit: warning: DSA is deprecated...` from a dependency on every first run."""
    import warnings

    elsewhere = str(tmp_path / "site-packages" / "somecrypto" / "dsa.py")

    def dependency():
        for category in (CryptographyDeprecationWarning, DeprecationWarning, FutureWarning):
            warnings.warn_explicit("DSA is deprecated", category, elsewhere, 1, module="somecrypto.dsa")

    assert "DSA" not in _warnings_printed(dependency, capsys, monkeypatch)
    assert _warnings_printed(dependency, capsys, monkeypatch, debug=True).count("DSA is deprecated") == 3


def test_cvaudits_own_warnings_are_printed(capsys, monkeypatch):
    import warnings

    import audit.cli.boundary as boundary

    def own():
        warnings.warn_explicit("a key file is readable by others", UserWarning, boundary.__file__, 1)
        warnings.warn_explicit("a renamed option", DeprecationWarning, boundary.__file__, 2)

    err = _warnings_printed(own, capsys, monkeypatch)
    assert "cvaudit: warning: a key file is readable by others" in err and "cvaudit: warning: a renamed option" in err


def test_a_dependency_user_warning_is_still_printed(capsys, monkeypatch, tmp_path):
    import warnings

    def dependency():
        warnings.warn_explicit("Corrupt EXIF data", UserWarning, str(tmp_path / "PIL" / "TiffImagePlugin.py"), 1)

    assert "cvaudit: warning: Corrupt EXIF data" in _warnings_printed(dependency, capsys, monkeypatch)
