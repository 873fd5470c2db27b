"""The pytest plugin, end to end with pytester: real audits, real failures, a missing config.

Runs use ``runpytest_subprocess``: an in-process run would import numpy and torch twice.
"""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
from cvaudit_fixtures import write_config

pytest_plugins = ["pytester"]

PASSING = """
import pytest
from audit.testing import assert_metric, assert_policy

def test_clean(cvaudit_results):
    assert cvaudit_results.metric("accuracy", condition="clean") == 1.0
    assert cvaudit_results.metric("n", condition="clean", group=("camera", "A")) == 12
    assert_metric(cvaudit_results, "accuracy", ">=", 0.9, condition="clean", group=("camera", "B"))

def test_policy(cvaudit_results):
    assert_policy(cvaudit_results, "{policy}")

@pytest.mark.cvaudit(policy="{policy}")
def test_rule(cvaudit_rule):
    cvaudit_rule.check()
"""

FAILING = """
from audit.testing import assert_metric

def test_night(cvaudit_results):
    assert_metric(cvaudit_results, "accuracy", ">", 1.0, condition="night@5", group=("camera", "A"))
"""


@pytest.fixture()
def audit_config(workspace):
    return write_config(workspace, stressors="  - {name: night, severities: [1, 5]}\n")


def test_passing_audit_one_test_per_rule(pytester, audit_config):
    policy = audit_config.parent / "policy.yaml"
    pytester.makepyfile(PASSING.replace("{policy}", str(policy)))
    junit = pytester.path / "junit.xml"
    result = pytester.runpytest_subprocess(
        "--cvaudit-config", str(audit_config), f"--junitxml={junit}", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=3)  # test_clean, test_policy, one test per rule (the policy has one)
    result.stdout.fnmatch_lines(["*= cvaudit =*", "verdict: PASS (policy e2e: 0 blocking failures*"])
    cases = [c.get("name") for c in ET.parse(junit).getroot().iter("testcase")]
    assert "test_rule[clean-accuracy]" in cases


def test_failing_threshold_is_readable(pytester, audit_config):
    pytester.makepyfile(FAILING)
    result = pytester.runpytest_subprocess("--cvaudit-config", str(audit_config), "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "cvaudit: accuracy > 1.0 failed for night@5, camera=A" in out
    assert "observed:" in out and "95% CI:" in out and "n: 12" in out
    result.stdout.fnmatch_lines(["*camera*n*accuracy*95% CI*", "*A*12*", "*B*12*"])
    # the helper's own frames are hidden: the traceback points at the user's test line
    assert "def assert_metric" not in out


def test_blocking_rule_failure_fails_its_test(pytester, workspace):
    cfg = write_config(workspace, threshold=1.01, stressors="")
    pytester.makepyfile(PASSING.replace("{policy}", str(cfg.parent / "policy.yaml")))
    result = pytester.runpytest_subprocess("--cvaudit-config", str(cfg), "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(
        ["*rule clean-accuracy*", "*observed: 1  required: >= 1.01*", "verdict: FAIL (policy e2e: 1 blocking failure*"]
    )
    result.stdout.fnmatch_lines(["  FAIL clean-accuracy: observed 1, required >= 1.01*"])


def test_missing_config(pytester, tmp_path):
    pytester.makepyfile(PASSING.replace("{policy}", "ci-gate"))
    result = pytester.runpytest_subprocess("--cvaudit-config", str(tmp_path / "nope.yaml"), "-p", "no:cacheprovider")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*cvaudit could not run: *nope.yaml: config file not found*"])


def test_stored_results_are_reused(pytester, workspace, audit_config):
    out = workspace / "out"
    # a subprocess: an in-process audit inside a pytester test would import torch's and numpy's
    # extension modules under pytester's sys.modules snapshot, which later tests cannot re-import
    run = subprocess.run(
        [sys.executable, "-m", "audit", "run", str(audit_config), "--out", str(out), "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    results = json.loads((out / "results.json").read_text())
    pytester.makepyfile(PASSING.replace("{policy}", str(audit_config.parent / "policy.yaml")))
    result = pytester.runpytest_subprocess("--cvaudit-results", str(out / "results.json"), "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    assert results["policy"]["verdict"] == "pass"


def test_without_options_the_tests_skip(pytester):
    pytester.makepyfile(PASSING.replace("{policy}", "ci-gate"))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(skipped=8)  # test_clean, test_policy and the six rules of ci-gate
