"""Test stressors for detection audits, installed into a folder as a plugin (an entry point) for real runs.

:data:`PLUGIN_SOURCE` is a module with two stressors: ``test_shift`` moves the picture by whole pixels (a pure
translation that declares ``moves_pixels`` and maps points), ``test_undeclared`` was written before boxes existed
and says nothing about moving pixels. :func:`install_plugin` writes the module and a ``.dist-info`` declaring
their entry points, so a ``python -m audit run`` with the folder on ``PYTHONPATH`` finds them by name.
"""

from __future__ import annotations

from pathlib import Path

#: (dx, dy) in input pixels per severity of ``test_shift``.
SHIFTS = {1: (0, 20), 2: (40, 0)}

PLUGIN_SOURCE = f'''
import torch

from stressors.base import ImageStressor, Params

SHIFTS = {SHIFTS!r}


class Shift(ImageStressor):
    """Moves the picture right and down by whole pixels; what it uncovers is grey."""

    name = "test_shift"
    severity_meaning = {{k: f"{{dx}} px right, {{dy}} px down" for k, (dx, dy) in SHIFTS.items()}}
    moves_pixels = True

    def _sample(self, seeds, severity):
        dx, dy = SHIFTS[int(severity)]
        return {{"shift": torch.tensor([[float(dx), float(dy)]] * len(seeds), dtype=torch.float64)}}

    def _apply(self, images, params):
        out = torch.full_like(images, 0.45)
        h, w = images.shape[-2:]
        for i in range(images.shape[0]):
            dx, dy = (int(v) for v in params["shift"][i])
            out[i, :, dy:, dx:] = images[i, :, : h - dy, : w - dx]
        return out

    def map_points(self, points, params, size):
        return points + params["shift"].to(points.dtype)[:, None, :]


class Undeclared:
    """A stressor written before boxes existed: it does not say whether it moves pixels."""

    name = "test_undeclared"
    model_aware = False
    severity_meaning = {{1: "nothing"}}

    def __init__(self, severities=None):
        self.severities = (1,)

    def sample_params(self, sample_ids, severity, *, seed, fractional=False):
        return Params(severity=severity)

    def apply(self, images, params):
        return images
'''


def install_plugin(folder: Path) -> Path:
    """Write the plugin module and its entry points into ``folder`` (put it on ``PYTHONPATH``); returns ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cvaudit_test_shift.py").write_text(PLUGIN_SOURCE)
    info = folder / "cvaudit_test_shift-0.0.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: cvaudit-test-shift\nVersion: 0.0\n")
    (info / "entry_points.txt").write_text(
        "[cvaudit.stressors]\ntest_shift = cvaudit_test_shift:Shift\ntest_undeclared = cvaudit_test_shift:Undeclared\n"
    )
    return folder
