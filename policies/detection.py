"""Judge ``kind: metric`` rules on a detector's results (``task: detection``; results.json ``detection``).

The rule syntax is the classification one (:class:`~policies.schema.MetricRule`); only the targets
differ. A detection condition (:class:`~audit.contract.results.DetectionCondition`) and each of its
groups carry :class:`~audit.contract.results.DetectionMetrics`:

- no ``attribute``: the condition's metric (``map``, ``recall``, ``fp_per_image`` ...; ``dece``, the
  detection calibration error of the condition's ``calibration``, with ``n`` its scored detections),
  judged by the point estimate or, with ``judge: ci_lower|ci_upper``, by an end of its ``<metric>_ci``;
- ``attribute`` + ``value``: one group. Image-level attributes are the manifest's (``camera``): every
  metric over the group's images. Object-level groupings (``object.size``, ``object.class``,
  ``object.<key>``) carry recall and its counts, and COCO AP for size (``map``) and class (``map``,
  ``map_50``, ``map_75``): :func:`group_metrics`;
- ``attribute`` + ``aggregate``: ``attribute`` may be a glob (:func:`attribute_matches`: ``"*"`` picks
  the image attributes, ``"object.*"`` the object groupings); across the groups of the attribute that are not flagged
  ``insufficient_data`` (and, with ``min_samples``, have at least that many: images for an
  image-level group, objects for an object-level one): ``worst`` (the lowest for ``min``, the highest
  for ``max``), ``gap`` (highest - lowest) or ``ratio`` (lowest / highest) of the point estimates.

A gap of ``recall`` is tested by default (``test: detect``), as a classification gap is, from the
run's stored :class:`~audit.contract.results.DetectionGapTest` of that condition and attribute: every
pair of eligible groups with its recall difference ``d`` and its cluster-robust (delete-one-image
jackknife) standard error ``se`` (:mod:`audit.evaluation.detection.statistics`). The rule's tolerance
τ and confidence ``1 - α`` decide with the classification formulas
(:func:`audit.contract.gaptests.decide_pairs`):

- ``detect`` fails a target only when the data show a pair's gap above τ: the folded-normal p-value
  of H0 ``|d| <= τ`` per pair, Holm-corrected over the target's pairs, smallest below α. Over k
  targets of one rule (globs) the chance of failing a model whose every gap keeps the tolerance is
  at most k α (Bonferroni);
- ``demonstrate`` passes a target only when every pair is shown within τ (two one-sided tests per
  pair, an intersection-union test, level α whatever the number of pairs).

A ``detect`` target that shows no gap records its power against a true gap of 2τ at its hardest pair
(the largest stored standard error, Holm's first-step level α / m; :func:`_recall_gap_power`); below
80 % power it is "insufficient evidence" (``insufficient_data``), which follows ``on_insufficient_data``
(fail closed by default), as a classifier's gap rule does (docs/policies.md).

``judge: ci_lower|ci_upper`` judges an end of the stored ``gap_ci`` (the widest pair's Wald interval).
A stored test comparing other groups than the rule's (``min_samples`` left one out) or a missing test
makes the target insufficient data: fail-closed for a blocking rule.

Per-object breaking points (results.json ``detection.breaking_points``,
:mod:`audit.evaluation.detection.object_breaking`) are judged as a classifier's ``breaking_points``
are, by a ``section`` rule: ``section: detection.breaking_points``, ``entry`` a glob over the entry
ids (``occlusion``, ``occlusion:object.size=small``, ``occlusion:camera=*``; ``occlusion:object.size``
for the disparity between the size groups) and ``metric`` a key of the entry: ``median`` (the median
breaking severity), ``survival[severity=3].surviving`` (the share of objects still found at every
level up to 3), ``disparity`` (the largest gap in survival between the groups), ``median_gap`` ...;
``judge: ci_lower|ci_upper`` reads ``<metric>_ci`` (the cluster-bootstrap intervals). A subgroup
flagged ``insufficient_data`` is judged insufficient data. :func:`check_breaking_rule` refuses,
before any image is evaluated, a rule that can never match: no stressor entry with two or more
levels, an entry id or a severity the run does not have, a key the entries lack, an interval the run
does not compute.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fnmatch import fnmatchcase

from audit.contract.gaptests import decide_pairs
from audit.contract.metric_specs import detection_metric_names
from audit.contract.plan import RunPlan
from audit.contract.power import TARGET_POWER, TargetPower, alternative, normal_power
from audit.contract.results import (
    DetectionCondition,
    DetectionGapTest,
    DetectionGroup,
    ObjectBreakingDisparity,
    ObjectBreakingEntry,
    ObjectSurvivalPoint,
    Results,
)
from policies import targets as t
from policies.evaluate import ErrorFactory, Evaluation, compare, judge_target, section_evaluations
from policies.schema import MetricRule

__all__ = [
    "BREAKING_SECTION",
    "CONDITION_ONLY_METRICS",
    "DETECTION_METRICS",
    "TESTED_GAP_METRICS",
    "attribute_matches",
    "breaking_point_evaluations",
    "check_breaking_rule",
    "check_detection_names",
    "detection_evaluations",
    "group_metrics",
    "is_object_level",
]

#: The metrics of a detection condition or image-level group (their names in results.json; the registry's).
DETECTION_METRICS = detection_metric_names()
#: Metrics of a whole condition only (not of a group): the detection calibration error of ``calibration``.
CONDITION_ONLY_METRICS = ("dece",)
#: The metrics whose gap across groups the run tests (DetectionGapTest).
TESTED_GAP_METRICS = ("recall",)
_OBJECT_METRICS = ("n_images", "n_objects", "tp", "fn", "recall")
_OBJECT_AP = {"object.size": ("map",), "object.class": ("map", "map_50", "map_75")}


def is_object_level(attribute: str) -> bool:
    """Whether ``attribute`` names an object-level grouping (``object.size``, ``object.class``, ``object.<key>``)."""
    return attribute.startswith("object.")


def attribute_matches(pattern: str, attribute: str) -> bool:
    """Whether a rule's ``attribute`` (a name or a glob) picks ``attribute`` of a detection run.

    A glob picks object groupings only when it starts with ``object.`` itself: ``"*"`` means the
    dataset's (image) attributes, as on a classification run, and ``"object.*"`` every object grouping.

    >>> attribute_matches("*", "camera"), attribute_matches("*", "object.size"), attribute_matches("object.*", "object.size")
    (True, False, True)
    """
    if is_object_level(attribute) and not pattern.startswith("object."):
        return False
    return fnmatchcase(attribute, pattern)


def group_metrics(attribute: str) -> tuple[str, ...]:
    """The metrics the groups of ``attribute`` carry: all of them for an image attribute; recall and
    its counts for an object grouping, plus COCO AP for ``object.size`` and ``object.class``.

    >>> group_metrics("object.size")
    ('n_images', 'n_objects', 'tp', 'fn', 'recall', 'map')
    """
    if not is_object_level(attribute):
        return DETECTION_METRICS
    return _OBJECT_METRICS + _OBJECT_AP.get(attribute, ())


def _n(group: DetectionGroup) -> int:
    """The size a rule's ``min_samples`` counts: objects for an object-level group, images otherwise."""
    return group.metrics.n_objects if group.level == "object" else group.metrics.n_images


