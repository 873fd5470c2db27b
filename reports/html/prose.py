"""The report's sentences for a reader who is not an ML engineer: the summary, what a pass still asks, the limits.

User values inside a sentence are marked with :func:`reports.html.escaping.user`, so that only they
are isolated when they run right to left.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from audit.contract.results import ConditionResult
from reports.ensemble_view import ensemble_headline
from reports.group_view import name_some
from reports.html.charts import accuracy_of
from reports.html.context import ReportContext
from reports.html.detection_prose import detection_limitations, detection_summary
from reports.html.escaping import user
from reports.html.formatting import finite, fmt_ci, fmt_pct

__all__ = ["SMALL_GROUPS_LIMIT", "count", "limitations", "still_read", "summary"]

#: Too-small groups named in the limitations (all of them are marked in the tables and groups.csv).
SMALL_GROUPS_LIMIT = 20


def count(n: int, noun: str) -> str:
    """``"1 rule"``, ``"3 rules"``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def model_name(ctx: ReportContext) -> str:
    """The model file's name (the report's title)."""
    return Path(str(ctx.results.model.path or "model")).name


def summary(ctx: ReportContext) -> list[str]:
    """Plain-language sentences for a reader who is not an ML engineer."""
    ds, conditions = ctx.results.dataset, ctx.conditions
    if ctx.detection is not None:
        return detection_summary(ctx.detection, model=model_name(ctx), num_skipped=ds.num_skipped) + (
            _verdict_sentences(ctx)
        )
    clean_m = ctx.clean.metrics if ctx.clean is not None else None
    stressor_names = sorted({str(c.stressor) for c in conditions if c.stressor is not None})
    out = [
        f"The model {user(model_name(ctx))} was tested on {ds.num_samples} images"
        f" ({ds.num_skipped} unreadable images skipped) under {len(conditions)} conditions: the"
        f" unaltered images and {max(len(conditions) - 1, 0)} altered versions"
        + (f" ({', '.join(user(n) for n in stressor_names)})." if stressor_names else ".")
    ]
    if clean_m is not None:
        out.append(
            f"On unaltered images its answer is correct {fmt_pct(clean_m.accuracy)} of the time"
            f" (95% interval {fmt_ci(clean_m.accuracy_ci)})."
        )
    # An attack runs on a subset; its drop is relative to that subset unaltered (results.attack_reference).
    for kind, worst, reference in (
        ("altered-image", ctx.worst_natural, "unaltered images"),
        ("attack", ctx.worst_attack, "the same images unaltered"),
    ):
        if worst:
            drop = finite(ctx.drops.get(worst.id))
            out.append(
                f"The hardest {kind} condition was {user(worst.id)}, where accuracy fell to"
                f" {fmt_pct(accuracy_of(worst))}"
                + (f", {100 * drop:.1f} percentage points below {reference}." if drop is not None else ".")
            )
    for h in ensemble_headline(ctx.results, ctx.adversarial):
        points = [f"{fmt_pct(r['robust_accuracy'])} at \u03b5 = {r['epsilon']:g}" for r in h["rows"] if not r["probe"]]
        if points:
            out.append(
                f"Under the ensemble attack {user(h['attack'])} (the headline adversarial number: an image counts"
                f" only if it survives every member), robust accuracy was {_and(points)}."
            )
    clean_id = ctx.clean.id if ctx.clean is not None else None
    clean_fair = [
        f for f in ctx.results.fairness or [] if f.condition == clean_id and finite(f.accuracy_gap) is not None
    ]
    if clean_fair:
        top = max(clean_fair, key=lambda f: f.accuracy_gap)  # type: ignore[arg-type,return-value]
        out.append(
            f"Between subgroups of unaltered images, the largest accuracy gap is"
            f" {100 * top.accuracy_gap:.1f} percentage points, for {user(top.attribute)}"  # type: ignore[operator]
            f" (lowest: {user(top.worst_group)})."
        )
    if clean_m is not None and finite(clean_m.debiased_l2_ce) is not None:
        out.append(
            f"Its stated confidence differs from its actual accuracy by about {fmt_pct(clean_m.debiased_l2_ce)}"
            f" (debiased calibration error, 95% interval {fmt_ci(clean_m.debiased_l2_ce_ci)}; 0% is perfect;"
            f" the plain expected calibration error, {fmt_pct(clean_m.ece)}, is biased upwards on small sets)."
        )
    elif clean_m is not None and finite(clean_m.ece) is not None:
        out.append(
            f"Its stated confidence differs from its actual accuracy by {fmt_pct(clean_m.ece)} on"
            " average (expected calibration error; 0% is perfect)."
        )
    out.extend(_early_stop_summary(conditions))
    out.extend(_verdict_sentences(ctx))
    return out


