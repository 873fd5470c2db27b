"""The cards' sentences, generated from :class:`~reports.model_card.facts.CardFacts` only.

Each function returns plain sentences; ``esc`` is applied to every string that
comes from the user's data (class names, groups, messages), so the Markdown
renderers can escape them and the JSON renderer can keep them as they are.
Shares are printed with three decimals, differences of shares in percentage
points with one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from audit.contract.results import RuleResult
from reports.model_card.facts import CardFacts, ConditionFacts

__all__ = [
    "bias",
    "intended_use",
    "limitations",
    "overview",
    "points",
    "policy_use",
    "risks",
    "share",
    "verification",
]

Esc = Callable[[str], str]
_LIST = 10  # names listed before "... (N in all)"


def share(value: float | None) -> str:
    """A share in [0, 1] with three decimals; ``n/a`` when undefined."""
    return "n/a" if value is None else f"{value:.3f}"


def points(value: float | None) -> str:
    """A difference of two shares in percentage points."""
    return "n/a" if value is None else f"{100 * value:.1f} points"


def interval(ci: tuple[float, float] | None) -> str:
    return "" if ci is None else f" (95 % CI {share(ci[0])}–{share(ci[1])})"


def _names(values: list[str], esc: Esc) -> str:
    shown = ", ".join(esc(v) for v in values[:_LIST])
    return shown + (f", ... ({len(values)} in all)" if len(values) > _LIST else "")


def _date(iso: str) -> str:
    return iso[:10]


def overview(f: CardFacts, esc: Esc) -> str:
    """One line: what the model is, the verdict, the clean accuracy."""
    verdict = f.policy.verdict.upper() if f.policy else "not judged"
    verdict = "REPORT ONLY (the policy gates nothing)" if f.policy and f.policy.report_only else verdict
    return (
        f"Image classifier ({f.model.num_classes} classes) audited by cvaudit {esc(f.tool_version)}: "
        f"clean accuracy {share(f.clean.overall.accuracy)}{interval(f.clean.overall.accuracy_ci)} on "
        f"{f.dataset.num_samples} images; policy {esc(str(f.policy.name))} verdict {verdict}."
        if f.policy
        else f"Image classifier audited by cvaudit {esc(f.tool_version)}."
    )


def intended_use(f: CardFacts, esc: Esc) -> list[str]:
    """What the audit supports using the model for, and the policy's verdict."""
    names = list(f.model.class_names)
    dataset = esc(_file_name(f.dataset.path))
    out = [
        f"{esc(f.model_name)} classifies images into {len(names)} classes: {_names(names, esc)}.",
        f"The audit (cvaudit {esc(f.tool_version)}, {_date(f.finished)}) evaluated it on {f.dataset.num_samples} "
        f"images of {dataset} under {len(f.conditions)} conditions (clean and stressed, listed under Evaluation). "
        "It supports use on images like these and under these conditions only; other images, populations and "
        "conditions were not audited.",
    ]
    return out + policy_use(f, esc)


def policy_use(f: CardFacts, esc: Esc) -> list[str]:
    """What the policy's verdict says about deploying the model (empty without a policy)."""
    out: list[str] = []
    policy = f.policy
    if policy is None:
        return out
    where = f"policy {esc(str(policy.name))} (version {policy.version})"
    if policy.report_only:
        out.append(
            f"{where[0].upper()}{where[1:]} is report-only: it has no blocking rule, so the audit gates nothing."
        )
    elif policy.verdict == "pass":
        out.append(f"Under {where} the model met every blocking rule: verdict PASS.")
    else:
        failures = ", ".join(esc(str(x)) for x in policy.blocking_failures) or "a blocking rule"
        out.append(
            f"Under {where} the verdict is FAIL (blocking: {failures}). The audit does not support deploying "
            "the model where this policy applies until these are resolved."
        )
    return out