def detection_evaluations(results: Results, rule: MetricRule, error: ErrorFactory) -> list[Evaluation]:
    """Judge a condition rule (no ``section``) on detection results, target by target.

    Raises:
        PolicyError: (through ``error``) the metric is not a detection metric, a named attribute or
            value is not stored, or no stored condition matches.
    """
    detection = results.detection
    if detection is None:
        raise error("metric", "the results have no 'detection' section")
    known = DETECTION_METRICS + (CONDITION_ONLY_METRICS if rule.attribute is None else ())
    if rule.metric not in known:
        raise error("metric", f"unknown metric {rule.metric!r} for detection results (metrics: {', '.join(known)})")
    check_detection_names(results, rule, error)
    conditions = [c for c in detection.conditions if t.selector_matches(rule.selector, c.id)]
    if not conditions:
        raise error("condition", f"{rule.selector!r} matches no condition stored in the results")
    out = [e for cond in conditions for e in _condition(results, cond, rule)]
    return out or [Evaluation("insufficient_data", None, note=f"no groups for attribute {rule.attribute!r}")]


def _condition(results: Results, cond: DetectionCondition, rule: MetricRule) -> list[Evaluation]:
    cid = cond.id
    if rule.attribute is None and rule.metric in CONDITION_ONLY_METRICS:
        calibration = cond.calibration
        if calibration is None:
            return [Evaluation("insufficient_data", None, cid, note=f"no calibration stored for {cid}")]
        return [judge_target(rule, calibration, rule.metric, condition=cid, n=calibration.detections)]
    if rule.attribute is None:
        return [judge_target(rule, cond.metrics, rule.metric, condition=cid, n=cond.metrics.n_images)]
    if rule.value is not None:
        label = f"{rule.attribute}={rule.value}"
        group = next((g for g in cond.groups if g.attribute == rule.attribute and g.value == rule.value), None)
        if group is None:
            return [Evaluation("insufficient_data", None, cid, label, note=f"no group {label} under {cid}")]
        if group.insufficient_data:
            note = f"group {label} under {cid} is flagged insufficient_data ({group.metrics.n_objects} objects)"
            return [Evaluation("insufficient_data", None, cid, label, _n(group), note)]
        return [judge_target(rule, group.metrics, rule.metric, condition=cid, group=label, n=_n(group))]
    by_attribute: dict[str, list[DetectionGroup]] = {}
    for group in cond.groups:
        if attribute_matches(rule.attribute, group.attribute) and rule.metric in group_metrics(group.attribute):
            by_attribute.setdefault(group.attribute, []).append(group)
    return [_across(results, cond, attr, groups, rule) for attr, groups in sorted(by_attribute.items())]


