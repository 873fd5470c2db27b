"""What every section of the report reads: the results, neutralised, and the selections shared between sections.

The report never computes a metric: it selects (the worst condition, the
largest gap) and formats what the results contain.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

from audit.contract.gaptests import rule_too_few_to_tell
from audit.contract.results import (
    AttackReference,
    ConditionResult,
    GalleryItem,
    GovernanceFinding,
    PolicyOutcome,
    Results,
    RuleResult,
)
from audit.contract.results.verdict import Failure
from reports.html.charts import ChartView, accuracy_of
from reports.html.curves import adversarial_chart
from reports.html.escaping import is_data_image
from reports.html.formatting import fmt_rule_value
from reports.rule_words import rule_in_words

__all__ = ["FailureView", "ReportContext", "RuleView"]


@dataclass(frozen=True)
class RuleView:
    """A rule result with its requirement in words, whether it could be tested, and whether it judges a probe."""

    rule: RuleResult
    words: str
    too_few_to_tell: bool
    probe: bool


@dataclass(frozen=True)
class FailureView:
    """A blocking failure with the words and the condition of its rule (None for a governance check)."""

    failure: Failure
    words: str | None
    condition: str | None
    probe: bool


def _unjudged(finding: GovernanceFinding) -> bool:
    """A governance check that could not be judged: insufficient data, not a finding (whatever its status)."""
    return finding.judgeable is False or finding.status == "insufficient_data"


def _too_few_to_tell(rule: RuleResult) -> bool:
    if rule.insufficient_evidence:  # a detect test without 80 % power (1.6 on): whatever on_insufficient_data made it
        return True
    # audit.contract.gaptests reads a rule as stored in results.json: give it the four keys it reads
    return rule_too_few_to_tell(
        {"p_value": rule.p_value, "status": rule.status, "test": rule.test, "testable": rule.testable}
    )


class ReportContext:
    """The results (every string neutralised, :func:`reports.html.escaping.clean`) and shared selections.

    Attributes:
        results: The results.
        predictions: The run's predictions.csv when it exists, else None.
        conditions: Every condition, in the results' order.
        detection: The results' ``detection`` section (a detector's audit), else None.
        clean: The clean condition (the first one when none is called ``clean``); None without conditions
            (always for a detector: its conditions are in ``detection``).
        policy: The verdict's policy outcome, None before a policy judged the results.
        probe_ids: Ids of the probe conditions (sanity checks of an attack, not measurements).
        adversarial: The attack labels, as the evaluator recorded them (no attack is recognised by name).
        rules: Every rule result with its words.
        findings: Every governance finding; ``governance_flagged`` and ``governance_unjudged`` split them.
    """

    def __init__(self, results: Results, *, predictions: str | os.PathLike[str] | None = None) -> None:
        self.results = results
        self.predictions = Path(predictions) if predictions is not None and Path(predictions).is_file() else None
        # a detector's results (task detection) have no classification conditions: their numbers are in
        # ``detection`` and only the detection section reads them
        self.detection = results.detection
        self.conditions: list[ConditionResult] = list(results.conditions or [])
        self.clean = next(
            (c for c in self.conditions if c.id == "clean"), self.conditions[0] if self.conditions else None
        )
        self.policy: PolicyOutcome | None = results.policy
        self.probe_ids = {c.id for c in self.conditions if c.probe}
        self.adversarial = (
            {str(c.stressor) for c in self.conditions if c.model_aware}
            | {str(a.attack) for a in results.adversarial_checks or []}
            | {s.name for s in results.stressors if s.model_aware}
        )
        self.rules = [
            RuleView(r, rule_in_words(r, fmt_rule_value), _too_few_to_tell(r), str(r.condition) in self.probe_ids)
            for r in (self.policy.rules if self.policy else [])
        ]
        self.findings = list(results.governance.findings)
        # a check that could not be judged (a column absent, other settings) is not a finding
        self.governance_flagged = [f for f in self.findings if f.status in ("fail", "warn") and not _unjudged(f)]
        self.governance_unjudged = [f for f in self.findings if _unjudged(f)]
        self.rule_counts = {
            s: sum(1 for r in self.rules if r.rule.status == s) for s in ("pass", "fail", "warn", "insufficient_data")
        }
        self.blocking_rule_failures = [r for r in self.rules if r.rule.status == "fail" and r.rule.blocking]
        self.drops = {r.condition: r.drop for r in results.robustness or []}
        confusion = self.clean.confusion if self.clean is not None else []
        detected = list(self.detection.class_names) if self.detection is not None else []
        self.class_names = list(results.model.class_names) or detected or [str(i) for i in range(len(confusion))]

    @functools.cached_property
    def stressed(self) -> list[ConditionResult]:
        """The conditions other than clean that have an accuracy."""
        return [c for c in self.conditions if c is not self.clean and accuracy_of(c) is not None]

    @functools.cached_property
    def worst_natural(self) -> ConditionResult | None:
        """The hardest condition that is not an attack."""
        natural = [c for c in self.stressed if str(c.stressor) not in self.adversarial]
        return min(natural, key=accuracy_of, default=None)  # type: ignore[arg-type]

    @functools.cached_property
    def worst(self) -> ConditionResult | None:
        """The condition the charts of "the worst condition" show: the hardest natural one when there is one.

        A large-epsilon attack probe (accuracy about 0 by design) would say nothing.
        """
        return self.worst_natural or min(self.stressed, key=accuracy_of, default=None)  # type: ignore[arg-type]

    @functools.cached_property
    def worst_attack(self) -> ConditionResult | None:
        """The hardest attack condition; a sanity probe is not a robustness measurement."""
        attacks = [c for c in self.stressed if str(c.stressor) in self.adversarial and not c.probe]
        return min(attacks, key=accuracy_of, default=None)  # type: ignore[arg-type]

    @functools.cached_property
    def attack_base(self) -> ConditionResult | AttackReference | None:
        """The clean point of the attack curves: the attacked subset's clean images when attacks ran on a
        subset (``attack_reference``), else the clean condition."""
        return self.results.attack_reference or self.clean

    @functools.cached_property
    def adversarial_chart(self) -> ChartView | None:
        """The attack curves (:func:`reports.html.curves.adversarial_chart`); None without attacks. A physical
        attack whose budget is not an L-inf ε (a patch's share of the image) has its own section, not a curve here."""
        on_epsilon = [c for c in self.conditions if c.physical is None or c.physical.threat_model == "universal_linf"]
        return adversarial_chart(on_epsilon, self.attack_base, self.adversarial)

    @functools.cached_property
    def gallery(self) -> list[GalleryItem]:
        """The gallery images that are inline image data (the only images a report shows)."""
        return [g for g in self.results.gallery or [] if is_data_image(g.image)]

    @property
    def gallery_dropped(self) -> int:
        """Gallery images left out because they are not inline image data."""
        return len(self.results.gallery or []) - len(self.gallery)

    @functools.cached_property
    def failures(self) -> list[FailureView]:
        """Each blocking failure of the verdict with the words of its rule."""
        out = []
        for f in (self.policy.failures or []) if self.policy else []:
            rule = next((r for r in self.rules if r.rule.id == f.id), None)
            words, condition = (rule.words, rule.rule.condition) if rule else (None, None)
            out.append(FailureView(f, words, condition, bool(rule and rule.probe)))
        return out

    @functools.cached_property
    def blocking_failures(self) -> list[str]:
        """Ids of what made the verdict fail (rules and governance checks)."""
        return [str(x) for x in self.policy.blocking_failures] if self.policy else []