def _file_name(path: str) -> str:
    return str(path).replace("\\", "/").rstrip("/").rsplit("/", 1)[-1] or str(path)


def _hardest(conditions: list[ConditionFacts]) -> dict[str, ConditionFacts]:
    """Per stressor, the condition with the lowest accuracy (the highest severity on ties)."""
    out: dict[str, ConditionFacts] = {}
    for c in conditions:
        if c.overall.accuracy is None or c.stressor is None:
            continue
        best = out.get(c.stressor)
        if best is None or c.overall.accuracy <= best.overall.accuracy:
            out[c.stressor] = c
    return out


def limitations(f: CardFacts, esc: Esc) -> list[str]:
    """Where the model is weaker: the hardest severity of each stressor, calibration, unjudged groups."""
    out = []
    natural = [c for c in f.stressed if not c.model_aware]
    attacks = [c for c in f.stressed if c.model_aware]
    for stressor, c in _hardest(natural).items():
        meaning = f" ({esc(c.meaning)})" if c.meaning else ""
        out.append(
            f"{esc(stressor)}: accuracy {share(c.overall.accuracy)} at severity {c.severity}{meaning}, against "
            f"{share(c.clean_accuracy)} on clean images (a drop of {points(c.drop)})."
        )
    for stressor, c in _hardest(attacks).items():
        out.append(
            f"Adversarial {esc(stressor)}: robust accuracy {share(c.overall.accuracy)} at ε = {c.severity} "
            f"(clean accuracy of the attacked samples {share(c.clean_accuracy)})."
        )
    clean = f.clean.overall
    if clean.ece is not None:
        out.append(
            f"Calibration on clean images: expected calibration error {share(clean.ece)}{interval(clean.ece_ci)}."
        )
    small = [g for g in f.clean.groups if g.insufficient_data]
    if small:
        out.append(
            f"{len(small)} group(s) had fewer than {f.evaluation.min_group_size} samples and were not judged: "
            + _names([f"{g.attribute}={g.value} (n = {g.n})" for g in small], esc)
            + "."
        )
    if f.dataset.num_skipped:
        out.append(f"{f.dataset.num_skipped} image(s) could not be decoded and were left out.")
    if f.evaluation.attack_samples:
        out.append(f"Attacks ran on a stratified subset of {f.evaluation.attack_samples} samples.")
    out += [esc(n) for n in f.notes]
    if not out:
        out.append("No stressor was evaluated: robustness is unknown.")
    return out


def bias(f: CardFacts, esc: Esc) -> list[str]:
    """Accuracy differences between the manifest's groups, on clean images and under stress."""
    attributes = list(f.dataset.attributes) + list(f.dataset.intersections)
    if not attributes:
        return ["The audit set names no subgroup attributes: differences between groups were not examined."]
    out = []
    by_group = {(g.attribute, g.value): g for g in f.clean.groups}
    clean_entries = [e for e in f.fairness if e.condition == "clean"]
    for e in clean_entries:
        attr = esc(e.attribute)
        if e.accuracy_gap is None:
            out.append(
                f"{attr}: fewer than two groups with at least {f.evaluation.min_group_size} samples; not compared."
            )
            continue
        worst, best = (
            by_group.get((e.attribute, e.worst_group)),
            by_group.get((e.attribute, e.best_group)),
        )
        span = (
            f" from {share(worst.accuracy)} ({esc(str(e.worst_group))}) to {share(best.accuracy)} "
            f"({esc(str(e.best_group))})"
            if worst is not None and best is not None
            else f" (worst group {esc(str(e.worst_group))})"
        )
        out.append(f"{attr}: clean accuracy ranges{span}, a gap of {points(e.accuracy_gap)}.")
    stressed_ids = {c.id for c in f.stressed}
    stressed = [e for e in f.fairness if e.condition in stressed_ids and e.accuracy_gap is not None]
    if stressed:
        e = max(stressed, key=lambda x: x.accuracy_gap)
        out.append(
            f"The largest gap under stress is {points(e.accuracy_gap)} for {esc(e.attribute)} under "
            f"{esc(e.condition)} (worst group {esc(str(e.worst_group))})."
        )
    out.append(
        f"Groups are those of the attributes {_names(attributes, esc)}; characteristics not recorded in the "
        "manifest were not examined."
    )
    return out


