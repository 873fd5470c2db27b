"""Data-governance checks over a dataset manifest.

Each check is one class (:class:`GovernanceCheck`: its name, the ``governance:`` section that
configures it, the columns it needs, its message, whether the labelling queue holds the images it
flags back, and its scan), registered in :mod:`policies.governance.registry` in report order.
The families: :mod:`~policies.governance.dates` (retention, unreadable and future capture dates),
:mod:`~policies.governance.consent`, :mod:`~policies.governance.recorded` (purpose, lawful basis),
:mod:`~policies.governance.personal` (personal-data columns and values, biometric samples) and
:mod:`~policies.governance.region`.

Each configured check yields one finding::

    {check, status, blocking, count, total, sample_ids, message, settings, ...}

``status`` is ``fail`` when a blocking check finds violations, ``warn`` when a
non-blocking one does, ``pass`` when none is found, and ``insufficient_data``
when the check cannot be judged because the manifest lacks the columns it
needs (:func:`policies.findings.judge_findings` then applies the policy's
``on_insufficient_data``: a fail-closed policy fails a blocking check it could
not judge). A finding carries counts, the first ``max_ids`` sample ids, the
column names involved and the ``settings`` it was computed with (so a later
``policy check`` under another policy knows whether the count still holds),
never the personal values themselves; a sample id that itself looks like
personal data is replaced by ``row <n>``. Every affected row can also be
listed (``affected=``; the runner writes them to ``governance.csv``).
"""

from __future__ import annotations

from policies.governance.base import ChunkView, GovernanceCheck, Hit
from policies.governance.registry import (
    BUILTIN_CHECKS,
    CHECK_SECTIONS,
    PERSONAL_DATA_CHECKS,
    check_blocking,
    check_is_configured,
    check_names,
    check_settings,
    get_check,
    governance_checks,
    register_check,
    unregister_check,
)
from policies.governance.scan import GovernanceScan, check_governance

__all__ = [
    "BUILTIN_CHECKS",
    "CHECK_SECTIONS",
    "PERSONAL_DATA_CHECKS",
    "ChunkView",
    "GovernanceCheck",
    "GovernanceScan",
    "Hit",
    "check_blocking",
    "check_governance",
    "check_is_configured",
    "check_names",
    "check_settings",
    "get_check",
    "governance_checks",
    "register_check",
    "unregister_check",
]
