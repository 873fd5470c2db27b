"""Anytime-valid tests of a proportion against a threshold (for ``evaluation.early_stop``).

Checking a fixed-n interval after every batch and stopping at the first decisive look
inflates its error: re-checking a 95 % Wilson lower bound every 50 samples passes a model
whose accuracy sits exactly at the threshold about 17 % of the time instead of 2.5 %. A test
supermartingale does not have that problem: by Ville's inequality, the probability that it
*ever* reaches ``1/α`` under the null is at most ``α``, however often it is looked at.

For a threshold ``t`` and ``k`` successes in ``n`` samples (drawn in random order), the
evidence that the true rate is *above* ``t`` is the Beta-mixture likelihood ratio

    M_n = ∫_t^1 q^k (1-q)^(n-k) π(q) dq / (t^k (1-t)^(n-k)),

with ``π`` the Beta(c·t, c·(1-t)) prior truncated to (t, 1] (``c`` =
:data:`PRIOR_CONCENTRATION`). Each likelihood ratio ``(q/t)^x ((1-q)/(1-t))^(1-x)`` with
``q > t`` has expectation at most 1 under any rate ``p <= t``, so ``M_n`` is a
supermartingale under the whole null ``p <= t`` (Robbins 1970; Howard et al. 2021). The
evidence that the rate is *below* ``t`` is the same with the prior truncated to [0, t).
In closed form, with ``B`` the Beta function and ``I`` the regularised incomplete one:

    log M_n = log B(a+k, b+n-k) + log(1 - I_t(a+k, b+n-k)) - log B(a, b) - log(1 - I_t(a, b))
              - k log t - (n-k) log(1-t)          (above; ``I`` instead of ``1 - I`` below)
"""

from __future__ import annotations

import math
from typing import Literal

__all__ = ["PRIOR_CONCENTRATION", "confidence_bound", "decide", "log_evidence"]

#: c of the Beta(c·t, c·(1-t)) mixing prior: tuned (benchmarks/bench_early_stop.py) so that a
#: true rate 0.05 away from t = 0.8 is decided after about 500 samples at α = 0.025.
PRIOR_CONCENTRATION = 50.0
_EDGE = 1e-9

Side = Literal["above", "below"]


def log_evidence(k: int, n: int, threshold: float, side: Side, *, concentration: float = PRIOR_CONCENTRATION) -> float:
    """``log M_n``: the evidence that the rate is above (or below) ``threshold``.

    Args:
        k: successes so far.
        n: samples so far.
        threshold: t, clipped into (1e-9, 1 - 1e-9).
        side: ``above`` (H0: p <= t) or ``below`` (H0: p >= t).
        concentration: c of the prior.

    Returns:
        The log of the test supermartingale (0 at n = 0; -inf when the data exclude the side).

    Raises:
        ValueError: counts not ``0 <= k <= n``, or an unknown side.

    Example:
        >>> log_evidence(0, 0, 0.8, "above")
        0.0
        >>> log_evidence(95, 100, 0.8, "above") > math.log(40)
        True
    """
    if not (isinstance(k, int) and isinstance(n, int) and 0 <= k <= n):
        raise ValueError(f"need integer counts 0 <= k <= n; got k={k!r}, n={n!r}")
    if side not in ("above", "below"):
        raise ValueError(f"side must be 'above' or 'below'; got {side!r}")
    if n == 0:
        return 0.0
    from scipy.special import betainc, betaincc, betaln  # imported when used

    t = min(max(float(threshold), _EDGE), 1 - _EDGE)
    a, b = concentration * t, concentration * (1 - t)
    tail = betaincc if side == "above" else betainc
    posterior, prior = float(tail(a + k, b + n - k, t)), float(tail(a, b, t))
    if posterior <= 0.0:
        return -math.inf
    return (
        float(betaln(a + k, b + n - k))
        + math.log(posterior)
        - float(betaln(a, b))
        - math.log(prior)
        - k * math.log(t)
        - (n - k) * math.log1p(-t)
    )


def decide(k: int, n: int, threshold: float, *, alpha: float) -> Side | None:
    """Which side of ``threshold`` the rate is shown to be on, at level ``alpha`` (or None yet).

    Returns:
        ``above`` when ``M_n(above) >= 1/alpha``, ``below`` when ``M_n(below) >= 1/alpha``,
        None otherwise. Each side errs with probability at most ``alpha`` over the whole run.

    Raises:
        ValueError: ``alpha`` outside (0, 1), or bad counts.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1); got {alpha!r}")
    bar = math.log(1.0 / alpha)
    if log_evidence(k, n, threshold, "above") >= bar:
        return "above"
    if log_evidence(k, n, threshold, "below") >= bar:
        return "below"
    return None


def confidence_bound(k: int, n: int, side: Side, *, alpha: float) -> float:
    """The bound of the anytime-valid confidence sequence on the side of a decision.

    ``lower``: the largest ``t`` at which the evidence for "above t" still reaches ``1/alpha``
    (for ``side="above"``); ``upper``: the smallest ``t`` with evidence for "below t" (``side="below"``).
    Found by bisection to 1e-6.

    Returns:
        The bound in [0, 1] (0 or 1 when no threshold is excluded on that side).

    Raises:
        ValueError: as :func:`log_evidence`, or ``alpha`` outside (0, 1).
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1); got {alpha!r}")
    bar = math.log(1.0 / alpha)
    lo, hi = 0.0, 1.0
    for _ in range(40):
        mid = (lo + hi) / 2
        shown = log_evidence(k, n, mid, side) >= bar
        if side == "above":
            lo, hi = (mid, hi) if shown else (lo, mid)
        else:
            lo, hi = (lo, mid) if shown else (mid, hi)
    return lo if side == "above" else hi
