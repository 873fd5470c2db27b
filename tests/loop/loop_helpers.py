"""Helpers shared by the loop command tests: a finished tiny run, one-line error checks."""

from __future__ import annotations

import csv
from pathlib import Path

import torch
from click.testing import CliRunner
from cvaudit_fixtures import make_dataset, save_model, write_config
from torch import nn

from audit.cli import main

GOVERNANCE = """\
governance:
  retention: {period_days: 3650, blocking: false}
  consent: {blocking: false}
  region: {allowed: [EU], blocking: false}
"""


class Confused(nn.Module):
    """Sure of the wrong class: predicts the next colour channel with a large margin."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 40.0 * x.mean(dim=(2, 3)).roll(1, dims=1)


def finish_run(root: Path, *, stressors: str | None = None, model: nn.Module | None = None) -> Path:
    make_dataset(root)
    manifest = root / "manifest.csv"
    with open(manifest, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        row["region"] = "EU"
    rows[1]["consent"] = "withdrawn"
    rows[2]["consent"] = ""
    rows[3]["capture_date"] = "2001-01-01"
    rows[4]["region"] = "US"
    with open(manifest, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    save_model(root / "model.pt", model or Confused())
    cfg = write_config(root, stressors=stressors)
    text = (root / "policy.yaml").read_text().replace("min: 0.5", "min: 0.0")
    (root / "policy.yaml").write_text(text + GOVERNANCE)
    out = root / "run"
    result = CliRunner().invoke(main, ["run", str(cfg), "--out", str(out), "--quiet"])
    assert result.exit_code in (0, 1), result.output
    return out


def one_line_error(result, needle):
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert lines[0].startswith("cvaudit: error: ") and needle in lines[0], lines[0]
