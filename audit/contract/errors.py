"""Exit codes and the one base class of every error a user can fix.

Every layer raises a subclass of :class:`CvauditError` for bad input (a config
key, a policy rule, a manifest row, a signing key, a results file); its
``str()`` is one line naming the file, the key or sample, and the problem. The
command line turns exactly these into exit code 2 (:mod:`audit.cli.boundary`);
any other exception is a bug in cvaudit and is reported as one.
"""

from __future__ import annotations

import reprlib
from enum import IntEnum

__all__ = ["MAX_ECHO", "MAX_MESSAGE", "AuditError", "CvauditError", "ExitCode", "echo", "one_line"]

#: The most characters of user input an error message quotes (longer input is cut).
MAX_ECHO = 200
#: The most characters of any error message (a safety net behind :func:`echo`): a hostile
#: input cannot make cvaudit print a megabyte-long line.
MAX_MESSAGE = 1000


class ExitCode(IntEnum):
    """What a ``cvaudit`` command tells its caller (CI reads only this).

    ``PASS`` (0): every blocking rule passed (``verify``: the signature is valid
    and trusted). ``FAIL`` (1): a blocking rule failed (``verify``: invalid,
    tampered or untrusted). ``ERROR`` (2): the command could not run.
    """

    PASS = 0
    FAIL = 1
    ERROR = 2


class CvauditError(Exception):
    """Bad input the user can fix; ``str(err)`` is one line naming where and what.

    Subclasses name the stage (:class:`AuditError`, ``PolicyError``,
    ``SigningError``, ``StressorError``, ``ResultsError``, ``ManifestError``);
    all of them become exit code 2 with that one line on stderr.
    """

    def __str__(self) -> str:
        return one_line(super().__str__()) or type(self).__name__


def one_line(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` with whitespace runs (newlines included) collapsed, cut to ``limit`` characters.

    >>> one_line("a\\n  b")
    'a b'
    >>> len(one_line("x" * 5000))
    1000
    """
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    tail = f"… (message cut, {len(flat)} characters)"
    return flat[: limit - len(tail)] + tail


class AuditError(CvauditError):
    """The audit could not run (config, model, data, outputs)."""


def echo(value: object, limit: int = MAX_ECHO) -> str:
    """``repr(value)`` cut to ``limit`` characters, for quoting user input in a message.

    >>> echo("x" * 300, 10)
    "'xxxxxxx… (302 characters)"
    """
    if isinstance(value, str):
        text = repr(value)
        if len(text) <= limit:
            return text
        return f"{text[: limit - 2]}… ({len(text)} characters)"
    text = _SHORT_REPR.repr(value)  # bounded work and size, whatever the nesting (YAML aliases)
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


_SHORT_REPR = reprlib.Repr()
_SHORT_REPR.maxlevel = 3
_SHORT_REPR.maxlist = _SHORT_REPR.maxtuple = _SHORT_REPR.maxdict = _SHORT_REPR.maxset = 8
_SHORT_REPR.maxstring = _SHORT_REPR.maxother = 80
