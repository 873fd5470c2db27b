"""Render results.json as one self-contained HTML report.

``render_html(results)`` turns the results dict (exactly as written to
results.json) into a single HTML document: no ``<script>``, no external
request (system fonts, inline SVG charts, images only as ``data:`` URIs),
print-ready CSS for A4. Every user-supplied string is escaped by Jinja2's
autoescaping; charts escape their text in :mod:`reports.plots`.

Users' strings (class names, attribute values, sample ids, file names) are
neutralised for the medium before anything else (:func:`build_view`): C0 and
C1 control characters (tab and newline kept), bidirectional controls, lone
surrogates and noncharacters become visible escapes such as ``\x1b``
(:func:`audit.contract.text.neutralise`), so the HTML is valid and nothing in
it can reorder or hide text. Right-to-left text is isolated: every ``{{ }}``
in element content goes through the ``isolate`` filter (added by
:class:`IsolateText` at compile time, so templates need no change), which
wraps a string holding right-to-left characters in ``<bdi>``; in attribute
values and ``<title>`` (where no element may go) the Unicode isolates
U+2068/U+2069 do the same. The summary marks the user values inside its
sentences so that only they are isolated.

The report never computes a metric: it selects (the worst condition, the
largest gap) and formats what the results contain, and shows "—" for what
is missing.

Accessibility (WCAG 2.2 AA, checked with axe-core in
``tests/reports/test_report_accessibility.py``): the page declares its
language (``report.language`` in the results, default ``en``), has a skip
link, a ``main`` landmark and one named region per section, headings that
form one outline, tables with captions and header scopes, and every chart
comes with a text alternative that states its data plus the same numbers as
a table in a ``<details>`` element (:class:`ChartView`).
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import jinja2.ext
from jinja2.lexer import Token
from markupsafe import Markup, escape

from audit.contract.gaptests import rule_too_few_to_tell
from audit.contract.load import parse_results
from audit.contract.results import Results
from audit.contract.text import bidi_isolate, has_rtl, neutralise
from reports import plots
from reports.breaking_points_view import breaking_point_view
from reports.error_examples import EXAMPLES_PER_TARGET, error_examples
from reports.group_view import group_tables, name_some, pick_chart_groups
from reports.rule_words import rule_in_words

__all__ = ["ChartView", "DataTable", "as_results_dict", "render_html"]

DEFAULT_LANGUAGE = "en"
#: Sample ids shown per governance finding (all of them are in governance.csv).
SAMPLE_ID_LIMIT = 20
#: Skipped images listed by name (all of them are in skipped.csv; every reason is counted).
SKIPPED_LIMIT = 50
#: Values of one attribute named in "What was tested" (every value's count is in groups.csv).
ATTRIBUTE_VALUES_LIMIT = 30
#: Too-small groups named in the limitations (all of them are marked in the tables and groups.csv).
SMALL_GROUPS_LIMIT = 20
#: Groups drawn as their own lines in the attack chart (beyond: the lowest and highest three).
ATTACK_GROUP_LINES = 6
_DATA_IMAGE = re.compile(r"^data:image/(png|jpeg|webp|gif);base64,[A-Za-z0-9+/=\s]+$")
# Metrics stored as shares in [0, 1] (shown in %) and differences of shares (shown in percentage points).
SHARE_METRICS = frozenset(
    {
        "accuracy",
        "balanced_accuracy",
        "macro_f1",
        "top_k_accuracy",
        "ece",
        "mce",
        "adaptive_ece",
        "fnr",
        "fpr",
        "skipped_share",
    }
)
GAP_METRICS = frozenset(
    {"accuracy_gap", "equalized_odds_difference", "demographic_parity_difference", "drop", "accuracy_drop"}
)
#: How each evaluation.interval is described (results written before it existed used the bootstrap).
INTERVAL_METHODS = {
    "wilson": "the Wilson score interval from the counts (exact for any split of the run, no seed)",
    "clopper-pearson": "the Clopper-Pearson (exact) interval from the counts",
    "bootstrap": "the percentile interval of a seeded Poisson bootstrap over images",
}
# Metrics that count images.
COUNT_METRICS = frozenset({"n", "num_samples", "num_skipped", "count"})


@dataclass(frozen=True)
class DataTable:
    """A table of formatted numbers: one header cell per row and per column.

    Attributes:
        caption: What the table holds, with its units.
        corner: Header of the row-header column.
        columns: Column headers.
        rows: ``(row header, cells)``; every cell is already formatted with its unit.
    """

    caption: str
    corner: str
    columns: list[str]
    rows: list[tuple[str, list[str]]]


@dataclass(frozen=True)
class ChartView:
    """A chart and its numbers: the SVG (whose ``<title>`` states the data), a caption, the data as a table.

    Attributes:
        name: The chart's name (the first sentence of its text alternative).
        svg: The ``<svg role="img">`` markup from :mod:`reports.plots`.
        caption: The visible figure caption.
        table: The numbers drawn, shown under the chart in a ``<details>`` element.
    """

    name: str
    svg: Markup
    caption: str
    table: DataTable


def as_results_dict(results: Results | Mapping[str, Any]) -> dict[str, Any]:
    """The results as a plain dict, validated by the one reader when they come as a mapping.

    Raises:
        ResultsError: the mapping is not valid results (see :func:`audit.contract.parse_results`).
    """
    if isinstance(results, Results):
        return results.to_dict()
    return parse_results(dict(results), source="results").to_dict()


def render_html(
    results: Results | Mapping[str, Any],
    *,
    signature: Mapping[str, Any] | None = None,
    predictions: str | os.PathLike[str] | None = None,
) -> str:
    """Render the report as one self-contained HTML string.

    Args:
        results: The results dict as in results.json; optional keys may be
            missing and unknown keys are ignored.
        signature: Who signs the report (:func:`reports.signature_view.signature_view`);
            ``None``: the report says it is unsigned.
        predictions: The run's predictions.csv, from which the misclassified samples of each
            failing condition and group are named (:mod:`reports.error_examples`); None when
            no predictions.csv is known to belong to these results (the report says so).

    Returns:
        The HTML document.

    Raises:
        ResultsError: the results are not valid (see :func:`as_results_dict`).
    """
    results = as_results_dict(results)
    view = build_view(results, predictions=predictions)
    return _environment().get_template("report.html.j2").render(**view, signature=signature)


@functools.lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")),
        autoescape=True,
        undefined=jinja2.ChainableUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=[IsolateText],
        finalize=_finalize,
    )
    env.filters.update(
        pct=fmt_pct,
        num=fmt_num,
        ci=fmt_ci,
        value=fmt_value,
        pp=fmt_pp,
        when=fmt_datetime,
        rule_value=fmt_rule_value,
        isolate=isolate,
        p_value=fmt_p,
    )
    return env


# ----------------------------------------------------------- users' strings in HTML

#: Marks a user value inside a sentence built here (private-use code points, never in the output).
_OPEN, _CLOSE = "\ue000", "\ue001"
_MARKED = re.compile(re.escape(str(escape(_OPEN))) + "(.*?)" + re.escape(str(escape(_CLOSE))), re.DOTALL)
_RAW_TEXT_ELEMENTS = ("title", "style", "script", "textarea")


def user(value: Any) -> str:
    """A user value inside a sentence: neutralised and marked, so that :func:`isolate` wraps it in ``<bdi>``."""
    text = neutralise(str(value), keep_newlines=True).replace(_OPEN, "\\ue000").replace(_CLOSE, "\\ue001")
    return f"{_OPEN}{text}{_CLOSE}"


def isolate(value: Any) -> Any:
    """The filter on every ``{{ }}`` in element content: escape, and isolate right-to-left text in ``<bdi>``.

    Markup (charts, pre-built HTML), numbers and undefined values pass
    unchanged. A string with marked user values (:func:`user`) gets each of
    them in its own ``<bdi>``; any other string holding right-to-left text is
    wrapped whole.
    """
    if isinstance(value, (Markup, jinja2.Undefined)) or value is None or isinstance(value, (int, float)):
        return value
    text = str(value)
    safe = str(escape(text))
    if _OPEN in text:
        return Markup(
            _MARKED.sub(lambda m: f"<bdi>{m.group(1)}</bdi>", safe)
            .replace(str(escape(_OPEN)), "")
            .replace(str(escape(_CLOSE)), "")
        )
    return Markup(f"<bdi>{safe}</bdi>") if has_rtl(text) else Markup(safe)


def _finalize(value: Any) -> Any:
    """Every ``{{ }}`` outside element content (attribute values, ``<title>``): Unicode isolates, no tags."""
    if isinstance(value, Markup) or not isinstance(value, str):
        return value
    text = value.replace(_OPEN, "").replace(_CLOSE, "")
    return bidi_isolate(text)


class IsolateText(jinja2.ext.Extension):
    """Adds ``| isolate`` to every ``{{ }}`` that stands in element content (not in a tag, not in ``<title>``).

    The context is read from the template text before each expression: inside
    ``<...>`` (an attribute value) or inside a raw-text element the expression
    is left to ``finalize``; elsewhere it becomes ``{{ (expr) | isolate }}``.
    """

    def filter_stream(self, stream):
        state = _HtmlState()
        for token in stream:
            if token.type == "data":
                state.feed(token.value)
                yield token
            elif token.type == "variable_begin" and state.in_content:
                yield token
                yield Token(token.lineno, "lparen", "(")
                for inner in stream:
                    if inner.type == "variable_end":
                        yield Token(inner.lineno, "rparen", ")")
                        yield Token(inner.lineno, "pipe", "|")
                        yield Token(inner.lineno, "name", "isolate")
                        yield inner
                        break
                    yield inner
            else:
                yield token


class _HtmlState:
    """Just enough of an HTML tokenizer to tell element content from tags and raw-text elements."""

    def __init__(self) -> None:
        self.in_tag = False
        self.tag = ""
        self.raw: str | None = None

    @property
    def in_content(self) -> bool:
        return not self.in_tag and self.raw is None

    def feed(self, text: str) -> None:
        i = 0
        while i < len(text):
            if self.raw is not None:
                end = text.lower().find(f"</{self.raw}", i)
                if end < 0:
                    return
                self.raw, self.in_tag, self.tag, i = None, True, "/", end + 2
            elif self.in_tag:
                end = text.find(">", i)
                if end < 0:
                    return
                self.in_tag, i = False, end + 1
                if self.tag in _RAW_TEXT_ELEMENTS:
                    self.raw = self.tag
            else:
                start = text.find("<", i)
                if start < 0:
                    return
                name = re.match(r"<([A-Za-z][A-Za-z0-9-]*)", text[start:])
                self.in_tag, self.tag, i = True, name.group(1).lower() if name else "", start + 1


def _clean_tree(value: Any) -> Any:
    """``value`` with every string (keys too) neutralised for HTML (see the module docstring)."""
    if isinstance(value, str):
        return neutralise(value, keep_newlines=True)
    if isinstance(value, dict):
        return {_clean_tree(k): _clean_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean_tree(v) for v in value]
    return value


def fmt_pct(value: Any, digits: int = 1) -> str:
    """``0.8234 -> "82.3%"``; anything not a finite number -> "—"."""
    number = _number(value)
    return "\u2014" if number is None else f"{100 * number:.{digits}f}%"


def fmt_pp(value: Any, digits: int = 1) -> str:
    """A difference of two accuracies in percentage points: ``0.162 -> "16.2 pp"``; "—" when missing."""
    number = _number(value)
    return "\u2014" if number is None else f"{100 * number:.{digits}f} pp"


def fmt_num(value: Any, digits: int = 3) -> str:
    """A number with ``digits`` decimals; "—" when missing."""
    number = _number(value)
    return "\u2014" if number is None else f"{number:.{digits}f}"


def fmt_p(value: Any) -> str:
    """A p-value: ``"< 0.001"`` below 0.001, else three decimals; "—" when missing."""
    number = _number(value)
    if number is None:
        return "\u2014"
    return "< 0.001" if number < 0.001 else f"{number:.3f}"


def fmt_ci(value: Any) -> str:
    """``[0.78, 0.85] -> "78.0–85.0%"``; "—" when missing."""
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(_number(v) is not None for v in value):
        return f"{100 * float(value[0]):.1f}\u2013{100 * float(value[1]):.1f}%"
    return "\u2014"


def fmt_value(value: Any) -> str:
    """Observed values and thresholds of policy rules, whatever their type."""
    if value is None:
        return "\u2014"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt_value(v) for v in value)
    return str(value)


def fmt_rule_value(value: Any, rule: Mapping[str, Any]) -> str:
    """A policy rule's observed value or threshold in the unit of its metric.

    Shares (accuracy, ECE, ...) in %, gaps between groups and accuracy drops in
    percentage points, ratios as plain ratios, counts in images; values of
    other metrics and of governance findings as stored (:func:`fmt_value`).
    """
    number = _number(value)
    metric, aggregate = str(rule.get("metric") or ""), rule.get("aggregate")
    if number is None or rule.get("kind") == "finding":
        return fmt_value(value)
    if aggregate == "gap" or metric in GAP_METRICS:
        return fmt_pp(number, 2)
    if aggregate == "ratio" or metric.endswith("ratio"):
        return f"{number:.3f} (ratio)"
    if metric in SHARE_METRICS:
        return fmt_pct(number, 2)
    if metric in COUNT_METRICS:
        return f"{fmt_value(value)} images"
    return fmt_value(value)


def fmt_datetime(value: Any) -> str:
    """An ISO 8601 time as ``2026-11-29 01:07:12 UTC`` (offset kept when not UTC); other text as given."""
    if not isinstance(value, str):
        return "\u2014" if value is None else str(value)
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    if when.tzinfo is None:
        return when.strftime("%Y-%m-%d %H:%M:%S")
    offset = when.utcoffset()
    return when.strftime("%Y-%m-%d %H:%M:%S") + (
        " UTC" if not offset else " UTC" + when.strftime("%z")[:3] + ":" + when.strftime("%z")[3:]
    )


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _acc(condition: Mapping[str, Any]) -> float | None:
    return _number(_dict(condition.get("metrics")).get("accuracy"))


def build_view(results: Mapping[str, Any], *, predictions: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The template's context: selected and formatted, never computed, data.

    Args:
        results: The results dict.
        predictions: The run's predictions.csv or None (see :func:`render_html`).

    Returns:
        A dict of plain values and :class:`markupsafe.Markup` charts; every
        string from the results is neutralised (see the module docstring).
    """
    results = _clean_tree(results)
    model, dataset, policy = _dict(results.get("model")), _dict(results.get("dataset")), _dict(results.get("policy"))
    conditions = [c for c in _list(results.get("conditions")) if isinstance(c, dict)]
    clean = next((c for c in conditions if c.get("id") == "clean"), conditions[0] if conditions else {})
    stressed = [c for c in conditions if c is not clean and _acc(c) is not None]
    adversarial = _adversarial_names(results)
    natural = [c for c in stressed if str(c.get("stressor")) not in adversarial]
    # charts of "the worst condition" show the hardest natural condition: a large-epsilon
    # attack probe (accuracy ~0 by design) would say nothing
    worst = min(natural or stressed, key=_acc) if stressed else None
    attack_clean = _attack_reference(results, clean)
    class_names = [str(n) for n in _list(model.get("class_names"))] or [
        str(i) for i in range(len(_list(clean.get("confusion"))))
    ]
    gallery, dropped = _gallery(results)
    groups = [g for g in _list(clean.get("groups")) if isinstance(g, dict)]
    probe_ids = {str(c.get("id")) for c in conditions if c.get("probe")}
    rules = [_rule_view(r, probe_ids) for r in _list(policy.get("rules")) if isinstance(r, dict)]
    findings = [f for f in _list(_dict(results.get("governance")).get("findings")) if isinstance(f, dict)]
    verdict = policy.get("verdict") if policy.get("verdict") in ("pass", "fail") else None
    view = {
        "results": results,
        "tool": _dict(results.get("tool")),
        "model": model,
        "model_name": Path(str(model.get("path") or "model")).name,
        "dataset": dataset,
        "attributes": _dict(dataset.get("attributes")),
        "attribute_rows": _attribute_rows(_dict(dataset.get("attributes"))),
        "attribute_values_limit": ATTRIBUTE_VALUES_LIMIT,
        "skipped": _list(dataset.get("skipped"))[:SKIPPED_LIMIT],
        "skipped_total": len(_list(dataset.get("skipped"))),
        "skipped_reasons": _skipped_reasons(_list(dataset.get("skipped"))),
        "policy": policy,
        "verdict": verdict,
        "rules": rules,
        "rule_counts": {
            s: sum(1 for r in rules if r.get("status") == s) for s in ("pass", "fail", "warn", "insufficient_data")
        },
        "blocking_failures": _blocking_failures(policy, rules),
        "failures": [_failure_view(f, rules, probe_ids) for f in _list(policy.get("failures")) if isinstance(f, dict)],
        "governance_counts": _dict(policy.get("governance_counts")),
        "governance": _dict(results.get("governance")),
        "blocking_rule_failures": [r for r in rules if r.get("status") == "fail" and r.get("blocking")],
        "conditions": conditions,
        "clean": clean,
        "worst": worst,
        "worst_natural": min(natural, key=_acc, default=None),
        # a sanity probe (eps = 0, or the large-eps gradient-masking check) is not a robustness measurement
        "worst_attack": min(
            (c for c in stressed if str(c.get("stressor")) in adversarial and not c.get("probe")),
            key=_acc,
            default=None,
        ),
        "probes": [c.get("id") for c in conditions if c.get("probe")],
        "probe_ids": probe_ids,
        "drops": {
            r.get("condition"): r.get("drop", r.get("accuracy_drop"))
            for r in _list(results.get("robustness"))
            if isinstance(r, dict)
        },
        "stressors": [_run_levels_only(s) for s in _list(results.get("stressors")) if isinstance(s, dict)],
        "severity_chart": _severity_chart(conditions, clean, adversarial),
        "adversarial_chart": _adversarial_chart(conditions, attack_clean, adversarial),
        "adversarial_checks": [a for a in _list(results.get("adversarial_checks")) if isinstance(a, dict)],
        "reliability": _reliability(clean, worst),
        "group_charts": [_group_chart(c) for c in (clean, worst) if c and _list(c.get("groups"))],
        "confusion_chart": _confusion_chart(clean, class_names),
        "class_names": class_names,
        "error_types": _dict(clean.get("error_types")),
        "fairness": [f for f in _list(results.get("fairness")) if isinstance(f, dict)],
        "disparity": [_disparity_row(d) for d in _list(results.get("robustness_disparity")) if isinstance(d, dict)],
        "findings": findings,
        # a check that could not be judged (a column absent, other settings) is not a finding
        "governance_flagged": [f for f in findings if f.get("status") in ("fail", "warn") and not _unjudged(f)],
        "governance_unjudged": [f for f in findings if _unjudged(f)],
        # sample ids are users' strings; their thumbnails come from results.json (error_thumbnails)
        "error_examples": _named_samples(results, predictions),
        "examples_known": predictions is not None and Path(predictions).is_file(),
        "examples_per_target": EXAMPLES_PER_TARGET,
        "sample_id_limit": SAMPLE_ID_LIMIT,
        "gallery": gallery,
        "group_count": len(groups),
        "group_tables": group_tables(conditions),
        "provenance": _dict(results.get("provenance")),
        "language": _dict(results.get("report")).get("language") or DEFAULT_LANGUAGE,
        "breaking_points": breaking_point_view(results),
        "evaluation": _dict(results.get("evaluation")),
        "interval_method": INTERVAL_METHODS.get(
            str(_dict(results.get("evaluation")).get("interval")), INTERVAL_METHODS["bootstrap"]
        ),
    }
    view["still_read"] = _still_read(view)
    view["summary"] = _summary(view)
    view["limitations"] = _limitations(view, dropped_images=dropped)
    return view


