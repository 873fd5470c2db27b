"""The policy as a run consults it: one object, four moments.

A run asks its policy four things, in this order, and nothing else
(:mod:`audit.runner` and ``cvaudit run`` use only this module):

1. **load** (:meth:`PolicyGate.load`): read the policy and refuse one whose gate
   would pass on nothing (:func:`policies.validate.check_gate`), before torch is
   imported;
2. **scan during reading** (:meth:`PolicyGate.scan`): the governance checks see
   the manifest chunk by chunk as it is read (:class:`GovernanceReading`); their
   judged findings decide which images the report may show
   (:meth:`GovernanceReading.image_mode`);
3. **plan before the run** (:meth:`PolicyGate.plan`): every rule is validated
   against what the run will produce; a rule that can never match is an error
   before any image is evaluated. :meth:`PolicyGate.stop_targets` gives early
   stopping what the blocking rules need;
4. **judge after** (:meth:`PolicyGate.judge`): the results dict becomes
   results.json's ``policy`` section.

The façade adds no rule of its own: each method calls the public function of
the module that owns the logic (named in its docstring), so ``cvaudit policy
check`` and a run judge alike.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audit.contract.plan import RunPlan
from audit.contract.results import Results
from policies.early_stop import stop_targets
from policies.engine import check_policy
from policies.findings import judge_findings
from policies.governance import GovernanceScan
from policies.loader import load_policy
from policies.privacy import report_image_mode
from policies.schema import Policy
from policies.validate import check_gate, validate_policy

__all__ = ["GovernanceReading", "PolicyGate"]


@dataclass
class GovernanceReading:
    """The governance checks of one run, fed the manifest as it is read.

    Attributes:
        policy: the judging policy.
        affected: one dict per (affected sample, check), appended as chunks are fed (governance.csv).
    """

    policy: Policy
    affected: list[dict[str, Any]] = field(default_factory=list)
    _scan: GovernanceScan | None = field(default=None, repr=False)  # None: the policy has no governance

    @property
    def on_chunk(self) -> Callable[[Any], None] | None:
        """The callback for :func:`audit.evaluation.data.read_samples` (None: the policy has no governance)."""
        return self._scan.feed if self._scan is not None else None

    def findings(self) -> list[dict[str, Any]]:
        """The findings of the rows fed so far, judged under the policy (:func:`policies.findings.judge_findings`)."""
        return judge_findings(self._scan.findings() if self._scan is not None else [], self.policy)

    def image_mode(self, findings: list[dict[str, Any]], requested: str) -> str:
        """The images the report may show (:func:`policies.privacy.report_image_mode`)."""
        return report_image_mode(self.policy, findings, requested)


@dataclass(frozen=True)
class PolicyGate:
    """One loaded policy and the questions a run asks it (see the module docstring).

    Args:
        policy: a parsed policy (:func:`policies.load_policy`).

    Raises:
        PolicyError: ``policy`` has nothing that can fail its verdict and is not ``report_only``.
    """

    policy: Policy

    def __post_init__(self) -> None:
        check_gate(self.policy)  # fail closed: a gate on nothing is refused before any data are read

    @classmethod
    def load(cls, name_or_path: str | Path) -> PolicyGate:
        """A built-in policy by name, or a policy file (:func:`policies.load_policy`), checked as in ``__init__``."""
        return cls(load_policy(name_or_path))

    @property
    def name(self) -> str:
        """The policy's name, as results.json records it."""
        return self.policy.name

    def scan(self, *, id_column: str | None, now: dt.datetime) -> GovernanceReading:
        """The governance checks for a manifest about to be read (:class:`policies.governance.GovernanceScan`).

        Args:
            id_column: the manifest column naming a sample (config ``data.id_column``).
            now: the run's start, the reference time of retention.
        """
        reading = GovernanceReading(self.policy)
        if self.policy.governance is not None:
            reading._scan = GovernanceScan(
                self.policy.governance, id_column=id_column, now=now, affected=reading.affected
            )
        return reading

    def plan(self, plan: RunPlan) -> dict[str, str]:
        """Validate every rule against what the run will produce (:func:`policies.validate.validate_policy`).

        Returns:
            rule id -> why it does not apply, for rules that say ``required: false``.

        Raises:
            PolicyError: a rule can never match ``plan``, or no blocking rule applies to it.
        """
        return validate_policy(self.policy, plan)

    def stop_targets(self, plan: RunPlan) -> list[dict[str, Any]]:
        """What early stopping must decide per condition (:func:`policies.early_stop.stop_targets`)."""
        return stop_targets(self.policy, plan)

    def judge(self, results: Results, *, findings: list[dict[str, Any]]) -> dict[str, Any]:
        """results.json's ``policy`` section for ``results`` (:func:`policies.check_policy`)."""
        return check_policy(results, self.policy, findings=findings)