def _across(
    results: Results, cond: DetectionCondition, attr: str, groups: list[DetectionGroup], rule: MetricRule
) -> Evaluation:
    """``worst``, ``gap`` or ``ratio`` of one attribute's groups under one condition."""
    cid = cond.id
    eligible = [
        g for g in groups if not g.insufficient_data and (rule.min_samples is None or _n(g) >= rule.min_samples)
    ]
    left_out = [g.value for g in groups if g not in eligible]
    excluded = f"; left out (insufficient data or below min_samples): {', '.join(left_out)}" if left_out else ""
    smallest = min((_n(g) for g in eligible), default=None)
    if rule.aggregate == "worst":
        scored = [
            (value, f"{attr}={g.value}", _n(g))
            for g in eligible
            if (value := t.as_number(t.judged_value(g.metrics, rule.metric, rule.judge))) is not None
        ]
        if not scored:
            return Evaluation(
                "insufficient_data", None, cid, attr, note=f"no {attr} group under {cid} to judge{excluded}"
            )
        value, label, n = (min if rule.op == "min" else max)(scored, key=lambda s: s[0])
        return compare(rule, value, cid, label, n, f"worst of {len(scored)} {attr} groups{excluded}")
    points = sorted(
        (value, g.value) for g in eligible if (value := t.as_number(t.get(g.metrics, rule.metric))) is not None
    )
    if len(points) < 2:
        reason = f"fewer than two {attr} groups under {cid} with {rule.metric}{excluded}"
        return Evaluation("insufficient_data", None, cid, attr, smallest, reason)
    (low, low_name), (high, high_name) = points[0], points[-1]
    between = f"{attr}={low_name} {low:.4g} vs {attr}={high_name} {high:.4g}{excluded}"
    if rule.aggregate == "ratio":
        if high <= 0:
            return Evaluation("insufficient_data", None, cid, attr, smallest, f"ratio undefined: {between}")
        return compare(rule, low / high, cid, attr, smallest, between)
    gap = high - low
    if rule.judge == "point" and rule.test_mode == "point":
        return compare(rule, gap, cid, attr, smallest, between)
    return _stored_gap(results, cid, attr, {v for _, v in points}, gap, rule, smallest, between)


def _gap_test(results: Results, cid: str, attr: str) -> DetectionGapTest | None:
    detection = results.detection
    tests = detection.gap_tests if detection is not None else []
    return next((g for g in tests if g.condition == cid and g.attribute == attr), None)


def _stored_gap(
    results: Results,
    cid: str,
    attr: str,
    values: set[str],
    gap: float,
    rule: MetricRule,
    n: int | None,
    between: str,
) -> Evaluation:
    """A gap judged by an end of the stored ``gap_ci`` (``judge``) or decided by it (``test``; module docstring)."""

    def insufficient(reason: str) -> Evaluation:
        return Evaluation("insufficient_data", gap, cid, attr, n, reason)

    test = _gap_test(results, cid, attr)
    if test is None:
        return insufficient(f"no stored gap test for {attr} under {cid}")
    stored = {str(k) for k, v in test.recalls.items() if v is not None}
    if stored != values:
        return insufficient(
            f"the stored gap test compares {', '.join(sorted(stored)) or 'no group'}, the rule "
            f"{', '.join(sorted(values))}; use test: point to compare the estimates"
        )
    if rule.judge != "point":
        if test.gap_ci is None:
            return insufficient(f"the stored gap test of {attr} under {cid} has no interval (gap_ci)")
        low, high = float(test.gap_ci[0]), float(test.gap_ci[1])
        value = low if rule.judge == "ci_lower" else high
        return compare(rule, value, cid, attr, n, f"95% interval [{low:.4g}, {high:.4g}]; {between}")
    alpha = 1 - rule.confidence
    shown, p = decide_pairs(
        [(pair.gap, pair.se) for pair in test.pairs], tolerance=rule.threshold, mode=rule.test_mode, alpha=alpha
    )
    percent = f"{100 * rule.confidence:g}%"
    bound = f"max {rule.threshold:g}"
    pairs = f"{len(test.pairs)} pair{'s' if len(test.pairs) != 1 else ''}"
    decided = f"p = {p:.3g}" if p is not None else "no pair"
    power = None
    if rule.test_mode == "detect":
        words = f"{'shown' if shown else 'not shown'} to break {bound} at {percent} ({pairs}, Holm; {decided})"
        status = "fail" if shown else "pass"
        power = _recall_gap_power(test, rule.threshold, alpha)
        if not shown and power is not None and power.power < TARGET_POWER:
            status = "insufficient_data"  # no gap shown, but the test could not have shown one (issue 32)
    else:
        words = f"{'shown' if shown else 'not shown'} to keep {bound} at {percent} ({pairs}; {decided})"
        status = "pass" if shown else "fail"
    return Evaluation(status, gap, cid, attr, n, between, decided_by=words, power=power)


