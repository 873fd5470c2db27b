"""The anytime-valid test against numerical integration, and its error over a whole run."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from audit.contract.sequential import PRIOR_CONCENTRATION, confidence_bound, decide, log_evidence


@pytest.mark.parametrize(
    ("k", "n", "t"), [(9, 10, 0.8), (85, 100, 0.8), (40, 100, 0.5), (930, 1000, 0.9), (3, 30, 0.2)]
)
@pytest.mark.parametrize("side", ["above", "below"])
def test_closed_form_is_the_mixture_integral(k, n, t, side):
    a, b = PRIOR_CONCENTRATION * t, PRIOR_CONCENTRATION * (1 - t)
    lo, hi = (t, 1.0) if side == "above" else (0.0, t)
    prior = stats.beta(a, b)
    mass = prior.cdf(hi) - prior.cdf(lo)

    def ratio(q):  # the likelihood ratio against t, weighted by the truncated prior
        return math.exp(k * math.log(q / t) + (n - k) * math.log((1 - q) / (1 - t))) * prior.pdf(q) / mass

    value, _ = integrate.quad(ratio, lo, hi, limit=400, points=[k / n] if lo < k / n < hi else None)
    assert math.isclose(log_evidence(k, n, t, side), math.log(value), rel_tol=1e-6, abs_tol=1e-6)


def test_decisions_and_bounds():
    assert decide(95, 100, 0.8, alpha=0.025) == "above"
    assert decide(60, 100, 0.8, alpha=0.025) == "below"
    assert decide(82, 100, 0.8, alpha=0.025) is None
    lower = confidence_bound(950, 1000, "above", alpha=0.025)
    upper = confidence_bound(950, 1000, "below", alpha=0.025)
    assert lower < 0.95 < upper and decide(950, 1000, lower - 1e-3, alpha=0.025) == "above"
    assert log_evidence(0, 0, 0.8, "above") == 0.0


def test_rechecking_after_every_batch_keeps_the_error_below_alpha():
    """At the threshold, 400 runs of 3000 samples checked every 50: the test errs in at most ~alpha of them."""
    rng = np.random.default_rng(1)
    wrong = 0
    for _ in range(400):
        k = np.cumsum(rng.random(3000) < 0.8)
        wrong += any(decide(int(k[n - 1]), n, 0.8, alpha=0.05) == "above" for n in range(50, 3001, 50))
    assert wrong / 400 <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / 400)


@pytest.mark.parametrize(("args", "message"), [((3, 2, 0.5, "above"), "0 <= k <= n"), ((1, 2, 0.5, "up"), "side")])
def test_bad_input(args, message):
    with pytest.raises(ValueError, match=message):
        log_evidence(*args)
    with pytest.raises(ValueError, match="alpha"):
        decide(1, 2, 0.5, alpha=0.0)
