"""Reduced versions of the slice-search simulation bounds (the tables: benchmarks/bench_slices.py).

Null data: the share of runs reporting any slice stays near alpha (0.05; bound 0.15 over 40 runs, where a
true rate of 0.05 exceeds it with probability < 0.01); a planted slice 10 points below the rest is found with
its exact definition; a planted property slice (the darkest 5 %) is found by that property.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.append(str(Path(__file__).resolve().parents[3] / "benchmarks"))

from bench_slices import rate

pytestmark = pytest.mark.slow


def test_null_data_rarely_reports_a_slice() -> None:
    assert rate("null", runs=40, n=4000, base=0.9, seed=11) <= 0.15


def test_planted_slice_found_with_its_definition() -> None:
    # ~400 images at 10 000, 10 points below an oracle-like 0.97 (bench: 1.00 over 200 runs)
    assert rate("planted", runs=20, n=10_000, base=0.97, k7=5, seed=12) >= 0.85


def test_planted_property_slice_found_by_the_property() -> None:
    assert rate("property", runs=10, n=10_000, base=0.97, seed=13) >= 0.8
