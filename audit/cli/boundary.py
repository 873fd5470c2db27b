"""The one command boundary: where exceptions become exit codes and one line on stderr.

Every ``cvaudit`` subcommand runs inside :func:`command_boundary` (or is
decorated with :func:`boundary`), and this module is the one place that ends
the process (:func:`exit_with`): a command decorated with :func:`boundary`
*returns* its exit code (an :class:`~audit.contract.errors.ExitCode` or an int;
None is 0), it never calls ``sys.exit`` itself.

- a :class:`~audit.contract.errors.CvauditError` (bad input the user can fix)
  and an :class:`OSError` (a file that cannot be read or written) become
  ``cvaudit: error: <one line>`` and exit code 2;
- ``KeyboardInterrupt`` becomes exit code 2 and says that nothing was written;
- any other exception is a bug in cvaudit: it says so, exit code 2, and
  ``CVAUDIT_DEBUG=1`` prints the traceback;
- a warning (``warnings.warn``: a loosely protected encrypted key, the
  leftovers of an interrupted run cleaned up) is one line
  ``cvaudit: warning: <message>`` on stderr; a deprecation notice that a
  dependency raises about its own code (``DeprecationWarning``,
  ``PendingDeprecationWarning``, ``FutureWarning`` or a category named like
  ``CryptographyDeprecationWarning``, from a file outside cvaudit's packages)
  says nothing a user of cvaudit can act on and is not printed
  (``CVAUDIT_DEBUG=1`` prints it).

Every line printed here is neutralised (:func:`audit.contract.text.neutralise`),
so users' strings cannot carry terminal escape sequences to the terminal.
"""

from __future__ import annotations

import functools
import os
import sys
import traceback
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from audit.contract.errors import CvauditError, ExitCode
from audit.contract.text import neutralise

__all__ = ["boundary", "command_boundary", "exit_with", "fail", "say"]

F = TypeVar("F", bound=Callable[..., Any])


def say(message: str, *, err: bool = True) -> None:
    """Print one neutralised line (stderr by default)."""
    click.echo(neutralise(message), err=err)


def exit_with(code: int) -> NoReturn:
    """End the command with exit code ``code`` (the only ``sys.exit`` of the command line)."""
    sys.exit(int(code))


def fail(message: str, code: int = ExitCode.ERROR) -> NoReturn:
    """Print ``cvaudit: error: <message>`` on stderr and exit with ``code`` (2 by default)."""
    say(f"cvaudit: error: {message}")
    exit_with(code)


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0][:300] if lines else ""


_OWN_PACKAGES = tuple(
    str(Path(__file__).resolve().parents[2] / name) + os.sep for name in ("audit", "stressors", "policies", "reports")
)


def _dependency_deprecation(category: type[Warning], filename: str) -> bool:
    """A deprecation notice raised outside cvaudit's own packages (a dependency talking about its own API)."""
    deprecation = issubclass(category, (DeprecationWarning, PendingDeprecationWarning, FutureWarning)) or (
        "Deprecat" in category.__name__
    )
    try:
        ours = str(Path(filename).resolve()).startswith(_OWN_PACKAGES)
    except (OSError, ValueError):
        ours = False
    return deprecation and not ours


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    if _dependency_deprecation(category, filename) and not os.environ.get("CVAUDIT_DEBUG"):
        return
    say(f"cvaudit: warning: {_first_line(message) if isinstance(message, Warning) else message}")


@contextmanager
def command_boundary() -> Iterator[None]:
    """Map exceptions to exit codes and warnings to one line each (see the module docstring)."""
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            yield
    except CvauditError as err:
        fail(str(err))
    except OSError as err:
        where = f"{err.filename}: " if getattr(err, "filename", None) else ""
        fail(f"{where}{err.strerror or _first_line(err) or type(err).__name__}")
    except KeyboardInterrupt:
        fail("interrupted; no report was written")
    except (click.exceptions.Exit, click.ClickException, SystemExit):
        raise
    except Exception as err:
        debug = bool(os.environ.get("CVAUDIT_DEBUG"))
        if debug:
            traceback.print_exc()
        hint = "" if debug else "; set CVAUDIT_DEBUG=1 for the traceback"
        fail(f"internal error (a bug in cvaudit; please report it): {type(err).__name__}: {_first_line(err)}{hint}")


def boundary(fn: F) -> F:
    """Decorate a click command's function so that it runs inside :func:`command_boundary`.

    The function's return value, when an int (an :class:`~audit.contract.errors.ExitCode`), is the
    command's exit code; stdout is flushed before the process exits with it.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with command_boundary():
            code = fn(*args, **kwargs)
        if isinstance(code, int) and not isinstance(code, bool):
            sys.stdout.flush()
            exit_with(code)
        return code

    wrapper.__cvaudit_boundary__ = True  # type: ignore[attr-defined]  # tests/test_contributing.py checks every command
    return wrapper  # type: ignore[return-value]
