"""The installed cvaudit version, as recorded in results.json and attestations."""

from __future__ import annotations

from importlib import metadata

__all__ = ["tool_version"]


def tool_version() -> str:
    """The installed cvaudit version, or ``"0+unknown"`` when the package is not installed."""
    try:
        return metadata.version("cvaudit")
    except metadata.PackageNotFoundError:
        return "0+unknown"