def _unjudged(finding: Mapping[str, Any]) -> bool:
    """A governance check that could not be judged: insufficient data, not a finding (whatever its status)."""
    return finding.get("judgeable") is False or finding.get("status") == "insufficient_data"


def _rule_view(rule: dict, probe_ids: set[str]) -> dict:
    """A rule result with its requirement in words, whether it could be tested, and whether it judges a probe."""
    out = dict(rule)
    out["words"] = rule_in_words(rule, fmt_rule_value)
    out["too_few_to_tell"] = rule_too_few_to_tell(rule)
    out["probe"] = str(rule.get("condition")) in probe_ids
    return out


def _failure_view(failure: dict, rules: list[dict], probe_ids: set[str]) -> dict:
    """A blocking failure with the words of its rule and its condition marked when that is a probe."""
    rule = next((r for r in rules if r.get("id") == failure.get("id")), None)
    out = dict(failure)
    out["words"] = rule["words"] if rule else None
    out["condition"] = rule.get("condition") if rule else None
    out["probe"] = bool(rule and rule["probe"])
    return out


def _attack_reference(results: Mapping[str, Any], clean: Mapping[str, Any]) -> Mapping[str, Any]:
    """The clean point of the attack curves: the attacked subset's clean images when attacks
    ran on a subset (``attack_reference``), else the clean condition."""
    ref = _dict(results.get("attack_reference"))
    if ref.get("metrics"):
        return {"id": "clean", "stressor": None, "metrics": ref.get("metrics"), "groups": ref.get("groups")}
    return clean


