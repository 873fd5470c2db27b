"""A realistic results.json (as the audit stores it) and helpers for policy tests.

The numbers are chosen by hand so tests can state expected values exactly:
clean accuracy 0.95; camera A/B accuracy 0.96/0.94 (gap 0.02) clean and
0.84/0.76 (gap 0.08) under night@3; the intersection B×thick is flagged
insufficient_data (n=12).
"""

from __future__ import annotations

import copy
import json
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from results_builder import complete_results

from audit.contract.groupstats import fairness_summary
from audit.contract.load import parse_results
from audit.contract.results import SCHEMA_VERSION, Results

# id, stressor, severity, accuracy, ece, {group: accuracy}
_CONDITIONS: list[tuple[str, str | None, float | int | None, float, float | None, dict[str, float]]] = [
    ("clean", None, 0, 0.95, 0.030, {"A": 0.96, "B": 0.94, "thin": 0.93, "thick": 0.97}),
    ("night@1", "night", 1, 0.93, 0.040, {"A": 0.94, "B": 0.92, "thin": 0.91, "thick": 0.95}),
    ("night@2", "night", 2, 0.88, 0.050, {"A": 0.90, "B": 0.86, "thin": 0.86, "thick": 0.90}),
    ("night@3", "night", 3, 0.80, 0.070, {"A": 0.84, "B": 0.76, "thin": 0.78, "thick": 0.82}),
    ("night@4", "night", 4, 0.65, 0.120, {"A": 0.70, "B": 0.60, "thin": 0.62, "thick": 0.68}),
    ("night@5", "night", 5, 0.45, 0.200, {"A": 0.50, "B": 0.40, "thin": 0.43, "thick": 0.47}),
    ("blur@1", "blur", 1, 0.92, 0.035, {"A": 0.92, "B": 0.92, "thin": 0.90, "thick": 0.94}),
    ("blur@3", "blur", 3, 0.81, 0.060, {"A": 0.82, "B": 0.80, "thin": 0.78, "thick": 0.84}),
    ("blur@5", "blur", 5, 0.62, 0.110, {"A": 0.63, "B": 0.61, "thin": 0.58, "thick": 0.66}),
    ("glare@3", "glare", 3, 0.85, 0.050, {"A": 0.86, "B": 0.84, "thin": 0.84, "thick": 0.86}),
    (
        "occlusion@2",
        "occlusion",
        2,
        0.77,
        0.080,
        {"A": 0.78, "B": 0.76, "thin": 0.75, "thick": 0.79},
    ),
    ("pgd@0.0078", "pgd", 0.0078, 0.41, None, {"A": 0.42, "B": 0.40, "thin": 0.39, "thick": 0.43}),
]
_SIZES = {"A": 500, "B": 500, "thin": 480, "thick": 520}
_ATTRIBUTE = {"A": "camera", "B": "camera", "thin": "ink", "thick": "ink"}
_N = 1000
MIN_GROUP_SIZE = 30


def _ci(p: float, n: int) -> list[float]:
    half = 1.96 * (p * (1 - p) / n) ** 0.5
    return [round(max(0.0, p - half), 4), round(min(1.0, p + half), 4)]


def _confusion(acc: float, n: int) -> list[list[int]]:
    """A two-class confusion matrix of n samples with round(acc * n) on the diagonal."""
    correct = round(acc * n)
    first = n // 2
    tp0 = min(first, round(correct / 2))
    tp1 = correct - tp0
    return [[tp0, first - tp0], [n - first - tp1, tp1]]


def _metrics(acc: float, ece: float | None, n: int) -> dict[str, Any]:
    metrics: dict[str, Any] = {
        "n": n,
        "accuracy": acc,
        "accuracy_ci": _ci(acc, n),
        "macro_f1": round(acc - 0.01, 4),
        "balanced_accuracy": round(acc - 0.005, 4),
        "brier": round((1 - acc) * 1.4, 4),
        "nll": round((1 - acc) * 3.0, 4),
    }
    if ece is not None:
        metrics.update(ece=ece, ece_ci=[round(ece * 0.7, 4), round(ece * 1.3, 4)], mce=round(ece * 3, 4))
        debiased = round(ece * 0.8, 4)
        metrics.update(debiased_l2_ce=debiased, debiased_l2_ce_ci=[round(debiased * 0.6, 4), round(debiased * 1.4, 4)])
    else:
        metrics.update(ece=None, mce=None, debiased_l2_ce=None)
    return metrics


