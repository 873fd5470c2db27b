"""The registry of governance checks: the one list everything else derives from.

The built-in checks are registered here in report order (the order of the findings and of
governance.csv); :func:`register_check` adds one more after them (a plugin, a test), and
:func:`unregister_check` takes it away again. The name-based functions (:func:`check_is_configured`,
:func:`check_blocking`, :func:`check_settings`) and the live views :data:`CHECK_SECTIONS` and
:data:`PERSONAL_DATA_CHECKS` read the registry as it is when called.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Set
from typing import Any

from policies.governance.base import GovernanceCheck
from policies.governance.consent import ConsentMissing, ConsentWithdrawn
from policies.governance.dates import DateInFuture, DateUnparseable, RetentionExpired
from policies.governance.personal import BiometricWithoutBasis, PiiColumns, PiiValues
from policies.governance.recorded import LawfulBasisMissing, PurposeMissing
from policies.governance.region import RegionNotAllowed
from policies.schema import CheckConfig, GovernanceConfig

__all__ = [
    "BUILTIN_CHECKS",
    "CHECK_SECTIONS",
    "PERSONAL_DATA_CHECKS",
    "check_blocking",
    "check_is_configured",
    "check_names",
    "check_settings",
    "get_check",
    "governance_checks",
    "register_check",
    "unregister_check",
]

BUILTIN_CHECKS: tuple[type[GovernanceCheck], ...] = (
    RetentionExpired,
    DateUnparseable,
    DateInFuture,
    ConsentMissing,
    ConsentWithdrawn,
    PurposeMissing,
    LawfulBasisMissing,
    PiiColumns,
    PiiValues,
    BiometricWithoutBasis,
    RegionNotAllowed,
)
"""The built-in checks, in report order."""

_CHECKS: list[type[GovernanceCheck]] = list(BUILTIN_CHECKS)


def governance_checks() -> tuple[type[GovernanceCheck], ...]:
    """Every registered check, in report order."""
    return tuple(_CHECKS)


def check_names() -> list[str]:
    """The names of the registered checks, in report order (e.g. governance.csv's order)."""
    return [check.name for check in _CHECKS]


def get_check(name: str) -> type[GovernanceCheck] | None:
    """The registered check called ``name``, or ``None``."""
    return next((check for check in _CHECKS if check.name == name), None)


def register_check(check: type[GovernanceCheck]) -> type[GovernanceCheck]:
    """Register ``check`` after those registered already; usable as a class decorator.

    Raises:
        TypeError: ``check`` is not a :class:`GovernanceCheck` with a name, a section and a message.
        ValueError: a check of that name is registered already, or its section (or ``counted_with``)
            is not a check section of :class:`~policies.schema.GovernanceConfig`.
    """
    if not (isinstance(check, type) and issubclass(check, GovernanceCheck)):
        raise TypeError(f"a governance check must subclass GovernanceCheck, got {check!r}")
    missing = [attr for attr in ("name", "section", "message") if not isinstance(getattr(check, attr, None), str)]
    if missing:
        raise TypeError(f"governance check {check.__name__} does not set {', '.join(missing)}")
    if get_check(check.name) is not None:
        raise ValueError(f"a governance check named {check.name!r} is registered already")
    for section in (check.section, check.counted_with):
        if section is not None and not _is_check_section(section):
            raise ValueError(
                f"governance check {check.name!r}: {section!r} is not a check section of the policy's governance"
            )
    _CHECKS.append(check)
    return check


def unregister_check(check: type[GovernanceCheck]) -> None:
    """Remove a check added with :func:`register_check` (built-in checks stay).

    Raises:
        ValueError: ``check`` is built in, or not registered.
    """
    if check in BUILTIN_CHECKS:
        raise ValueError(f"the built-in governance check {check.name!r} cannot be unregistered")
    _CHECKS.remove(check)


def _is_check_section(section: str) -> bool:
    field = GovernanceConfig.model_fields.get(section)
    if field is None:
        return False
    return any(isinstance(t, type) and issubclass(t, CheckConfig) for t in (field.annotation, *_args(field.annotation)))


def _args(annotation: Any) -> tuple[Any, ...]:
    return tuple(getattr(annotation, "__args__", ()))


def check_is_configured(config: GovernanceConfig | None, check: str) -> bool:
    """Whether ``config`` runs the governance check named ``check`` (an unknown name: no)."""
    found = get_check(check)
    return config is not None and found is not None and found.is_configured(config)


def check_blocking(config: GovernanceConfig, check: str) -> bool:
    """Whether the configured check named ``check`` blocks the verdict."""
    return _known(check).is_blocking(config)


def check_settings(config: GovernanceConfig, check: str) -> dict[str, Any]:
    """The settings that decide the count of the check named ``check`` (see :meth:`GovernanceCheck.settings`)."""
    return _known(check).settings(config)


def _known(name: str) -> type[GovernanceCheck]:
    found = get_check(name)
    if found is None:
        raise KeyError(name)
    return found


class _Sections(Mapping[str, str]):
    """Check name -> the ``governance`` key that configures it, for the registered checks."""

    def __getitem__(self, name: str) -> str:
        return _known(name).section

    def __iter__(self) -> Iterator[str]:
        return iter(check_names())

    def __len__(self) -> int:
        return len(_CHECKS)

    def __repr__(self) -> str:
        return repr(dict(self))


class _Names(Set[str]):
    """The names of the registered checks that have a trait."""

    def __init__(self, trait: Callable[[type[GovernanceCheck]], bool]) -> None:
        self._trait = trait

    def __contains__(self, name: object) -> bool:
        found = get_check(name) if isinstance(name, str) else None
        return found is not None and self._trait(found)

    def __iter__(self) -> Iterator[str]:
        return iter([check.name for check in _CHECKS if self._trait(check)])

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return f"{{{', '.join(map(repr, self))}}}"


CHECK_SECTIONS: Mapping[str, str] = _Sections()
"""Check name -> the ``governance`` key that configures it (a live view of the registry)."""

PERSONAL_DATA_CHECKS: Set[str] = _Names(lambda check: check.personal_data)
"""Checks whose findings mean the manifest holds personal or biometric data (a live view of the registry)."""
