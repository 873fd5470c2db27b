"""What a governance check is: one class holding its name, section, message, columns and scan.

A check is a subclass of :class:`GovernanceCheck` registered in
:mod:`policies.governance.registry`; everything that lists checks (the scan, its findings, the
policy validator, the judging of stored findings, governance.csv's order, the labelling queue's
hold-back, the report's image cap) reads the registry, so a new check is one class plus its
registration.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, TypeVar

import numpy as np

from audit.contract.manifest import ManifestChunk
from policies.dates import describe_date_format
from policies.schema import GovernanceConfig

__all__ = ["ChunkView", "GovernanceCheck", "Hit", "Values", "enabled", "text"]

T = TypeVar("T")


@dataclass
class Hit:
    """The rows of one chunk that one check flagged.

    Attributes:
        rows: positions in the chunk, ascending.
        columns: per flagged row, the columns involved (recorded on the finding as ``columns``),
            or ``None`` when the check does not name columns.
        values: per flagged row, the ``reason`` and the manifest values read (one row of
            governance.csv each), or ``None`` for a count that lists no rows.
        counts: further counts the check reports on its finding (see
            :attr:`GovernanceCheck.extra_counts`), added up over the chunks.
    """

    rows: list[int]
    columns: list[tuple[str, ...]] | None = None
    values: list[dict[str, str]] | None = None
    counts: dict[str, int] = field(default_factory=dict)


class Values:
    """One column of a chunk, for checks that run once per distinct value.

    ``uniques`` are the distinct values (first-seen order); ``codes`` (each row's index into
    them) are computed only when some distinct value is flagged.
    """

    def __init__(self, values: Sequence[Any]) -> None:
        self.values = values
        try:
            self.uniques: list[Any] = list(dict.fromkeys(values))
            self._hashable = True
        except TypeError:  # an unhashable value (a caller's own rows): one entry per row
            self.uniques, self._hashable = list(values), False
        self._codes: np.ndarray | None = None

    @property
    def codes(self) -> np.ndarray:
        if self._codes is None:
            n = len(self.values)
            if self._hashable:
                index = {v: k for k, v in enumerate(self.uniques)}
                self._codes = np.fromiter(map(index.__getitem__, self.values), dtype=np.int64, count=n)
            else:
                self._codes = np.arange(n, dtype=np.int64)
        return self._codes

    def mask(self, flags: Sequence[bool] | np.ndarray) -> np.ndarray:
        """Per row: whether its value is flagged (``flags`` has one entry per distinct value)."""
        flags = np.asarray(flags, dtype=bool)
        if not flags.any():
            return np.zeros(len(self.values), dtype=bool)
        return flags[self.codes]

    def value(self, j: int) -> Any:
        """Row ``j``'s value."""
        return self.values[j]


class ChunkView:
    """One manifest chunk as every check of a scan sees it: its columns, each split into distinct
    values at most once, and results that several checks share (computed by the first that asks)."""

    def __init__(self, chunk: ManifestChunk) -> None:
        self.chunk = chunk
        self._coded: dict[str, Values] = {}
        self._shared: dict[str, Any] = {}

    def __len__(self) -> int:
        return len(self.chunk)

    @property
    def columns(self) -> Mapping[str, Sequence[Any]]:
        """column -> values, in the manifest's column order."""
        return self.chunk.columns

    def column(self, name: str) -> Sequence[Any]:
        """The values of ``name`` (``""`` for every row when the chunk lacks it)."""
        return self.chunk.column(name)

    def coded(self, name: str) -> Values:
        """Column ``name`` split into distinct values (once per chunk)."""
        if name not in self._coded:
            self._coded[name] = Values(self.chunk.column(name))
        return self._coded[name]

    def is_coded(self, name: str) -> bool:
        """Whether column ``name`` has been split into distinct values already."""
        return name in self._coded

    def shared(self, key: str, compute: Callable[[], T]) -> T:
        """``compute()``, once per chunk for all checks that ask with the same ``key``."""
        if key not in self._shared:
            self._shared[key] = compute()
        return self._shared[key]