def _and(items: Sequence[str]) -> str:
    """``"a"``, ``"a and b"``, ``"a, b and c"``."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _verdict_sentences(ctx: ReportContext) -> list[str]:
    """The summary's sentences on untestable rules, the rule outcomes and the governance checks."""
    out = []
    untestable = [str(r.rule.id) for r in ctx.rules if r.too_few_to_tell]
    if untestable:
        out.append(
            f"{count(len(untestable), 'rule')} cannot be tested with these data (too few images per group to tell"
            f" a real difference from chance): {', '.join(untestable)}; see their explanation under Policy rules."
        )
    n = ctx.rule_counts
    if ctx.rules:
        out.append(
            f"Policy {user(ctx.policy.name if ctx.policy else '')}: {count(n['pass'], 'rule')} passed, {n['fail']}"
            f" failed ({len(ctx.blocking_rule_failures)} of them blocking), {count(n['warn'], 'warning')},"
            f" {n['insufficient_data']} with too little data."
        )
    flagged, unjudged = ctx.governance_flagged, ctx.governance_unjudged
    if flagged:
        out.append(
            f"{count(len(flagged), 'data-governance check')} raised a finding: "
            + ", ".join(user(f.check) for f in flagged)
            + "."
        )
    if unjudged:
        failing = [f for f in unjudged if f.status == "fail"]
        out.append(
            f"{count(len(unjudged), 'data-governance check')} could not be judged (insufficient data, such as a"
            " manifest column that is absent; this is not a finding): "
            + ", ".join(user(f.check) for f in unjudged)
            + (
                f"; {len(failing)} of them {'fails' if len(failing) == 1 else 'fail'} the verdict because the policy"
                " treats what cannot be judged as a failure (on_insufficient_data: fail)."
                if failing
                else "."
            )
        )
    return out


def still_read(ctx: ReportContext) -> str:
    """What a passing verdict still asks the reader to look at: rule warnings, governance findings, checks not judged."""
    warned = ctx.rule_counts["warn"] + ctx.rule_counts["insufficient_data"]
    unjudged = len(ctx.governance_unjudged)
    parts = [
        count(n, noun) + tail
        for n, noun, tail in (
            (warned, "rule warning", ""),
            (len(ctx.governance_flagged), "governance finding", ""),
            (
                unjudged,
                "governance check",
                f" that could not be judged (insufficient data, not {'a finding' if unjudged == 1 else 'findings'})",
            ),
        )
        if n
    ]
    if not parts:
        return ""
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _early_stop_summary(conditions: Sequence[ConditionResult]) -> list[str]:
    """What early stopping did, in the words of each condition's ``early_stop`` record."""
    records = [(c.id, c.early_stop) for c in conditions if c.early_stop is not None]
    if not records:
        return []
    stopped = [(cid, r) for cid, r in records if r.stopped]
    shown = "; ".join(f"{cid} after {r.samples_used} of {r.samples_available} images" for cid, r in stopped[:3])
    more = f" and {len(stopped) - 3} more" if len(stopped) > 3 else ""
    full = [str(cid) for cid, r in records if not r.stopped]
    out = (
        f"Early stopping was on: {len(stopped)} of {len(records)} conditions stopped as soon as the blocking rules"
        f" that read them were decided by an anytime-valid test"
        + (f" ({shown}{more})" if stopped else "")
        + (f"; {', '.join(full[:5])}{' …' if len(full) > 5 else ''} ran on every image" if full else "")
        + ". Their metrics describe the images they used."
    )
    return [out]


def limitations(ctx: ReportContext, *, dropped_images: int) -> list[str]:
    """What the numbers do not show, specific to these results where possible."""
    if ctx.detection is not None:
        return _detection_limitations(ctx, dropped_images=dropped_images)
    out = [
        "Stressors are synthetic approximations of night, glare, blur and occlusion; they do not replace data"
        " collected in the deployment setting.",
        "All figures hold for this model file and this dataset only (see the SHA-256 digests); another model"
        " version or another population may behave differently.",
        "Intervals are 95% intervals over the test samples: they express sampling uncertainty, not a"
        " shift in the population.",
        "Subgroup attributes come from the data manifest; this tool did not check that they are correct or complete.",
        "Calibration errors use 15 equal-width bins; the ECE is biased upwards for small groups (a calibrated model"
        " scores of order 1/√N), the debiased calibration error is not.",
    ]
    if ctx.adversarial_chart is not None:
        out.append("Robust accuracy under attack is an upper bound: a stronger or different attack may lower it.")
    groups = ctx.clean.groups if ctx.clean is not None else []
    small = [f"{user(g.attribute)} = {user(g.value)}" for g in groups if g.insufficient_data]
    if small:
        names = name_some(small, limit=SMALL_GROUPS_LIMIT, rest="(marked * in the tables and in groups.csv)")
        out.append("Groups with too few samples are shown but left out of gaps and ratios: " + names + ".")
    skipped = ctx.results.dataset.num_skipped
    if skipped:
        out.append(f"{skipped} images could not be read and were skipped; see the data section and skipped.csv.")
    if dropped_images:
        out.append(f"{dropped_images} gallery images were left out because they were not inline PNG/JPEG data.")
    if not ctx.rules:
        out.append("No policy rules were evaluated: there is no pass/fail verdict.")
    return out


def _detection_limitations(ctx: ReportContext, *, dropped_images: int) -> list[str]:
    """A detector's limitations: the stressors' and the data's, then its own (:func:`detection_limitations`)."""
    out = [
        "Stressors are synthetic approximations of night, glare, blur and occlusion; they do not replace data"
        " collected in the deployment setting.",
        "All figures hold for this model file and this dataset only (see the SHA-256 digests); another model"
        " version or another population may behave differently.",
        "Subgroup attributes come from the data manifest and the annotations; this tool did not check that they"
        " are correct or complete.",
        *detection_limitations(ctx.detection),  # type: ignore[arg-type]
    ]
    skipped = ctx.results.dataset.num_skipped
    if skipped:
        out.append(f"{skipped} images could not be read and were skipped; see the data section and skipped.csv.")
    if dropped_images:
        out.append(f"{dropped_images} gallery images were left out because they were not inline PNG/JPEG data.")
    if not ctx.rules:
        out.append("No policy rules were evaluated: there is no pass/fail verdict.")
    return out