def _adversarial_names(results: Mapping[str, Any]) -> set[str]:
    """The attack labels, as the evaluator recorded them (``model_aware`` conditions, the checks'
    ``attack``); no attack is recognised by its name."""
    names = {
        str(c.get("stressor")) for c in _list(results.get("conditions")) if isinstance(c, dict) and c.get("model_aware")
    }
    names |= {str(a.get("attack")) for a in _list(results.get("adversarial_checks")) if isinstance(a, dict)}
    for s in _list(results.get("stressors")):
        if isinstance(s, dict) and (s.get("adversarial") or s.get("kind") == "adversarial"):
            names.add(str(s.get("name")))
    return names


def _curves(conditions, clean, names) -> dict[str, list[tuple[float, float]]]:
    curves: dict[str, list[tuple[float, float]]] = {}
    for c in conditions:
        sev, acc = _number(c.get("severity")), _acc(c)
        if c is clean or c.get("stressor") is None or sev is None or acc is None:
            continue
        if str(c["stressor"]) in names:
            curves.setdefault(str(c["stressor"]), []).append((sev, acc))
    base = _acc(clean)
    if base is not None:
        for points in curves.values():
            points.insert(0, (0.0, base))
    return curves


def _tick(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:.4g}"


def _series_table(series: Sequence[plots.Series], *, caption: str, corner: str, x_header) -> DataTable:
    """The points of line-chart series as a table: one row per series, one column per x."""
    xs = sorted({float(x) for s in series for x, _ in s.points})
    rows = []
    for s in series:
        by_x = {float(x): y for x, y in s.points}
        rows.append((s.label, [fmt_pct(by_x.get(x)) for x in xs]))
    return DataTable(caption, corner, [x_header(x) for x in xs], rows)


