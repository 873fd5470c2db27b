"""The stressor registry: every stressor, built-in or third-party, is an entry point.

A package registers a stressor by declaring an entry point in the group
``cvaudit.stressors`` whose value is a class (or any factory) taking keyword
options and returning a :class:`~stressors.base.Stressor`::

    [project.entry-points."cvaudit.stressors"]
    rain = "my_package.rain:Rain"

cvaudit's own stressors are declared the same way in its ``pyproject.toml``.
Entry points are loaded once, on first use; a plugin that fails to import is
reported (a :class:`PluginWarning` naming it and the error, and listed by
:func:`broken`) and skipped, so one broken plugin never hides the others.
:func:`get` of a name declared by exactly one entry point loads that entry point
alone (an audit without attacks does not import foolbox); anything else (an unknown
name, a name declared twice, a plugin that fails to load) loads them all and reports
as described.

The name ``albumentations:<Transform>`` is resolved without an entry point: it
wraps any Albumentations transform (see :mod:`stressors.albumentations_adapter`).
"""

from __future__ import annotations

import importlib.metadata
import inspect
import warnings
from collections.abc import Callable
from typing import Any

from stressors.base import StressorError

#: The entry-point group scanned for stressors.
GROUP = "cvaudit.stressors"
#: Prefix of names resolved by the Albumentations adapter.
ALBUMENTATIONS_PREFIX = "albumentations:"


class PluginWarning(UserWarning):
    """A stressor plugin could not be loaded (or clashed with another) and was skipped."""


def _is_stressor(factory: Any) -> bool:
    """A loaded entry point is a stressor factory: callable, with ``apply`` or ``perturb``."""
    return callable(factory) and (hasattr(factory, "apply") or hasattr(factory, "perturb"))


class Registry:
    """Stressor factories loaded from one entry-point group.

    Args:
        group: the entry-point group to scan.

    The group is read on the first call that needs it; :meth:`refresh` reads it again.
    """

    def __init__(self, group: str = GROUP) -> None:
        self.group = group
        self._factories: dict[str, Callable[..., Any]] | None = None
        self._broken: dict[str, str] = {}
        self._single: dict[str, Callable[..., Any]] = {}

    def refresh(self) -> None:
        """Forget what was loaded; the next call scans the entry points again."""
        self._factories = None
        self._broken = {}
        self._single = {}

    def _load_single(self, name: str) -> Callable[..., Any] | None:
        """The factory of ``name`` when exactly one entry point declares it and it loads; else None."""
        if name not in self._single:
            eps = [ep for ep in importlib.metadata.entry_points(group=self.group) if ep.name == name]
            if len(eps) != 1:
                return None
            try:
                factory = eps[0].load()
            except Exception:  # a plugin's import runs its code, which may raise anything; _load reports it
                return None
            if not _is_stressor(factory):
                return None
            self._single[name] = factory
        return self._single[name]

    def _load(self) -> dict[str, Callable[..., Any]]:
        if self._factories is not None:
            return self._factories
        factories: dict[str, Callable[..., Any]] = {}
        origins: dict[str, str] = {}
        broken: dict[str, str] = {}
        for ep in importlib.metadata.entry_points(group=self.group):
            if ep.name in origins:
                if origins[ep.name] != ep.value:
                    message = f"defined twice ({origins[ep.name]!r} and {ep.value!r}); keeping the first"
                    warnings.warn(f"stressor plugin {ep.name!r}: {message}", PluginWarning, stacklevel=3)
                continue
            origins[ep.name] = ep.value
            try:
                factory = ep.load()
            except Exception as exc:  # a plugin's import runs its code: whatever it raises, that plugin is broken
                broken[ep.name] = f"{ep.value}: {type(exc).__name__}: {exc}"
            else:
                if _is_stressor(factory):
                    factories[ep.name] = factory
                else:
                    broken[ep.name] = f"{ep.value}: not a stressor class (no apply or perturb)"
            if ep.name in broken:
                warnings.warn(
                    f"stressor plugin {ep.name!r} is broken and was skipped: {broken[ep.name]}",
                    PluginWarning,
                    stacklevel=3,
                )
        self._factories, self._broken = factories, broken
        return factories

    def available(self) -> list[str]:
        """Names of the stressors that loaded, sorted."""
        return sorted(self._load())

    def broken(self) -> dict[str, str]:
        """Plugins that failed to load: name -> ``"module:attr: ErrorType: message"``."""
        self._load()
        return dict(self._broken)

    def factory(self, name: str) -> Callable[..., Any]:
        """The class (or factory) registered under ``name``.

        Raises:
            StressorError: no loaded stressor has that name.
        """
        if self._factories is None:
            single = self._load_single(name)
            if single is not None:
                return single
        factories = self._load()
        if name in factories:
            return factories[name]
        if name in self._broken:
            raise StressorError(f"stressor {name!r} is installed but broken: {self._broken[name]}")
        known = ", ".join(sorted(factories)) or "none (is cvaudit installed?)"
        raise StressorError(f"unknown stressor {name!r}; available: {known}, or albumentations:<Transform>")

    def get(self, name: str, **options: Any) -> Any:
        """Build the stressor ``name`` with keyword ``options``.

        Args:
            name: a registered name (``"night"``) or ``"albumentations:<Transform>"``.
            **options: the stressor's settings, e.g. ``kind="motion"``, ``severities=[1, 3]``.

        Returns:
            the stressor instance.

        Raises:
            StressorError: unknown name, unknown option or invalid option value;
                the message names the stressor and the option.
        """
        if not isinstance(name, str) or not name:
            raise StressorError(f"stressor name must be a non-empty string, got {name!r}")
        if name.startswith(ALBUMENTATIONS_PREFIX):
            from stressors.albumentations_adapter import AlbumentationsStressor

            factory: Callable[..., Any] = AlbumentationsStressor
            options = {"transform": name[len(ALBUMENTATIONS_PREFIX) :], **options}
        else:
            factory = self.factory(name)
        check_options(name, factory, options)
        try:
            return factory(**options)
        except StressorError:
            raise
        except (TypeError, ValueError) as exc:
            raise StressorError(f"{name}: invalid options {sorted(options)}: {exc}") from exc


def check_options(name: str, factory: Callable[..., Any], options: dict[str, Any]) -> None:
    """Raise :class:`StressorError` naming ``name`` and the first option ``factory`` does not accept."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # builtins without a signature: let the call decide
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = {
        key
        for key, p in params.items()
        if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    }
    for key in options:
        if key not in accepted:
            raise StressorError(
                f"{name}: unknown option {key!r}; accepted options: {', '.join(sorted(accepted)) or 'none'}"
            )


_DEFAULT = Registry()


def available() -> list[str]:
    """Names of every loadable stressor (built-in and plugins), sorted."""
    return _DEFAULT.available()


def broken() -> dict[str, str]:
    """Plugins that failed to load and were skipped: name -> error."""
    return _DEFAULT.broken()


def factory(name: str) -> Callable[..., Any]:
    """The class registered under ``name`` (read its traits without building it); see :meth:`Registry.factory`."""
    return _DEFAULT.factory(name)


def get(name: str, **options: Any) -> Any:
    """Build a stressor by name; see :meth:`Registry.get`."""
    return _DEFAULT.get(name, **options)


def refresh() -> None:
    """Re-scan the entry points on the next call (after installing a plugin)."""
    _DEFAULT.refresh()
