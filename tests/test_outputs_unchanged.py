"""The demo run writes what it wrote before the scale work (issue 17): same predictions, same results.

The reference (``tests/data/demo_outputs_reference.json.gz``) was recorded by
``scripts/make_output_reference.py`` from a ``cvaudit demo`` run of the revision it names. This test
compares the session's demo run (the ``demo_run`` fixture) with it:

- ``predictions.csv``, ``governance.csv`` and ``breaking_points.csv``: byte for byte;
- results.json: every key of the reference present with an equal value, after
  :func:`make_output_reference.normalise` (run times, paths, the TorchScript zip's digest, versions);
  keys the reference lacks are new keys and are not compared; a policy rule the reference lacks
  (a new rule of the built-in policy) is left out, and so are the policy's digest and rule counts,
  which a new rule changes.

The demo trains its CNN on the CPU: its weights are the same on every run here (the test would
report a model that trains differently as changed predictions).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from make_output_reference import REFERENCE, normalise

pytestmark = pytest.mark.slow


def _differences(ref: Any, new: Any, path: str = "$") -> list[str]:
    if isinstance(ref, dict):
        if not isinstance(new, dict):
            return [f"{path}: {type(new).__name__} instead of an object"]
        out = []
        for key, value in ref.items():
            if key not in new:
                out.append(f"{path}.{key}: missing")
            else:
                out += _differences(value, new[key], f"{path}.{key}")
        return out
    if isinstance(ref, list):
        if not isinstance(new, list) or len(new) != len(ref):
            return [f"{path}: {len(ref)} items before, {len(new) if isinstance(new, list) else new!r} now"]
        return [d for k, (a, b) in enumerate(zip(ref, new)) for d in _differences(a, b, f"{path}[{k}]")]
    return [] if ref == new and type(ref) is type(new) else [f"{path}: {ref!r} before, {new!r} now"]


def _without_new_rules(policy: dict[str, Any], known: set[str]) -> dict[str, Any]:
    out = {k: v for k, v in policy.items() if k not in ("sha256", "counts")}
    out["rules"] = [r for r in policy.get("rules", []) if r.get("id") in known]
    return out


def test_demo_outputs_match_the_reference(demo_run):
    reference = json.loads(gzip.decompress(REFERENCE.read_bytes()))
    for name, expected in reference["sha256"].items():
        actual = hashlib.sha256((demo_run / name).read_bytes()).hexdigest()
        assert actual == expected, f"{name} differs from the output of {reference['commit']}"
    ref = reference["results"]
    new = normalise(json.loads((demo_run / "results.json").read_text(encoding="utf-8")))
    known = {r["id"] for r in ref["policy"]["rules"]}
    ref["policy"], new["policy"] = _without_new_rules(ref["policy"], known), _without_new_rules(new["policy"], known)
    differences = _differences(ref, new)
    assert not differences, differences[:20]
    assert new["dataset"]["skipped_share"] == 0.0 and new["provenance"]["threads"] >= 1  # the new keys are there
