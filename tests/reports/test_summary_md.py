"""The Markdown job summary."""

from __future__ import annotations

from results_builder import typed_results

from reports.summary_md import render_markdown_summary


def _results(**policy):
    return {
        "model": {"sha256": "ab" * 32},
        "dataset": {"num_samples": 1000},
        "conditions": [{"id": "clean"}],
        "policy": {
            "name": "demo",
            "sha256": "cd" * 32,
            "verdict": "fail",
            "blocking_failures": ["clean-accuracy"],
            "rules": [
                {
                    "id": "clean-accuracy",
                    "kind": "metric",
                    "metric": "accuracy",
                    "status": "fail",
                    "observed": 0.71,
                    "threshold": 0.8,
                    "op": "min",
                    "condition": "clean",
                    "group": None,
                    "clause": "EU AI Act Art. 15",
                    "message": "a | b\nnext line",
                },
                {
                    "id": "gap",
                    "status": "warn",
                    "observed": 0.08,
                    "threshold": 0.02,
                    "op": "max",
                    "condition": "night@3",
                    "group": "camera",
                    "message": "<script>x</script>",
                },
                {"id": "pgd", "status": "insufficient_data", "message": "no pgd"},
                {"id": "ok", "status": "pass", "message": "fine"},
            ],
            **policy,
        },
        "governance": {
            "findings": [
                {
                    "check": "consent_missing",
                    "status": "fail",
                    "blocking": True,
                    "count": 3,
                    "message": "3 of 9",
                },
                {
                    "check": "pii_values",
                    "status": "pass",
                    "blocking": True,
                    "count": 0,
                    "message": "none",
                },
            ]
        },
        "fairness": [
            {
                "condition": "clean",
                "attribute": "camera",
                "worst_group": "B|C",
                "accuracy_gap": 0.02,
                "accuracy_ratio": 0.98,
            },
            {
                "condition": "night@3",
                "attribute": "camera",
                "worst_group": "B",
                "accuracy_gap": 0.08,
                "accuracy_ratio": 0.9,
            },
        ],
    }


def _table_rows(text, header):
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(line)
    return rows


def _cells(row):
    # split on unescaped pipes only
    cells, cur, prev = [], "", ""
    for ch in row.strip()[1:-1]:
        if ch == "|" and prev != "\\":
            cells.append(cur.strip())
            cur = ""
        else:
            cur += ch
        prev = ch
    return [*cells, cur.strip()]


def test_verdict_counts_and_tables():
    md = render_markdown_summary(typed_results(_results()))
    assert md.startswith("## ❌ cvaudit: FAIL (policy demo)")
    assert "| 4 | 1 | 1 | 1 | 1 |" in md
    assert "**Blocking failures:** clean-accuracy" in md
    rules = _table_rows(md, "| rule |")
    assert len(rules) == 2 and all(len(_cells(r)) == 8 for r in rules)
    assert _cells(rules[0])[0] == "clean-accuracy" and "≥ 0.8" in rules[0]
    assert _cells(rules[0])[2] == "Accuracy on clean must be at least 0.8"
    assert "Insufficient data (1 rules)" in md
    findings = _table_rows(md, "| check |")
    assert _cells(findings[0])[:3] == ["consent\\_missing", "❌ fail", "3"]
    gaps = _table_rows(md, "| condition |")
    assert _cells(gaps[0])[0] == "night@3" and len(_cells(gaps[1])) == 6


def test_user_strings_are_escaped():
    md = render_markdown_summary(typed_results(_results()))
    assert "a \\| b next line" in md
    assert "<script>" not in md and "\\<script\\>" in md
    assert "B\\|C" in md


def test_pass_and_minimal_results():
    md = render_markdown_summary(typed_results({"policy": {"name": "p", "verdict": "pass", "rules": []}}))
    assert md.startswith("## ✅ cvaudit: PASS") and md.endswith("\n")
    assert "### Data governance" not in md and "fairness" not in md.lower()


def test_checks_that_cannot_be_judged_are_not_findings():
    results = _results()
    results["governance"]["findings"] = [
        {
            "check": check,
            "status": "fail",
            "blocking": True,
            "count": None,
            "judgeable": False,
            "message": f"cannot be judged: column for {check} is absent from the manifest",
        }
        for check in ("consent_missing", "consent_withdrawn", "purpose_missing", "region_not_allowed", "pii_values")
    ]
    md = render_markdown_summary(typed_results(results))
    assert "0 raised a finding, 5 could not be judged (insufficient data, not a finding), 0 found nothing." in md
    rows = _table_rows(md, "| check |")
    assert all(_cells(r)[1] == "❔ cannot be judged (❌ fail)" and _cells(r)[2] == "—" for r in rows)


def test_probe_conditions_are_marked():
    results = _results()
    results["conditions"].append({"id": "pgd@0", "probe": True})
    results["policy"]["rules"][1]["condition"] = "pgd@0"
    md = render_markdown_summary(typed_results(results))
    assert "pgd@0 (probe) / camera" in md
