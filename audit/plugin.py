"""cvaudit's pytest plugin (entry point ``pytest11``). Work in progress: options only."""


def pytest_addoption(parser):
    group = parser.getgroup("cvaudit")
    group.addoption("--cvaudit-config", default=None, help="Run this cvaudit config once per session.")
    group.addoption("--cvaudit-results", default=None, help="Reuse a stored results.json.")