def _severity_chart(conditions, clean, adversarial) -> ChartView | None:
    names = {str(c.get("stressor")) for c in conditions if c.get("stressor") is not None} - adversarial
    curves = _curves(conditions, clean, names)
    if not curves:
        return None
    series = [plots.Series(name, pts) for name, pts in sorted(curves.items())]
    title = "Accuracy against stressor severity"
    svg = plots.line_chart(
        series,
        title=title,
        x_label="severity (0 = unaltered images)",
        x_names={0.0: "0 clean"},
        x_words={0.0: "clean"},
        x_prefix="at severity",
    )
    table = _series_table(
        series,
        caption="Accuracy in % per stressor (rows) and severity (columns); severity 0 is the unaltered images.",
        corner="stressor",
        x_header=lambda x: "0 (clean)" if x == 0 else f"severity {_tick(x)}",
    )
    caption = "Accuracy against severity, one line per stressor; 0 is the unaltered images."
    return ChartView(title, svg, caption, table)


def _adversarial_chart(conditions, clean, adversarial) -> ChartView | None:
    curves = _curves(conditions, clean, adversarial)
    if not curves:
        return None
    series = [plots.Series(f"{name} (all)", pts) for name, pts in sorted(curves.items())]
    # per-group lines for the strongest attack (lowest mean robust accuracy)
    attack = min(sorted(curves), key=lambda name: sum(a for _, a in curves[name]) / len(curves[name]))
    attribute = next((g.get("attribute") for g in _list(clean.get("groups")) if isinstance(g, dict)), None)
    extra = ""
    if attribute is not None:
        by_group: dict[str, list[tuple[float, float]]] = {}
        for c in [clean] + [c for c in conditions if c.get("stressor") == attack]:
            eps = 0.0 if c is clean else _number(c.get("severity"))
            if c is not clean and eps == 0.0:
                continue  # the clean point is already there
            for g in _list(c.get("groups")):
                acc = _number(_dict(g.get("metrics")).get("accuracy"))
                if g.get("attribute") == attribute and eps is not None and acc is not None:
                    by_group.setdefault(str(g.get("value")), []).append((eps, acc))
        if len(by_group) > ATTACK_GROUP_LINES:  # the lowest and highest three at the largest budget
            ranked = sorted(by_group, key=lambda v: max(by_group[v])[1])
            half = ATTACK_GROUP_LINES // 2
            kept = set(ranked[:half] + ranked[-half:])
            extra = (
                f" (the {half} lowest and {half} highest of {len(by_group)} groups at the largest ε; the"
                f" {len(by_group) - len(kept)} others are in groups.csv)"
            )
            by_group = {v: pts for v, pts in by_group.items() if v in kept}
        series += [plots.Series(f"{attack}: {attribute} = {v}", pts) for v, pts in by_group.items()]
    title = "Robust accuracy against attack budget epsilon"
    svg = plots.line_chart(
        series,
        title=title,
        x_label="\u03b5 (L\u221e budget in pixel units of [0, 1]; 8/255 \u2248 0.031)",
        x_names={0.0: "0 clean"},
        x_words={0.0: "unattacked"},
        x_prefix="at \u03b5 =",
        y_label="robust accuracy",
    )
    table = _series_table(
        series,
        caption="Robust accuracy in % per attack and group (rows) and attack budget \u03b5 in pixel units of"
        " [0, 1] (columns); \u03b5 = 0 is the attacked images unaltered.",
        corner="attack (group)",
        x_header=lambda x: "\u03b5 = 0 (unattacked)" if x == 0 else f"\u03b5 = {_tick(x)}",
    )
    caption = (
        "Robust accuracy against \u03b5 for every attack, and per group of the first attribute for the strongest"
        f" attack{extra}; \u03b5 = 0 is the attacked images unaltered."
    )
    return ChartView(title, svg, caption, table)


