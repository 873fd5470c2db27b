"""Confidence intervals of proportions, from counts: the one definition (no torch, no seed).

A proportion here is ``k`` successes out of ``n`` trials: an accuracy (``k`` = correct
predictions), a per-group accuracy, a top-k accuracy or a per-class rate (false
negatives among a class's samples ...). Its interval needs only the two counts, which
the evaluator merges exactly across batches, shards and processes, so the interval is
the same under torchrun and needs no seed.

Methods (``evaluation.interval``), each a two-sided interval of coverage ``level``:

- ``wilson`` (the default): the Wilson score interval,
  ``(p̂ + z²/2n ± z·sqrt(p̂(1-p̂)/n + z²/4n²)) / (1 + z²/n)`` with ``z`` the
  ``(1 + level)/2`` normal quantile. Its coverage stays close to nominal for small
  ``n`` and for ``p`` near 0 or 1, and it is never degenerate: with ``k = n`` the
  lower bound is ``n / (n + z²)`` < 1 (0.839 for n = 20).
- ``clopper-pearson``: the "exact" interval from Beta quantiles,
  ``[Beta((1-level)/2; k, n-k+1), Beta((1+level)/2; k+1, n-k)]`` (0 and 1 at the ends),
  which never covers less than nominal and is wider than Wilson.
- ``bootstrap`` is not computed here: it is the percentile interval of the Poisson
  bootstrap replicates the evaluator keeps (``audit.evaluation.bootstrap``).

statsmodels' ``proportion_confint(method="wilson" | "beta")`` gives the same numbers
(tested).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

__all__ = [
    "CLOSED_FORM",
    "CONFIDENCE_LEVEL",
    "INTERVAL_METHODS",
    "INTERVAL_METHOD_LABELS",
    "INTERVAL_METHOD_SPECS",
    "IntervalMethod",
    "IntervalMethodSpec",
    "clopper_pearson",
    "normal_quantile",
    "proportion_interval",
    "wilson",
]

IntervalMethod = Literal["wilson", "clopper-pearson", "bootstrap"]


@dataclass(frozen=True)
class IntervalMethodSpec:
    """One value of ``evaluation.interval``.

    Attributes:
        name: the config value.
        label: how the report describes it.
        closed_form: computed from the counts (else from the bootstrap replicates).
    """

    name: IntervalMethod
    label: str
    closed_form: bool


#: The methods of ``evaluation.interval`` by name: the one registry of interval methods.
INTERVAL_METHOD_SPECS: dict[str, IntervalMethodSpec] = {
    s.name: s
    for s in (
        IntervalMethodSpec(
            "wilson", "the Wilson score interval from the counts (exact for any split of the run, no seed)", True
        ),
        IntervalMethodSpec("clopper-pearson", "the Clopper-Pearson (exact) interval from the counts", True),
        IntervalMethodSpec("bootstrap", "the percentile interval of a seeded Poisson bootstrap over images", False),
    )
}
#: The values of ``evaluation.interval``.
INTERVAL_METHODS: tuple[str, ...] = tuple(INTERVAL_METHOD_SPECS)
#: How the report describes each method.
INTERVAL_METHOD_LABELS: dict[str, str] = {name: s.label for name, s in INTERVAL_METHOD_SPECS.items()}
#: The coverage of every interval results.json holds (``evaluation.confidence_level``).
CONFIDENCE_LEVEL = 0.95
#: The methods computed from counts (the others come from bootstrap replicates).
CLOSED_FORM: tuple[str, ...] = tuple(name for name, s in INTERVAL_METHOD_SPECS.items() if s.closed_form)


def normal_quantile(q: float) -> float:
    """The standard normal quantile (``statistics.NormalDist().inv_cdf``)."""
    return NormalDist().inv_cdf(q)


def _check(k: int, n: int, level: float) -> None:
    if isinstance(k, bool) or isinstance(n, bool) or not isinstance(k, int) or not isinstance(n, int):
        raise ValueError(f"counts must be integers; got k={k!r}, n={n!r}")
    if n < 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n; got k={k}, n={n}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1); got {level!r}")


def wilson(k: int, n: int, *, level: float = 0.95) -> list[float] | None:
    """The Wilson score interval of ``k`` successes in ``n`` trials.

    Args:
        k: successes.
        n: trials.
        level: two-sided coverage.

    Returns:
        ``[low, high]`` inside [0, 1], or None when ``n = 0``.

    Raises:
        ValueError: counts not integers with ``0 <= k <= n``, or ``level`` outside (0, 1).

    Example:
        >>> [round(x, 4) for x in wilson(18, 20)]
        [0.699, 0.9721]
        >>> round(wilson(20, 20)[0], 4)
        0.8389
    """
    _check(k, n, level)
    if n == 0:
        return None
    z = normal_quantile(0.5 + level / 2.0)
    z2 = z * z
    p = k / n
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    low = 0.0 if k == 0 else max(0.0, centre - half)
    high = 1.0 if k == n else min(1.0, centre + half)
    return [low, high]


def clopper_pearson(k: int, n: int, *, level: float = 0.95) -> list[float] | None:
    """The Clopper-Pearson ("exact") interval of ``k`` successes in ``n`` trials.

    Args:
        k: successes.
        n: trials.
        level: two-sided coverage.

    Returns:
        ``[low, high]`` inside [0, 1], or None when ``n = 0``.

    Raises:
        ValueError: as :func:`wilson`.

    Example:
        >>> [round(x, 4) for x in clopper_pearson(18, 20)]
        [0.683, 0.9877]
    """
    _check(k, n, level)
    if n == 0:
        return None
    from scipy.special import betaincinv  # imported when used: scipy.stats is slow to import

    alpha = 1.0 - level
    low = 0.0 if k == 0 else float(betaincinv(k, n - k + 1, alpha / 2))
    high = 1.0 if k == n else float(betaincinv(k + 1, n - k, 1 - alpha / 2))
    return [low, high]


def proportion_interval(k: int, n: int, *, method: str = "wilson", level: float = 0.95) -> list[float] | None:
    """The interval of a proportion by a closed-form method (see the module docstring).

    Args:
        k: successes.
        n: trials.
        method: ``wilson`` or ``clopper-pearson``.
        level: two-sided coverage.

    Returns:
        ``[low, high]``, or None when ``n = 0``.

    Raises:
        ValueError: an unknown method (``bootstrap`` is not closed-form), or bad counts.
    """
    if method == "wilson":
        return wilson(k, n, level=level)
    if method == "clopper-pearson":
        return clopper_pearson(k, n, level=level)
    raise ValueError(f"method must be one of {', '.join(CLOSED_FORM)}; got {method!r}")
