"""Proportion intervals against statsmodels' proportion_confint, and their bad input."""

from __future__ import annotations

import math

import pytest
from statsmodels.stats.proportion import proportion_confint

from audit.contract.intervals import clopper_pearson, proportion_interval, wilson

CASES = [(0, 1), (1, 1), (0, 20), (3, 20), (18, 20), (20, 20), (97, 100), (600, 1000), (1, 5000), (4999, 5000)]


@pytest.mark.parametrize(("k", "n"), CASES)
@pytest.mark.parametrize("level", [0.95, 0.9, 0.99])
def test_wilson_and_clopper_pearson_match_statsmodels(k, n, level):
    for ours, method in ((wilson(k, n, level=level), "wilson"), (clopper_pearson(k, n, level=level), "beta")):
        lo, hi = proportion_confint(k, n, alpha=1 - level, method=method)
        assert math.isclose(ours[0], lo, rel_tol=1e-9, abs_tol=1e-12), (method, k, n)
        assert math.isclose(ours[1], hi, rel_tol=1e-9, abs_tol=1e-12), (method, k, n)


@pytest.mark.parametrize("method", ["wilson", "clopper-pearson"])
@pytest.mark.parametrize("n", [1, 5, 20, 50, 200, 1000])
def test_never_degenerate_when_all_right_or_all_wrong(method, n):
    lo, hi = proportion_interval(n, n, method=method)
    assert hi == 1.0 and lo < 1.0 and hi - lo > 1e-4
    lo, hi = proportion_interval(0, n, method=method)
    assert lo == 0.0 and hi > 0.0 and hi - lo > 1e-4


def test_empty_gives_none():
    assert wilson(0, 0) is None and clopper_pearson(0, 0) is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((3, 2), "0 <= k <= n"),
        ((-1, 2), "0 <= k <= n"),
        ((1.0, 2), "integers"),
        ((True, 2), "integers"),
    ],
)
def test_bad_counts(args, message):
    with pytest.raises(ValueError, match=message):
        wilson(*args)


def test_bad_level_and_method():
    with pytest.raises(ValueError, match="level"):
        wilson(1, 2, level=1.0)
    with pytest.raises(ValueError, match="method"):
        proportion_interval(1, 2, method="bootstrap")