def _reliability(clean, worst) -> list[ChartView]:
    panels = []
    for label, c, colour in (("unaltered", clean, plots.PALETTE[0]), ("worst condition", worst, plots.PALETTE[1])):
        bins = [b for b in _list(_dict((c or {}).get("reliability")).get("bins")) if isinstance(b, dict)]
        if bins:
            title = f"{c.get('id')} ({label}), ECE {fmt_num(_dict(c.get('metrics')).get('ece'))}"
            svg = plots.reliability_diagram(bins, title=title, colour=colour)
            shown = [b for b in bins if b.get("n") and b.get("accuracy") is not None]
            table = DataTable(
                f"Reliability bins of {c.get('id')}: number of images, accuracy and mean confidence in % per"
                " bin of top-class confidence (empty bins left out).",
                "confidence bin",
                ["images", "accuracy", "mean confidence"],
                [
                    (
                        f"{fmt_pct(b.get('lo'))} to {fmt_pct(b.get('hi'))}",
                        [str(b.get("n")), fmt_pct(b.get("accuracy")), fmt_pct(b.get("confidence"))],
                    )
                    for b in shown
                ],
            )
            caption = f"Reliability diagram, {c.get('id')} ({label}); ECE on a 0 to 1 scale."
            panels.append(ChartView(f"Reliability diagram, {title}", svg, caption, table))
    return panels


