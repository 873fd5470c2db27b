"""Reference packages that cannot live in cvaudit's virtual environment, for tests and benchmarks.

torchattacks (the attack reference of issue 28: ``APGD``, ``APGDT``, ``FAB``, ``Square``, ``AutoAttack``)
declares torchvision and ``requests~=2.25``, which would replace cvaudit's pinned torch and requests. The
Makefile's extras step therefore installs it without dependencies into a side folder of the venv,
``<venv>/side/torchattacks-3.5.1`` (it needs only torch, numpy and scipy, which the venv has);
:func:`torchattacks` puts that folder on ``sys.path`` and imports it. ``CVAUDIT_TORCHATTACKS`` may name
another folder. When it is missing the test is skipped, except in CI (``CVAUDIT_CI``), where it fails.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

TORCHATTACKS_VERSION = "3.5.1"


def torchattacks_folder() -> Path:
    """The side folder torchattacks is installed into (``CVAUDIT_TORCHATTACKS`` overrides it)."""
    override = os.environ.get("CVAUDIT_TORCHATTACKS")
    return Path(override) if override else Path(sys.prefix) / "side" / f"torchattacks-{TORCHATTACKS_VERSION}"


def load_torchattacks() -> ModuleType | None:
    """torchattacks imported from its side folder, or None when the folder does not hold it.

    A torchattacks of another version already imported (or on the path) is refused: the tests'
    bounds were measured against this one.
    """
    folder = torchattacks_folder()
    if not (folder / "torchattacks" / "__init__.py").is_file():
        return None
    if str(folder) not in sys.path:
        sys.path.append(str(folder))  # appended: the venv's own packages (torch, numpy) keep precedence
    module = importlib.import_module("torchattacks")
    if getattr(module, "__version__", None) != TORCHATTACKS_VERSION:
        raise RuntimeError(
            f"torchattacks {getattr(module, '__version__', '?')} imported from {module.__file__}; "
            f"the reference tests need {TORCHATTACKS_VERSION} from {folder}"
        )
    return module


def torchattacks() -> ModuleType:
    """torchattacks for a test: skipped when not installed, a failure in CI (``CVAUDIT_CI``)."""
    module = load_torchattacks()
    if module is None:
        message = (
            f"torchattacks {TORCHATTACKS_VERSION} not installed in {torchattacks_folder()} "
            f"(make test installs it: pip install --no-deps --target <venv>/side/torchattacks-{TORCHATTACKS_VERSION} "
            f"torchattacks=={TORCHATTACKS_VERSION})"
        )
        if os.environ.get("CVAUDIT_CI"):
            pytest.fail(message)
        pytest.skip(message)
    return module