class GovernanceCheck:
    """One governance check: its finding, its settings, and its scan of manifest chunks.

    A subclass sets the class attributes and implements :meth:`scan` and :meth:`settings`;
    the scan creates one instance per run (so an instance may keep state across chunks).

    Attributes:
        name: the finding's ``check`` (and the ``check`` column of governance.csv).
        section: the key of the policy's ``governance:`` section that configures the check (a
            field of :class:`~policies.schema.GovernanceConfig`); its ``blocking`` and
            ``clause`` are the finding's.
        counted_with: the section whose presence makes the scan count the check, when that is
            not ``section`` (the date checks are counted whenever ``retention`` runs, and
            reported when their own section is enabled too).
        message: what the count means, after ``"<count> of <total> samples: "``; formatted
            with ``columns`` (the manifest column names), ``period`` (the retention period in
            days) and ``date_format`` (the date format in words).
        holds_back_images: whether ``cvaudit queue`` keeps a sample the check flags out of
            every export.
        personal_data: whether a count means the manifest holds personal or biometric data
            (the report's images are then capped, :func:`policies.privacy.report_image_mode`).
        extra_counts: further counts the check's hits carry (:attr:`Hit.counts`), each written
            on its finding.
    """

    name: ClassVar[str]
    section: ClassVar[str]
    counted_with: ClassVar[str | None] = None
    message: ClassVar[str]
    holds_back_images: ClassVar[bool] = False
    personal_data: ClassVar[bool] = False
    extra_counts: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: GovernanceConfig, now: datetime) -> None:
        """One check for one scan.

        Args:
            config: the governance settings (under which the check is counted: :meth:`is_counted`).
            now: the reference time, timezone-aware.
        """
        self.config = config
        self.now = now

    def scan(self, chunk: ChunkView) -> Hit:
        """The rows of ``chunk`` this check flags."""
        raise NotImplementedError

    @classmethod
    def settings(cls, config: GovernanceConfig) -> dict[str, Any]:
        """The settings that decide the count (not its blocking, clause or id column).

        Two policies whose settings of a check are equal count the same samples, so a stored
        count can be judged again under the other; otherwise it cannot.
        """
        raise NotImplementedError

    @classmethod
    def needed_columns(cls, config: GovernanceConfig) -> list[str]:
        """The manifest columns the check cannot be judged without (none: it can always be judged)."""
        return []

    @classmethod
    def is_counted(cls, config: GovernanceConfig) -> bool:
        """Whether the scan counts the check under ``config``."""
        return enabled(getattr(config, cls.counted_with or cls.section))

    @classmethod
    def is_configured(cls, config: GovernanceConfig) -> bool:
        """Whether ``config`` runs the check (it then has a finding)."""
        return cls.is_counted(config) and enabled(getattr(config, cls.section))

    @classmethod
    def is_blocking(cls, config: GovernanceConfig) -> bool:
        """Whether the configured check blocks the verdict."""
        return bool(getattr(config, cls.section).blocking)

    @classmethod
    def describe(cls, config: GovernanceConfig) -> str:
        """:attr:`message` with the settings filled in."""
        period = config.retention.period_days if config.retention else 0
        return cls.message.format(
            columns=config.columns, period=period, date_format=describe_date_format(config.date_format)
        )

    @classmethod
    def adjust(cls, finding: dict[str, Any], counts: Mapping[str, int]) -> None:
        """Change the finding once all are counted (``counts``: check or extra count -> count). No change by default."""


def enabled(settings: Any) -> bool:
    """Whether a section of ``governance:`` is present and enabled."""
    return settings is not None and settings.enabled


def text(value: Any) -> str:
    """A manifest value as stripped text (``""`` for none)."""
    return "" if value is None else str(value).strip()