def _group_chart(condition) -> ChartView:
    groups = [g for g in _list(condition.get("groups")) if isinstance(g, dict)]
    pick = pick_chart_groups(groups)
    bars = []
    for g in pick.shown:
        m = _dict(g.get("metrics"))
        ci = m.get("accuracy_ci") if isinstance(m.get("accuracy_ci"), (list, tuple)) else (None, None)
        lo, hi = (_number(ci[0]), _number(ci[1])) if len(ci) == 2 else (None, None)
        bars.append(
            plots.Bar(
                f"{g.get('attribute')} = {g.get('value')}",
                _number(m.get("accuracy")),
                lo,
                hi,
                bool(g.get("insufficient_data")),
                m.get("n") if isinstance(m.get("n"), int) else None,
            )
        )
    title = f"Accuracy per group, {condition.get('id')}"
    note = None
    what = "per group"
    if pick.split is not None:
        note = (
            pick.split,
            f"… and {pick.omitted} more groups: see “Accuracy by condition and group” and groups.csv",
        )
        what = (
            f"of the {pick.split} groups with the lowest and the {len(pick.shown) - pick.split} with the highest"
            f" accuracy among those with enough images ({len(groups)} groups in all; the {pick.omitted} others are in"
            " the tables “Accuracy by condition and group” below and in groups.csv)"
        )
    table = DataTable(
        f"Accuracy and its 95% interval in % and number of images {what}, condition {condition.get('id')}.",
        "group",
        ["accuracy", "95% interval", "images", "compared?"],
        [
            (
                b.label,
                [
                    fmt_pct(b.value),
                    fmt_ci([b.lo, b.hi]),
                    "—" if b.n is None else str(b.n),
                    "no: too few images" if b.flagged else "yes",
                ],
            )
            for b in bars
        ],
    )
    caption = f"Accuracy {what}, condition {condition.get('id')}. Hatched grey bars have too few images to be compared."
    return ChartView(title, plots.bar_chart_ci(bars, title=title, note=note), caption, table)


def _confusion_chart(clean, class_names) -> ChartView | None:
    matrix = _list(clean.get("confusion"))
    if not matrix or not all(isinstance(r, list) and len(r) == len(matrix) for r in matrix):
        return None
    title = f"Confusion matrix, {clean.get('id')}"
    names = [class_names[i] if i < len(class_names) else str(i) for i in range(len(matrix))]
    if len(matrix) <= 12:
        table = DataTable(
            f"Number of images per true class (rows) and predicted class (columns), {clean.get('id')}.",
            "true class",
            [f"predicted {n}" for n in names],
            [(names[i], [str(count) for count in row]) for i, row in enumerate(matrix)],
        )
    else:
        table = DataTable(
            f"Per true class, {clean.get('id')}: images predicted correctly and the most frequent wrong prediction"
            " with its number of images.",
            "true class",
            ["predicted correctly (images)", "most frequent wrong prediction", "its images"],
            [(names[i], _confusion_summary(names, i, row)) for i, row in enumerate(matrix)],
        )
    caption = (
        f"Confusion matrix on {clean.get('id')}: rows are the true class, columns the prediction; darker means a"
        " larger share of the row."
    )
    return ChartView(title, plots.heatmap(matrix, class_names, title=title), caption, table)


def _confusion_summary(names: list[str], i: int, row: list[Any]) -> list[str]:
    errors = [(count, j) for j, count in enumerate(row) if j != i and isinstance(count, int) and count > 0]
    if not errors:
        return [str(row[i]), "\u2014", "0"]
    count, j = max(errors, key=lambda e: (e[0], -e[1]))
    return [str(row[i]), names[j], str(count)]


def _attribute_rows(attributes: Mapping[str, Any]) -> list[tuple[str, list[tuple[str, Any]], int]]:
    """Per attribute: the values named (at most :data:`ATTRIBUTE_VALUES_LIMIT`, as stored) and how many more."""
    rows = []
    for attr, counts in attributes.items():
        items = list(_dict(counts).items())
        rows.append((str(attr), items[:ATTRIBUTE_VALUES_LIMIT], max(0, len(items) - ATTRIBUTE_VALUES_LIMIT)))
    return rows


def _skipped_reasons(skipped: list[Any]) -> list[tuple[str, int]]:
    """Reason -> number of skipped images, most frequent first (ties in order of first appearance)."""
    counts: dict[str, int] = {}
    for s in skipped:
        reason = str(s.get("reason")) if isinstance(s, dict) else "unknown"
        counts[reason] = counts.get(reason, 0) + 1
    return sorted(counts.items(), key=lambda item: -item[1])


