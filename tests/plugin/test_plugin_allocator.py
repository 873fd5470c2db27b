"""The pytest plugin runs the audit inside the user's session: it leaves glibc's ``mallopt`` alone
unless the config sets ``allocator`` (and then it is restored after the run).

The session under test replaces the ``mallopt`` binding with a recorder when its test module is
imported, before the session's audit runs; its test then reads what the audit called.
"""

from __future__ import annotations

import pytest
from cvaudit_fixtures import write_config

from audit.evaluation import allocator

pytest_plugins = ["pytester"]

SESSION = """
from audit.evaluation import allocator

calls = []


def _recorder():
    def mallopt(parameter, value):
        calls.append((parameter, value))
        return 1

    return mallopt


allocator._mallopt = _recorder


def test_mallopt_calls(cvaudit_results):
    assert cvaudit_results.metric("n", condition="clean") > 0
    assert calls == {expected}
"""


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("", []),
        ("allocator: system\n", []),
        (
            "allocator: retain\n",
            [(-3, allocator.MMAP_THRESHOLD), (-1, allocator.TRIM_THRESHOLD), (-3, 131072), (-1, 131072)],
        ),
    ],
)
def test_the_plugin_calls_mallopt_only_when_the_config_asks(pytester, workspace, monkeypatch, setting, expected):
    for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES"):
        monkeypatch.delenv(name, raising=False)
    config = write_config(workspace, stressors="", extra=setting)
    pytester.makepyfile(SESSION.replace("{expected}", repr(expected)))
    result = pytester.runpytest_subprocess("--cvaudit-config", str(config), "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