def _recall_gap_power(test: DetectionGapTest, tolerance: float, alpha: float) -> TargetPower | None:
    """The power of a recall-gap detect test against a true gap of 2τ, at its hardest pair.

    As a classifier's gap rule with bootstrap errors (:func:`audit.contract.power.target_power`): the pair
    of the largest stored (jackknife) standard error, the folded-normal test at Holm's first-step level
    α / m over the stored pairs; None where the rule states no alternative (τ = 0 or 2τ >= 1) or there is
    no pair.
    """
    if not test.pairs:
        return None
    against = alternative("gap", tolerance, 0.5)
    if against is None:
        return None
    hardest = max(test.pairs, key=lambda pair: pair.se)
    level = alpha / len(test.pairs)
    sizes = (test.objects.get(hardest.lower, 0), test.objects.get(hardest.higher, 0))
    power = normal_power("gap", tolerance, level, hardest.se)
    return TargetPower(power, against.against, level, None, False, sizes, False)


def check_detection_names(results: Results, rule: MetricRule, error: ErrorFactory) -> None:
    """Raise on a named attribute or value the detection results lack (a glob is matched when judging)."""
    detection = results.detection
    if rule.attribute is None or any(ch in rule.attribute for ch in "*?[") or detection is None:
        return
    known: dict[str, set[str]] = {}
    for cond in detection.conditions:
        for g in cond.groups:
            known.setdefault(g.attribute, set()).add(g.value)
    if rule.attribute not in known:
        raise error(
            "attribute",
            f"attribute {rule.attribute!r} is not in the results (have: {', '.join(sorted(known)) or 'none'})",
        )
    if rule.value is not None and rule.value not in known[rule.attribute]:
        have = ", ".join(sorted(known[rule.attribute]))
        raise error("value", f"group {rule.attribute}={rule.value} is not in the results (have: {have})")


# ------------------------------------------------------------------- per-object breaking points

#: The ``section`` of a rule over the per-object breaking points.
BREAKING_SECTION = "detection.breaking_points"
_SURVIVAL = re.compile(r"^survival\[(severity|condition)=([^\]]*)\]\.([A-Za-z_]+)$")


def breaking_point_evaluations(results: Results, rule: MetricRule, error: ErrorFactory) -> list[Evaluation]:
    """Judge a ``section: detection.breaking_points`` rule exactly as a classifier's section rule.

    The entries and disparities of ``detection.breaking_points`` are one list of named entries (ids
    ``<stressor>``, ``<stressor>:<attribute>=<value>``, ``<stressor>:<attribute>``), judged by
    :func:`policies.evaluate.section_evaluations`: absent section (``required: false``: not
    applicable), glob over entries, flagged groups insufficient data, ``judge`` over ``<metric>_ci``.
    """
    detection = results.detection
    section = detection.breaking_points if detection is not None else None
    view = {} if section is None else {BREAKING_SECTION: [*section.entries, *section.disparity]}
    return section_evaluations(view, rule, error)  # type: ignore[arg-type]  # a mapping with the one section


@dataclass(frozen=True)
class _Track:
    """A stressor entry with two or more levels, as the run derives it (``breaking_points.tracks_of``)."""

    label: str
    levels: tuple[float, ...]
    conditions: tuple[str, ...]