def _gallery(results) -> tuple[list[dict], int]:
    items, dropped = [], 0
    for item in _list(results.get("gallery")):
        image = item.get("image") if isinstance(item, dict) else None
        if isinstance(image, str) and _DATA_IMAGE.match(image):
            items.append({"condition": item.get("condition"), "image": image})
        else:
            dropped += 1
    return items, dropped


def _named_samples(results: Mapping[str, Any], predictions: str | os.PathLike[str] | None) -> list[dict]:
    """The misclassified samples named per failing target, with their thumbnails.

    From predictions.csv when it belongs to the results (:func:`reports.error_examples.error_examples`);
    without it, the samples results.json holds thumbnails of (``error_thumbnails``, selected by the run
    from its own predictions), without their classes and probabilities (``from_results``).
    """
    if predictions is not None and Path(predictions).is_file():
        return _with_thumbnails(_clean_tree(error_examples(results, predictions)), results)
    stored = [
        {
            "condition": t.get("condition"),
            "attribute": t.get("attribute"),
            "value": t.get("value"),
            "errors": None,
            "from_results": True,
            "samples": [{"sample_id": s.get("sample_id")} for s in _list(t.get("samples")) if isinstance(s, dict)],
        }
        for t in _list(results.get("error_thumbnails"))
        if isinstance(t, dict)
    ]
    return _with_thumbnails(stored, results)


def _with_thumbnails(examples: list[dict], results: Mapping[str, Any]) -> list[dict]:
    """The named samples, each with its thumbnail (``image``) where ``error_thumbnails`` holds one for its target."""
    images = {}
    for t in _list(results.get("error_thumbnails")):
        target = (t.get("condition"), t.get("attribute"), t.get("value")) if isinstance(t, dict) else None
        for s in _list(t.get("samples")) if target else []:
            if isinstance(s, dict) and isinstance(s.get("image"), str) and _DATA_IMAGE.match(s["image"]):
                images[(*target, s.get("sample_id"))] = s["image"]
    for e in examples:
        for s in e["samples"]:
            s["image"] = images.get((e["condition"], e["attribute"], e["value"], s["sample_id"]))
        e["thumbnails"] = any(s["image"] for s in e["samples"])
    return examples


def _summary(v: Mapping[str, Any]) -> list[str]:
    """Plain-language sentences for a reader who is not an ML engineer."""
    ds, clean_m = v["dataset"], _dict(v["clean"].get("metrics"))
    stressor_names = sorted({str(c.get("stressor")) for c in v["conditions"] if c.get("stressor") is not None})
    out = [
        f"The model {user(v['model_name'])} was tested on {ds.get('num_samples', 'an unknown number of')} images"
        f" ({ds.get('num_skipped', 0)} unreadable images skipped) under {len(v['conditions'])} conditions: the"
        f" unaltered images and {max(len(v['conditions']) - 1, 0)} altered versions"
        + (f" ({', '.join(user(n) for n in stressor_names)})." if stressor_names else ".")
    ]
    if clean_m:
        out.append(
            f"On unaltered images its answer is correct {fmt_pct(clean_m.get('accuracy'))} of the time"
            f" (95% interval {fmt_ci(clean_m.get('accuracy_ci'))})."
        )
    # An attack runs on a subset; its drop is relative to that subset unaltered (results["attack_reference"]).
    for kind, worst, reference in (
        ("altered-image", v["worst_natural"], "unaltered images"),
        ("attack", v["worst_attack"], "the same images unaltered"),
    ):
        if worst:
            drop = _number(v["drops"].get(worst.get("id")))
            out.append(
                f"The hardest {kind} condition was {user(worst.get('id'))}, where accuracy fell to"
                f" {fmt_pct(_acc(worst))}"
                + (f", {100 * drop:.1f} percentage points below {reference}." if drop is not None else ".")
            )
    clean_fair = [
        f
        for f in v["fairness"]
        if f.get("condition") == v["clean"].get("id") and _number(f.get("accuracy_gap")) is not None
    ]
    if clean_fair:
        top = max(clean_fair, key=lambda f: f["accuracy_gap"])
        out.append(
            f"Between subgroups of unaltered images, the largest accuracy gap is"
            f" {100 * top['accuracy_gap']:.1f} percentage points, for {user(top.get('attribute'))}"
            f" (lowest: {user(top.get('worst_group'))})."
        )
    if _number(clean_m.get("debiased_l2_ce")) is not None:
        out.append(
            f"Its stated confidence differs from its actual accuracy by about {fmt_pct(clean_m.get('debiased_l2_ce'))}"
            f" (debiased calibration error, 95% interval {fmt_ci(clean_m.get('debiased_l2_ce_ci'))}; 0% is perfect;"
            f" the plain expected calibration error, {fmt_pct(clean_m.get('ece'))}, is biased upwards on small sets)."
        )
    elif _number(clean_m.get("ece")) is not None:
        out.append(
            f"Its stated confidence differs from its actual accuracy by {fmt_pct(clean_m.get('ece'))} on"
            " average (expected calibration error; 0% is perfect)."
        )
    out.extend(_early_stop_summary(v["conditions"]))
    untestable = [str(r.get("id")) for r in v["rules"] if rule_too_few_to_tell(r)]
    if untestable:
        out.append(
            f"{_count(len(untestable), 'rule')} cannot be tested with these data (too few images per group to tell"
            f" a real difference from chance): {', '.join(untestable)}; see their explanation under Policy rules."
        )
    n = v["rule_counts"]
    if v["rules"]:
        out.append(
            f"Policy {user(v['policy'].get('name', ''))}: {_count(n['pass'], 'rule')} passed, {n['fail']} failed"
            f" ({len(v['blocking_rule_failures'])} of them blocking), {_count(n['warn'], 'warning')},"
            f" {n['insufficient_data']} with too little data."
        )
    flagged, unjudged = v["governance_flagged"], v["governance_unjudged"]
    if flagged:
        out.append(
            f"{_count(len(flagged), 'data-governance check')} raised a finding: "
            + ", ".join(user(f.get("check")) for f in flagged)
            + "."
        )
    if unjudged:
        failing = [f for f in unjudged if f.get("status") == "fail"]
        out.append(
            f"{_count(len(unjudged), 'data-governance check')} could not be judged (insufficient data, such as a"
            " manifest column that is absent; this is not a finding): "
            + ", ".join(user(f.get("check")) for f in unjudged)
            + (
                f"; {len(failing)} of them {'fails' if len(failing) == 1 else 'fail'} the verdict because the policy"
                " treats what cannot be judged as a failure (on_insufficient_data: fail)."
                if failing
                else "."
            )
        )
    return out


