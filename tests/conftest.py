"""Fixtures shared by the end-to-end and plugin tests (helpers live in cvaudit_fixtures.py)."""

from cvaudit_fixtures import workspace  # noqa: F401  (a fixture)