def _planned_tracks(plan: RunPlan) -> list[_Track]:
    found: dict[str, list[tuple[float, str]]] = {}
    for c in plan.conditions:
        if c.stressor is None or c.probe or (c.model_aware and c.severity <= 0):
            continue
        found.setdefault(c.stressor, []).append((float(c.severity), c.id))
    return [
        _Track(label, tuple(p[0] for p in sorted(points)), tuple(p[1] for p in sorted(points)))
        for label, points in found.items()
        if len(points) >= 2
    ]


def _level_text(level: float) -> str:
    """A level as a rule's ``survival[severity=...]`` matches it (a whole number without ``.0``)."""
    return str(int(level)) if float(level).is_integer() else str(float(level))


def check_breaking_rule(rule: MetricRule, plan: RunPlan, error: ErrorFactory) -> str | None:
    """Refuse a ``section: detection.breaking_points`` rule that can never match (module docstring).

    Returns:
        A note when the rule is not applicable (``required: false`` and nothing to judge), else None.

    Raises:
        PolicyError: (through ``error``) one line naming the key and the valid choices.
    """
    if plan.task != "detection":
        raise error("section", f"section {BREAKING_SECTION!r} is written by a detection run, not a {plan.task} run")
    tracks = _planned_tracks(plan)
    if not tracks:
        if rule.optional:
            return "no stressor entry with two or more severities in this run (required: false)"
        raise error(
            "section",
            f"section {BREAKING_SECTION!r} needs a stressor entry with two or more severities (this run has none)",
        )
    if rule.entry is None:
        raise error("entry", f"section {BREAKING_SECTION!r} is a list; name the entry to judge with 'entry'")
    entries: dict[str, _Track] = {}
    disparities: dict[str, _Track] = {}
    for track in tracks:
        entries[track.label] = track
        for attribute, values in plan.attributes.items():
            disparities[f"{track.label}:{attribute}"] = track
            for value in values:
                entries[f"{track.label}:{attribute}={value}"] = track
    chosen = {k: v for k, v in entries.items() if fnmatchcase(k, rule.entry)}
    chosen_disparity = {k: v for k, v in disparities.items() if fnmatchcase(k, rule.entry)}
    if not chosen and not chosen_disparity:
        if rule.optional:
            return f"no entry {rule.entry!r} in {BREAKING_SECTION!r} of this run (required: false)"
        have = sorted([*entries, *disparities])
        shown = ", ".join(have[:12]) + (f", … ({len(have)} in all)" if len(have) > 12 else "")
        raise error("entry", f"entry {rule.entry!r} matches nothing in {BREAKING_SECTION!r} (entries: {shown})")
    if chosen and chosen_disparity:
        raise error(
            "entry",
            f"entry {rule.entry!r} matches both subgroups and disparities of {BREAKING_SECTION!r}; "
            "use '<stressor>:<attribute>=*' for the groups or '<stressor>:<attribute>' for the disparity",
        )
    model = ObjectBreakingEntry if chosen else ObjectBreakingDisparity
    metric = rule.metric
    survival = _SURVIVAL.match(metric)
    if survival is not None and chosen:
        key, wanted, leaf = survival.groups()
        levels = sorted({lv for track in chosen.values() for lv in track.levels})
        if key == "severity":
            valid = [_level_text(lv) for lv in levels]
        else:
            valid = sorted({cid for track in chosen.values() for cid in track.conditions})
        if wanted not in valid:
            raise error(
                "metric", f"metric {metric!r}: no {key} {wanted!r} in the matched entries (have: {', '.join(valid)})"
            )
        if leaf not in ObjectSurvivalPoint.model_fields or leaf.endswith("_ci"):
            keys = ", ".join(k for k in ObjectSurvivalPoint.model_fields if not k.endswith("_ci"))
            raise error("metric", f"metric {metric!r}: unknown key {leaf!r} of a survival point (keys: {keys})")
        interval = leaf + "_ci" in ObjectSurvivalPoint.model_fields
    else:
        if metric not in model.model_fields or metric.endswith("_ci"):
            keys = [k for k in model.model_fields if not k.endswith("_ci")]
            if chosen:
                keys.append("survival[severity=<level>].surviving")
            raise error(
                "metric", f"unknown metric {metric!r} in {BREAKING_SECTION!r} entries (keys: {', '.join(keys)})"
            )
        interval = metric + "_ci" in model.model_fields
    if rule.judge != "point":
        if not interval:
            raise error(
                "judge", f"judge {rule.judge!r} needs an interval '{metric}_ci', which {BREAKING_SECTION!r} lacks"
            )
        if not plan.intervals:
            raise error(
                "judge",
                f"judge {rule.judge!r} needs the intervals of {BREAKING_SECTION!r}: "
                "the run computes no intervals (evaluation.n_bootstrap is 0)",
            )
    return None
