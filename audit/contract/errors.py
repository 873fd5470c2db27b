"""Exit codes and the one base class of every error a user can fix.

Every layer raises a subclass of :class:`CvauditError` for bad input (a config
key, a policy rule, a manifest row, a signing key, a results file); its
``str()`` is one line naming the file, the key or sample, and the problem. The
command line turns exactly these into exit code 2 (:mod:`audit.cli.boundary`);
any other exception is a bug in cvaudit and is reported as one.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["MAX_ECHO", "AuditError", "CvauditError", "ExitCode", "echo"]

#: The most characters of user input an error message quotes (longer input is cut).
MAX_ECHO = 200


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
        return " ".join(super().__str__().split()) or type(self).__name__


class AuditError(CvauditError):
    """The audit could not run (config, model, data, outputs)."""


def echo(value: object, limit: int = MAX_ECHO) -> str:
    """``repr(value)`` cut to ``limit`` characters, for quoting user input in a message.

    >>> echo("x" * 300, 10)
    "'xxxxxxx… (302 characters)"
    """
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[: limit - 2]}… ({len(text)} characters)"