def _condition(
    cid: str,
    stressor: str | None,
    severity: Any,
    acc: float,
    ece: float | None,
    groups: dict[str, float],
) -> dict[str, Any]:
    out_groups = []
    for value, g_acc in groups.items():
        out_groups.append(
            {
                "attribute": _ATTRIBUTE[value],
                "value": value,
                "insufficient_data": False,
                "metrics": {**_metrics(g_acc, ece, _SIZES[value]), "confusion": _confusion(g_acc, _SIZES[value])},
            }
        )
    intersections = {
        ("A", "thin"): 240,
        ("A", "thick"): 260,
        ("B", "thin"): 240,
        ("B", "thick"): 12,
    }
    for (cam, ink), n in intersections.items():
        g_acc = round((groups[cam] + groups[ink]) / 2, 4)
        if (cam, ink) == ("B", "thick"):
            g_acc = 0.5  # tiny group: noisy and excluded from gaps
        out_groups.append(
            {
                "attribute": "camera×ink",
                "value": f"{cam}×{ink}",
                "insufficient_data": n < MIN_GROUP_SIZE,
                "metrics": {**_metrics(g_acc, ece, n), "confusion": _confusion(g_acc, n)},
            }
        )
    return {
        "id": cid,
        "stressor": stressor,
        "severity": severity,
        "metrics": _metrics(acc, ece, _N),
        "confusion": [[90, 10], [5, 95]],
        "groups": out_groups,
    }


def _fairness(cond: dict[str, Any]) -> list[dict[str, Any]]:
    """Fairness entries as the evaluator stores them (the one definition), plus test-only extras."""
    entries = []
    for attribute in ("camera", "ink", "camera×ink"):
        groups = [{"value": g["value"], **g["metrics"]} for g in cond["groups"] if g["attribute"] == attribute]
        entry = {"condition": cond["id"], "attribute": attribute}
        entry.update(fairness_summary(groups, min_group_size=MIN_GROUP_SIZE))
        entry["extra_key_from_a_future_version"] = {"ignored": True}
        if cond["id"] == "clean":
            entry["accuracy_gap_ci"] = [0.0, round(entry["accuracy_gap"] * 2.5, 6)]
        entries.append(entry)
    return entries


def make_results() -> dict[str, Any]:
    """A fresh results dict shaped like results.json (schema 1.0, plus extra keys)."""
    conditions = [_condition(*row) for row in _CONDITIONS]
    return {
        "schema_version": "1.0",
        "tool": {"name": "cvaudit", "version": "0.1.0"},
        "seed": 0,
        "model": {
            "path": "model.pt",
            "sha256": "ab" * 32,
            "format": "torchscript",
            "num_classes": 10,
            "class_names": [str(i) for i in range(10)],
        },
        "dataset": {
            "path": "data/manifest.csv",
            "sha256": "cd" * 32,
            "num_samples": _N,
            "num_skipped": 0,
            "attributes": {"camera": {"A": 500, "B": 500}, "ink": {"thin": 480, "thick": 520}},
        },
        "evaluation": {"min_group_size": MIN_GROUP_SIZE, "n_bootstrap": 200, "confidence_level": 0.95, "ece_bins": 15},
        "conditions": conditions,
        "fairness": [entry for cond in conditions for entry in _fairness(cond)],
        "robustness": [
            {
                "condition": c["id"],
                "stressor": c["stressor"],
                "severity": c["severity"],
                "accuracy": c["metrics"]["accuracy"],
                "clean_accuracy": 0.95,
                "drop": round(0.95 - c["metrics"]["accuracy"], 6),
            }
            for c in conditions[1:]
        ],
        "robustness_summary": {"mce": 0.21, "relative_mce": 0.16, "stressors": []},
        "adversarial_checks": [
            {
                "check": "adversarial.monotone_in_epsilon",
                "status": "pass",
                "attack": "pgd",
                "observed": 0.0,
                "message": "pgd: robust accuracy does not rise with epsilon",
            },
            {
                "check": "adversarial.zero_epsilon_matches_clean",
                "status": "warn",
                "attack": "pgd",
                "observed": 0.02,
                "message": "pgd: accuracy at eps=0 is close to clean",
            },
        ],
        "governance": {"findings": []},
        "some_future_section": {"whatever": [1, 2, 3]},
    }


@pytest.fixture
def results() -> dict[str, Any]:
    return copy.deepcopy(make_results())


def stored_results(results: dict[str, Any] | None = None) -> dict[str, Any]:
    """``results`` (default :func:`make_results`) as a valid results.json of the current schema:
    the keys "from a future version" dropped, every other required key filled."""
    results = copy.deepcopy(results if results is not None else make_results())
    results.pop("some_future_section", None)
    results["schema_version"] = SCHEMA_VERSION
    for entry in results.get("fairness", []):
        entry.pop("extra_key_from_a_future_version", None)
        entry.pop("accuracy_gap_ci", None)  # the evaluator stores no interval of a gap
    return complete_results(results)


def typed(results: dict[str, Any] | Results) -> Results:
    """``results`` as the policy engine takes them: :func:`stored_results`, through the one reader."""
    if isinstance(results, Results):
        return results
    return parse_results(stored_results(results), source="results")


@pytest.fixture
def write_policy(tmp_path: Path) -> Callable[[str], Path]:
    """Write dedented YAML to a file in tmp_path and return its path."""
    counter = iter(range(1000))

    def write(text: str, name: str | None = None) -> Path:
        path = tmp_path / (name or f"policy{next(counter)}.yaml")
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write


@pytest.fixture
def results_file(tmp_path, results):
    """The ``results`` fixture stored as results.json (what ``cvaudit policy check`` reads)."""
    path = tmp_path / "results.json"
    path.write_text(json.dumps(stored_results(results)), encoding="utf-8")
    return path
