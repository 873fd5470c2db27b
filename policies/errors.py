"""The one exception type of :mod:`policies`."""

from __future__ import annotations

from audit.contract.errors import CvauditError, one_line


class PolicyError(CvauditError):
    """A policy file, or the results it is applied to, cannot be used.

    ``str(error)`` is a single line naming the file, the rule id (when the
    problem sits in a rule) and the key, e.g.::

        policy.yaml: rule 'clean-accuracy': key 'min': expected a number, got 'high'

    Attributes:
        file: Where the policy came from (a path or ``builtin:<name>``).
        rule_id: The rule concerned, or ``None``.
        key: The dotted key concerned, or ``None``.
        problem: What is wrong, without the location.
    """

    def __init__(
        self,
        problem: str,
        *,
        file: str | None = None,
        rule_id: str | None = None,
        key: str | None = None,
    ) -> None:
        self.file = file or "<policy>"
        self.rule_id = rule_id
        self.key = key
        self.problem = one_line(str(problem))
        super().__init__(self._line())

    def _line(self) -> str:
        parts = [self.file]
        if self.rule_id is not None:
            parts.append(f"rule '{self.rule_id}'")
        if self.key is not None:
            parts.append(f"key '{self.key}'")
        parts.append(self.problem)
        return one_line(": ".join(parts))

    def __str__(self) -> str:
        return self._line()
