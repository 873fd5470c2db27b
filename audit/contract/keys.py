"""The keys a pydantic model allows at a place in a document, for "unknown key" messages.

Config and policy files are parsed into models that forbid unknown keys; the message of an
unknown key lists the keys valid at its level (``data.pth_column: unknown key (valid: manifest,
images, ...)``), nested sections included.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

__all__ = ["model_at", "unknown_key_message", "valid_keys"]


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation can hold (through ``X | None``, ``list[X]``, ``dict[str, X]``...)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    out: list[type[BaseModel]] = []
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _models_in(typing.get_args(annotation)[0])
    if origin is not None or isinstance(annotation, types.UnionType):
        for arg in typing.get_args(annotation):
            out += [m for m in _models_in(arg) if m not in out]
    return out


def model_at(model: type[BaseModel], loc: Sequence[str | int]) -> type[BaseModel] | None:
    """The model that parses the mapping at ``loc`` (keys and list positions) under ``model``; None if unclear.

    Example:
        >>> from audit.contract.config import AuditConfig
        >>> model_at(AuditConfig, ["tracking", "mlflow"]).__name__
        'MlflowConfig'
        >>> valid_keys(AuditConfig, ["tracking", "mlflow"])[:3]
        ['experiment', 'run_name', 'tracking_uri']
    """
    current: type[BaseModel] = model
    pending: list[type[BaseModel]] | None = None
    for part in loc:
        if isinstance(part, int):
            continue  # a list position: the element's model is the one the field names
        field = current.model_fields.get(str(part))
        if field is None:
            return None
        pending = _models_in(field.annotation)
        if len(pending) != 1:
            return None
        current = pending[0]
    return current


def valid_keys(model: type[BaseModel], loc: Sequence[str | int]) -> list[str] | None:
    """The keys the mapping at ``loc`` may have (in the model's order); None when that is not one model."""
    found = model_at(model, loc)
    if found is None or found.model_config.get("extra") != "forbid":
        return None
    return list(found.model_fields)


def unknown_key_message(model: type[BaseModel], loc: Sequence[str | int]) -> str:
    """``unknown key (valid: a, b, c)`` for the key at ``loc`` (its last part) under ``model``."""
    keys = valid_keys(model, loc[:-1])
    return f"unknown key (valid: {', '.join(keys)})" if keys else "unknown key"
