"""Who takes part in a comparison of groups: the one "too small to judge" rule.

Both :mod:`audit.contract.groupstats` (gaps, ratios, worst group) and
:mod:`audit.contract.gaptests` (tests of group differences) build on it, so it
lives below both of them and neither imports the other back.
"""

from __future__ import annotations

from typing import Any

__all__ = ["takes_part"]


def takes_part(n: Any, min_group_size: int) -> bool:
    """Whether a group of ``n`` samples is large enough to judge (the one definition).

    Example:
        >>> takes_part(30, 30), takes_part(29, 30), takes_part(0, 0)
        (True, False, False)
    """
    return isinstance(n, int) and n > 0 and n >= min_group_size
