"""The one exception type that becomes exit code 2 at the CLI boundary."""


class AuditError(Exception):
    """The audit could not run. ``str(err)`` is one line naming the file/key/sample and the problem."""
