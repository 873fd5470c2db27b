"""A finished tiny run to build queues and recipes from."""

from __future__ import annotations

from pathlib import Path

import pytest
from loop_helpers import finish_detection_run, finish_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return finish_run(tmp_path_factory.mktemp("run"))


@pytest.fixture(scope="module")
def det_run(tmp_path_factory) -> Path:
    """A finished detection run (loop_helpers.finish_detection_run)."""
    return finish_detection_run(tmp_path_factory.mktemp("detrun"))