def _rule_line(r: RuleResult, esc: Esc) -> str:
    if r.status == "fail":
        kind = "failed (blocking)"
    elif r.status == "warn":
        kind = "failed (warning, not blocking)"
    else:
        kind = "could not be judged (insufficient data)"
    observed = r.observed
    numbers = (
        f" observed {esc(_value(observed))} against {esc(r.op or 'threshold')} {esc(_value(r.threshold))};"
        if observed is not None
        else ""
    )
    return f"Rule {esc(str(r.id))} {kind}:{numbers} {esc(str(r.message or ''))}".rstrip()


def _value(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def risks(f: CardFacts, esc: Esc) -> list[str]:
    """Policy rules that failed or warned, governance findings and adversarial sanity checks, stated plainly."""
    out = []
    rules = [r for r in (f.policy.rules if f.policy else []) if r.status != "pass"]
    out += [_rule_line(r, esc) for r in rules]
    flagged = [x for x in f.findings if x.status != "pass"]
    for x in flagged:
        if x.status == "fail":
            effect = "blocks the verdict"
        elif x.informational:
            effect = "informational: the policy does not configure this check"
        else:
            effect = "warning"
        clause = f"; {esc(x.clause)}" if x.clause else ""
        out.append(f"Data governance, {esc(x.check)}: {esc(x.message)} ({effect}{clause}).")
    passed = [x.check for x in f.findings if x.status == "pass"]
    if passed:
        out.append(f"Data governance checks passed: {_names(passed, esc)}.")
    if not f.findings:
        out.append("The policy configures no data-governance checks; the audit set's metadata was not checked.")
    for a in f.adversarial_checks:
        if a.status != "pass":
            out.append(f"Adversarial evaluation check {esc(a.check)} ({a.status}): {esc(a.message)}")
    if not rules and not flagged:
        out.append("No policy rule failed, warned or lacked data.")
    return out


def verification(f: CardFacts, esc: Esc, code: Esc) -> list[str]:
    """How a reader checks the numbers: digests, and the attestation when the run was signed."""
    out = [f"Every number in this card comes from results.json, SHA-256 {code(f.results_sha256)}."]
    if f.policy:
        out.append(f"Policy {esc(str(f.policy.name))} SHA-256 {code(f.policy.sha256)}.")
    if f.model.sha256:
        out.append(f"Model {esc(_file_name(str(f.model.path)))} SHA-256 {code(f.model.sha256)}.")
    if f.dataset.sha256:
        out.append(f"Audit set {esc(_file_name(f.dataset.path))} SHA-256 {code(f.dataset.sha256)}.")
    truth = f.detection.ground_truth if f.detection is not None else None
    if truth is not None and truth.sha256:
        out.append(f"Annotations {esc(_file_name(truth.path))} SHA-256 {code(truth.sha256)}.")
    a = f.attestation
    if a is None:
        out.append("The run was not signed: no attestation vouches for these numbers beyond the digests above.")
    else:
        keys = ", ".join(code(k) for k in a.key_ids)
        out.append(
            f"The run was signed: attestation.dsse.json SHA-256 {code(a.sha256)}, signed with key {keys}. It attests "
            f"results.json with the SHA-256 above and {len(a.subjects) - 1} other file(s) "
            f"({_names([s for s in a.subjects if s != 'results.json'], esc)}). Check it with "
            f"{code('cvaudit verify RUN_FOLDER --key PUBLIC_KEY_FOLDER')}."
        )
    return out
