"""JUnit XML for CI systems: one test case per policy rule and per governance check.

Mapping: ``fail`` -> ``<failure>`` (message names the observed value and the
threshold); ``warn`` -> a passing case (a warning does not block) whose
``<system-err>`` holds ``WARNING: ...``, and whose name is listed in its suite's
``<property name="cvaudit.warn" value="<case>"/>`` (one per warned case, with
``cvaudit.warnings``, their count, on every suite); ``insufficient_data`` and
``not_applicable`` -> ``<skipped>``; ``pass`` -> a passing case. Every case
keeps its text in ``<system-out>``.

What CI systems show (docs/integrations/ci.md): Jenkins' JUnit plugin
shows a case's standard output and standard error on its page, passing cases
included, and keeps suite properties with ``keepProperties``; GitLab's test
report shows output only for failed, errored and skipped cases, so a warning
reaches GitLab users through the job log and the report, not the test tab.
junit-10.xsd allows ``<properties>`` on ``<testsuite>`` only, hence the
suite-level properties rather than one per case.
The ``<failure>`` elements are exactly the verdict's ``policy.failures`` (blocking
rules that failed and blocking governance checks that failed). A report-only policy
(which gates nothing) says so in the property ``policy.report_only`` = ``True``.

The file validates against the Jenkins JUnit schema ``junit-10.xsd`` (so
``<testsuites>`` carries ``tests``, ``failures`` and ``errors`` but no
``skipped``, which only ``<testsuite>`` may have). Users' strings are
neutralised: control characters (tab and newline kept), bidirectional controls
and code points XML cannot carry become visible escapes such as ``\x1b``
(:func:`audit.contract.text.xml_text`, cvaudit's one XML text escaper).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from audit.contract.results import GovernanceFinding, PolicyOutcome, RuleResult
from audit.contract.text import xml_text
from reports.atomic import atomic_write_bytes


def write_junit(policy: PolicyOutcome, governance_findings: Iterable[GovernanceFinding], path: str | Path) -> Path:
    """Write junit.xml atomically (:func:`reports.atomic.atomic_write_bytes`).

    Args:
        policy: The results' ``policy`` (:class:`~audit.contract.results.PolicyOutcome`).
        governance_findings: The governance findings as judged by that policy.
        path: Where to write.

    Returns:
        The path written.
    """
    path = Path(path)
    root = ET.Element("testsuites", name=_clean(f"cvaudit policy {policy.name}"))
    policy_properties = {
        f"policy.{key}": value
        for key, value in (
            ("verdict", policy.verdict),
            ("report_only", policy.report_only),
            ("sha256", policy.sha256),
            ("version", policy.version),
        )
        if value is not None
    }
    suites = [
        _suite(
            root,
            f"policy.{policy.name}",
            f"cvaudit.policy.{policy.name}",
            [_rule_case(r) for r in policy.rules],
            policy_properties,
        ),
        _suite(
            root,
            "governance",
            "cvaudit.governance",
            [_finding_case(f) for f in governance_findings],
            {},
        ),
    ]
    for key in ("tests", "failures", "errors"):  # junit-10.xsd: no "skipped" on <testsuites>
        root.set(key, str(sum(int(suite.get(key, "0")) for suite in suites)))
    ET.indent(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n")
    return path


def _clean(value: Any) -> str:
    return xml_text(value)


def _shown(value: float | int | str | None) -> str:
    """An observed value or threshold as the case text shows it: a float to 6 significant digits."""
    if isinstance(value, float):
        return f"{value:.6g}"
    return "n/a" if value is None else str(value)


def _rule_case(rule: RuleResult) -> tuple[str, str, str, str]:
    bound = f"{rule.op} {_shown(rule.threshold)}" if rule.op else _shown(rule.threshold)
    detail = f"observed {_shown(rule.observed)}, threshold {bound}"
    where = " / ".join(str(x) for x in (rule.condition, rule.group) if x)
    lines = [
        f"{k}: {v}"
        for k, v in (
            ("target", where),
            ("clause", rule.clause),
            ("blocking", rule.blocking),
        )
        if v not in (None, "")
    ]
    text = f"{rule.message} ({detail})"
    return str(rule.id), str(rule.status), text, "\n".join([text, *lines])


def _finding_case(finding: GovernanceFinding) -> tuple[str, str, str, str]:
    ids = ", ".join(str(i) for i in finding.sample_ids)
    text = f"{finding.message} (count {finding.count})"
    lines = [text]
    if ids:
        lines.append(f"first samples: {ids}")
    if finding.clause:
        lines.append(f"clause: {finding.clause}")
    return str(finding.check), str(finding.status), text, "\n".join(lines)


def _suite(
    root: ET.Element,
    name: str,
    classname: str,
    cases: list[tuple[str, str, str, str]],
    properties: dict[str, Any],
) -> ET.Element:
    suite = ET.SubElement(root, "testsuite", name=_clean(name))
    warned = [case_name for case_name, status, _, _ in cases if status == "warn"]
    holder = ET.SubElement(suite, "properties")
    for key, value in [*properties.items(), ("cvaudit.warnings", len(warned))]:
        ET.SubElement(holder, "property", name=key, value=_clean(value))
    for case_name in warned:
        ET.SubElement(holder, "property", name="cvaudit.warn", value=_clean(case_name))
    failures = skipped = 0
    for case_name, status, message, body in cases:
        case = ET.SubElement(suite, "testcase", name=_clean(case_name), classname=_clean(classname), time="0")
        if status == "fail":
            failures += 1
            failure = ET.SubElement(case, "failure", message=_clean(message), type="blocking")
            failure.text = _clean(body)
        elif status in ("insufficient_data", "not_applicable"):
            skipped += 1
            ET.SubElement(case, "skipped", message=_clean(f"{status.replace('_', ' ')}: {message}"))
        else:
            ET.SubElement(case, "system-out").text = _clean(body)
            if status == "warn":
                ET.SubElement(case, "system-err").text = _clean(f"WARNING: {body}")
    suite.set("tests", str(len(cases)))
    suite.set("failures", str(failures))
    suite.set("errors", "0")
    suite.set("skipped", str(skipped))
    suite.set("time", "0")
    return suite
