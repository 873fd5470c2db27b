"""Every number of results.json can be recomputed from predictions.csv with scikit-learn.

A real audit (PNG files, a DataLoader, two stressors, a subgroup attribute) of
a deliberately over-confident model, so that p_true reaches values far below
1e-6 where six decimals would print 0.000000 and make NLL unrecoverable.
"""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from cvaudit_fixtures import save_model, write_config
from sklearn import metrics as skm

from audit.cli import main

EPS = float(np.finfo(np.float64).eps)


class SharpColourNet(torch.nn.Module):
    """Confident colour classifier that turns confidently wrong on dark images (night)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = 480.0 * x.mean(dim=(2, 3))
        dark = x.mean(dim=(1, 2, 3)) < 0.2
        return torch.where(dark.unsqueeze(1), -logits / 4.0, logits)


def _ece_mce(confidence: np.ndarray, correct: np.ndarray, n_bins: int = 15) -> tuple[float, float]:
    """Equal-width bins (lo, hi], the first also taking 0: written out independently of cvaudit."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    ece, mce = 0.0, 0.0
    for b in range(n_bins):
        lo, hi = edges[b], edges[b + 1]
        inside = (confidence > lo) & (confidence <= hi) if b else (confidence >= lo) & (confidence <= hi)
        if inside.any():
            gap = abs(correct[inside].mean() - confidence[inside].mean())
            ece += inside.sum() / len(confidence) * gap
            mce = max(mce, gap)
    return ece, mce


def _recomputed(rows: list[dict[str, str]], k: int) -> dict[str, float]:
    y = np.array([int(r["label"]) for r in rows])
    pred = np.array([int(r["prediction"]) for r in rows])
    conf = np.array([float(r["confidence"]) for r in rows])
    p_true = np.array([float(r["p_true"]) for r in rows])
    sq = np.array([float(r["prob_sq_sum"]) for r in rows])
    ece, mce = _ece_mce(conf, (y == pred).astype(float))
    present = sorted(set(y) | set(pred))
    two_column = np.stack([np.clip(p_true, EPS, 1), 1 - np.clip(p_true, EPS, 1)], axis=1)
    return {
        "accuracy": skm.accuracy_score(y, pred),
        "balanced_accuracy": skm.balanced_accuracy_score(y, pred),
        "macro_f1": skm.f1_score(y, pred, average="macro", labels=present),
        "ece": ece,
        "mce": mce,
        "nll": skm.log_loss(np.zeros(len(y), dtype=int), two_column, labels=[0, 1]),
        "brier": float(np.mean(sq - 2 * p_true + 1)),
    }


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from cvaudit_fixtures import make_dataset

    root = tmp_path_factory.mktemp("recompute")
    make_dataset(root, n=36)
    save_model(root / "model.pt", SharpColourNet())
    cfg = write_config(
        root, stressors="  - {name: night, severities: [2, 5]}\n  - {name: occlusion, severities: [5]}\n"
    )
    result = CliRunner().invoke(main, ["run", str(cfg), "--out", str(root / "out"), "--quiet"])
    assert result.exit_code in (0, 1), result.output
    results = json.loads((root / "out" / "results.json").read_text())
    with open(root / "out" / "predictions.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return results, rows


def test_tiny_probabilities_survive_in_the_csv(run):
    _, rows = run
    tiny = [float(r["p_true"]) for r in rows if 1e-14 < float(r["p_true"]) < 1e-7]
    assert tiny, "the over-confident model should give p_true far below 1e-6 on some errors"


def test_every_metric_of_every_condition_and_group_recomputes_from_the_csv(run):
    results, rows = run
    k = results["model"]["num_classes"]
    checked = 0
    for cond in results["conditions"]:
        mine = [r for r in rows if r["condition"] == cond["id"]]
        slices = [(cond["metrics"], mine)] + [
            (g["metrics"], [r for r in mine if r[g["attribute"]] == g["value"]])
            for g in cond["groups"]
            if g["metrics"]["n"] > 0
        ]
        for stored, subset in slices:
            assert stored["n"] == len(subset)
            for name, value in _recomputed(subset, k).items():
                assert math.isclose(stored[name], value, rel_tol=0, abs_tol=1e-9), (
                    cond["id"],
                    name,
                    stored[name],
                    value,
                )
                checked += 1
    assert checked >= 3 * 3 * 7  # 4 conditions x (overall + 2 groups) x 7 metrics