def _still_read(v: Mapping[str, Any]) -> str:
    """What a passing verdict still asks the reader to look at: rule warnings, governance findings, checks not judged."""
    warned = v["rule_counts"]["warn"] + v["rule_counts"]["insufficient_data"]
    unjudged = len(v["governance_unjudged"])
    parts = [
        _count(n, noun) + tail
        for n, noun, tail in (
            (warned, "rule warning", ""),
            (len(v["governance_flagged"]), "governance finding", ""),
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


def _early_stop_summary(conditions: list[dict]) -> list[str]:
    """What early stopping did, in the words of each condition's ``early_stop`` record."""
    records = [(c.get("id"), _dict(c.get("early_stop"))) for c in conditions if isinstance(c.get("early_stop"), dict)]
    if not records:
        return []
    stopped = [(cid, r) for cid, r in records if r.get("stopped")]
    shown = "; ".join(
        f"{cid} after {r.get('samples_used')} of {r.get('samples_available')} images" for cid, r in stopped[:3]
    )
    more = f" and {len(stopped) - 3} more" if len(stopped) > 3 else ""
    full = [str(cid) for cid, r in records if not r.get("stopped")]
    out = (
        f"Early stopping was on: {len(stopped)} of {len(records)} conditions stopped as soon as the blocking rules"
        f" that read them were decided by an anytime-valid test"
        + (f" ({shown}{more})" if stopped else "")
        + (f"; {', '.join(full[:5])}{' …' if len(full) > 5 else ''} ran on every image" if full else "")
        + ". Their metrics describe the images they used."
    )
    return [out]


def _blocking_failures(policy: Mapping[str, Any], rules: list[dict]) -> list[str]:
    """Ids of what made the verdict fail: policy.blocking_failures (rules and governance checks).

    Older results without that key fall back to the failed blocking rules.
    """
    listed = policy.get("blocking_failures")
    if isinstance(listed, list):
        return [str(x) for x in listed]
    return [str(r.get("id")) for r in rules if r.get("status") == "fail" and r.get("blocking")]


def _run_levels_only(stressor: Mapping[str, Any]) -> dict[str, Any]:
    """The stressor with ``severity_meaning`` cut to the severities that were run."""
    out = dict(stressor)
    meaning, run = stressor.get("severity_meaning"), stressor.get("severities")
    if isinstance(meaning, Mapping) and isinstance(run, (list, tuple)):
        wanted = {_as_float(x) for x in run} - {None}
        out["severity_meaning"] = {k: t for k, t in meaning.items() if _as_float(k) in wanted}
    return out


def _as_float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _disparity_row(d: Mapping[str, Any]) -> dict[str, Any]:
    """One robustness-disparity row: the group that loses most, its drop, and the spread of drops."""
    drops = d.get("drops") if isinstance(d.get("drops"), Mapping) else {}
    worst = d.get("worst_group", d.get("group"))
    return {
        "condition": d.get("condition"),
        "attribute": d.get("attribute"),
        "group": worst,
        "accuracy_drop": _number(drops.get(worst)) if worst is not None else _number(d.get("accuracy_drop")),
        "disparity": _number(d.get("disparity")),
    }


def _limitations(v: Mapping[str, Any], *, dropped_images: int) -> list[str]:
    """What the numbers do not show, specific to these results where possible."""
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
    if v["adversarial_chart"] is not None:
        out.append("Robust accuracy under attack is an upper bound: a stronger or different attack may lower it.")
    small = [
        f"{user(g.get('attribute'))} = {user(g.get('value'))}"
        for g in _list(v["clean"].get("groups"))
        if isinstance(g, dict) and g.get("insufficient_data")
    ]
    if small:
        names = name_some(small, limit=SMALL_GROUPS_LIMIT, rest="(marked * in the tables and in groups.csv)")
        out.append("Groups with too few samples are shown but left out of gaps and ratios: " + names + ".")
    if v["dataset"].get("num_skipped"):
        out.append(
            f"{v['dataset']['num_skipped']} images could not be read and were skipped; see the data section and"
            " skipped.csv."
        )
    if dropped_images:
        out.append(f"{dropped_images} gallery images were left out because they were not inline PNG/JPEG data.")
    if not v["rules"]:
        out.append("No policy rules were evaluated: there is no pass/fail verdict.")
    return out
