"""Audits as tests. Run with, for example:

    pytest examples/pytest --cvaudit-config cvaudit-demo/workspace/config.yaml
    pytest examples/pytest --cvaudit-results cvaudit-demo/results.json

Without either option these tests are skipped.
"""

import pytest

from audit.testing import assert_metric, assert_no_regression, assert_policy


def test_clean_accuracy(cvaudit_results):
    assert_metric(cvaudit_results, "accuracy", ">=", 0.8, condition="clean")


def test_camera_b_at_night(cvaudit_results):
    if "night@1" not in cvaudit_results.condition_ids:
        pytest.skip("this audit has no night@1 condition")
    assert_metric(cvaudit_results, "accuracy", ">=", 0.5, condition="night@1", group=("camera", "B"))


def test_demo_policy(cvaudit_results):
    assert_policy(cvaudit_results, "demo")


@pytest.mark.cvaudit(policy="demo")
def test_demo_rule(cvaudit_rule):
    """One test per rule of the demo policy (shown one by one in --junitxml)."""
    cvaudit_rule.check()


def test_no_regression_against_itself(cvaudit_results):
    assert_no_regression(cvaudit_results, cvaudit_results, tolerance=0.0)
