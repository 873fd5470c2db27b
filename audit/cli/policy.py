"""``cvaudit policy``: list and show policies, judge stored results again.

Exit codes of ``check``: 0 every blocking rule and governance check passed,
1 one failed, 2 bad input (one line on stderr naming the file and problem).
No model is run: the stored results.json is judged as it is. Governance
findings (from ``--manifest``, or else those stored in results.json) are judged
under the policy given now: a stored finding's own status and blocking flag,
set by the policy of the original run, do not count (see
:func:`policies.findings.judge_findings`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from audit.cli.boundary import boundary, fail, say
from audit.contract.errors import ExitCode

_FORMAT = click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Output on stdout.",
)


@click.group("policy")
def policy_group() -> None:
    """Policies: rules over results.json and data-governance checks."""


@policy_group.command("list")
@_FORMAT
@boundary
def list_command(fmt: str) -> None:
    """List the built-in policies."""
    from policies import available_policies, load_policy

    rows = []
    for name in available_policies():
        policy = load_policy(name)
        rows.append({"name": name, "rules": len(policy.rules), "description": policy.description or ""})
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(f"{row['name']:<12} {row['rules']:>3} rules  {' '.join(row['description'].split())}")


@policy_group.command("show")
@click.argument("name")
@boundary
def show_command(name: str) -> None:
    """Print a policy file (a built-in NAME or a path), after validating it."""
    from policies import builtin_policy_text, check_gate, load_policy, read_policy_file

    policy = load_policy(name)
    check_gate(policy)  # a policy that could pass on nothing is refused here as in a run
    data = (
        builtin_policy_text(name) if policy.source.startswith("builtin:") else read_policy_file(Path(name), source=name)
    )
    text = data.decode("utf-8", errors="replace")
    click.echo(text, nl=not text.endswith("\n"))


@policy_group.command("check")
@click.argument("results_path", metavar="RESULTS.json", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--policy", "policy_name", required=True, help="A built-in policy name or a policy YAML path.")
@click.option(
    "--manifest",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Dataset manifest (CSV/JSONL) for the governance checks; default: the findings stored in RESULTS.json.",
)
@click.option(
    "--junit",
    "junit_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write JUnit XML here.",
)
@click.option(
    "--markdown",
    "markdown_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write a Markdown summary here.",
)
@click.option(
    "--now",
    "now_text",
    default=None,
    help="Reference time (ISO 8601) for retention checks; default: now.",
)
@_FORMAT
@boundary
def check_command(
    results_path: Path,
    policy_name: str,
    manifest: Path | None,
    junit_path: Path | None,
    markdown_path: Path | None,
    now_text: str | None,
    fmt: str,
) -> ExitCode:
    """Judge RESULTS.json against a policy again, without running a model."""
    from audit.contract.load import load_results
    from audit.contract.manifest import read_manifest
    from audit.contract.plan import RunPlan
    from audit.contract.results import Governance, PolicyOutcome
    from policies import GovernanceConfig, check_governance, check_policy, judge_findings, load_policy, parse_date
    from reports import atomic_write_text, render_markdown_summary, write_junit

    results = load_results(results_path)
    policy = load_policy(policy_name)
    try:
        now = parse_date(now_text) if now_text else None
    except ValueError as exc:
        fail(f"--now: {exc}")
    if manifest is not None:
        if policy.governance is None:
            say(f"note: policy {policy.name} has no governance section; {manifest} not checked")
        findings = check_governance(read_manifest(manifest), config=policy.governance or GovernanceConfig(), now=now)
        findings = judge_findings(findings, policy)
    else:
        stored = results.governance
        counted_by = stored.policy or (results.policy.name if results.policy is not None else None)
        findings = judge_findings(stored.findings, policy, computed_by=counted_by)
    section = check_policy(
        results, policy, findings=findings, plan=RunPlan.from_results(results, source=str(results_path))
    )
    judged = results.model_copy(
        update={"policy": PolicyOutcome.model_validate(section), "governance": Governance(findings=findings)}
    )
    if junit_path is not None:
        write_junit(judged.policy, judged.governance.findings, junit_path)
    if markdown_path is not None:
        atomic_write_text(markdown_path, render_markdown_summary(judged))  # never through a planted link
    if fmt == "json":
        click.echo(json.dumps({"policy": section, "governance": {"findings": findings}}, indent=2))
    else:
        _print_text(section, findings)
    return ExitCode.FAIL if section["verdict"] != "pass" else ExitCode.PASS  # the boundary exits with it


def _print_text(section: dict[str, Any], findings: list[dict[str, Any]]) -> None:
    from audit.cli.summary import verdict_word

    gates = " (report_only: gates nothing)" if section.get("report_only") else ""
    say(
        f"policy {section['name']} (sha256 {section['sha256'][:12]}): verdict {verdict_word(section)}{gates}", err=False
    )
    for rule in section["rules"]:
        status = str(rule["status"]).upper().replace("INSUFFICIENT_DATA", "NODATA")
        say(f"  {status:<6} {rule['id']:<28} {rule['message']}", err=False)
    for finding in findings:
        say(
            f"  {str(finding.get('status')).upper():<6} "
            f"governance.{finding.get('check'):<17} {finding.get('message', '')}"
            + (" (informational: not configured by this policy)" if finding.get("informational") else ""),
            err=False,
        )
