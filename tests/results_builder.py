"""Complete a hand-made, partial results dict into one the results.json schema accepts.

Tests that care about a few keys write only those; :func:`complete_results`
fills every other required key from the contract's models (None where the
schema allows it, else an empty list or dict, 0, "" or the first literal), so
the helpers under test, which read results through the one reader, accept it.
"""

from __future__ import annotations

import types
import typing
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

from audit.contract.results import CLASSIFICATION_KEYS, SCHEMA_VERSION, Results


def _placeholder(annotation: Any) -> Any:
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is typing.Annotated:
        return _placeholder(args[0])
    if origin in (Union, types.UnionType):
        if type(None) in args:
            return None
        return _placeholder(args[0])
    if origin is Literal:
        return args[0]
    if origin is list:
        return []
    if origin is dict:
        return {}
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _complete({}, annotation)
    return {str: "", int: 0, float: 0.0, bool: False}.get(annotation)


def _complete(data: dict[str, Any], model: type[BaseModel]) -> dict[str, Any]:
    out = dict(data)
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if name in out:
            out[name] = _complete_value(out[name], annotation)
        elif field.is_required():
            out[name] = _placeholder(annotation)
    return out


def _models(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models(arg)]


def _complete_value(value: Any, annotation: Any) -> Any:
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is typing.Annotated:
        return _complete_value(value, args[0])
    if origin in (Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _complete_value(value, inner[0]) if len(inner) == 1 else value
    if isinstance(value, list) and origin is list and args:
        return [_complete_value(v, args[0]) for v in value]
    if isinstance(value, dict) and origin is dict and len(args) == 2:
        return {k: _complete_value(v, args[1]) for k, v in value.items()}
    models = _models(annotation)
    if isinstance(value, dict) and len(models) == 1:
        return _complete(value, models[0])
    return value


#: Values the schema bounds away from the placeholders (sizes >= 1, a confidence level in (0, 1)).
_DEFAULTS: dict[str, dict[str, Any]] = {
    "model": {"num_classes": 2, "format": "torchscript", "class_names": ["0", "1"]},
    "evaluation": {"min_group_size": 30, "n_bootstrap": 0, "confidence_level": 0.95, "ece_bins": 15},
    "provenance": {"world_size": 1},
    "tool": {"name": "cvaudit", "version": "0.0.0"},
}


def complete_results(partial: dict[str, Any]) -> dict[str, Any]:
    """``partial`` with every missing required key filled (see the module docstring)."""
    merged = {"schema_version": SCHEMA_VERSION, **partial}
    for section, defaults in _DEFAULTS.items():
        merged[section] = {**defaults, **(partial.get(section) or {})}
    if merged.get("task", "classification") == "classification":  # the keys a classification audit always has
        for key in CLASSIFICATION_KEYS:
            if key not in merged:
                inner = next(a for a in get_args(Results.model_fields[key].annotation) if a is not type(None))
                merged[key] = _placeholder(inner)
    return _complete(merged, Results)


def typed_results(partial: dict[str, Any]) -> Results:
    """``partial`` completed (:func:`complete_results`) and read by the one reader: what consumers take."""
    from audit.contract.load import parse_results

    return parse_results(complete_results(partial), source="results")


def typed_part(model: type[BaseModel], partial: dict[str, Any]) -> Any:
    """One part of the results (a ``policy``, a finding ...) with its missing required keys filled, validated."""
    return model.model_validate(_complete(partial, model))
