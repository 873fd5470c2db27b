"""MkDocs hook: the configuration reference, generated from the config model at every build.

``reference/configuration.md`` is not a file in ``docs/``: :func:`on_files` adds it, rendered by
:func:`render` from :class:`audit.contract.config.AuditConfig` (pydantic). Every key, its type, its
default and its description come from the model, so the page cannot drift from what ``cvaudit run``
accepts. ``tests/test_docs.py`` checks that every field of every section appears.
"""

from __future__ import annotations

import inspect
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # the checkout's own package, whether or not it is installed
    sys.path.insert(0, str(ROOT))

PAGE = "reference/configuration.md"

_INTRO = """\
# Configuration reference

Every key of an audit config (`cvaudit run CONFIG`), generated from the config model
`audit.contract.config.AuditConfig` when this site is built, so it lists exactly what `cvaudit run`
accepts. An unknown key is an error that lists the keys valid at its level; paths are relative to the
config file. [Running an audit](../running.md) shows a whole config with every key and explains what
the keys do together; `cvaudit init` writes a minimal one.
"""


def _type_name(annotation: Any) -> str:
    """A short, readable spelling of a field's type (``int | null``, ``"a" | "b"``, ``list[str]``)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is type(None):
        return "null"
    if origin is typing.Literal:
        return " | ".join(f'"{a}"' if isinstance(a, str) else str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin in (list, tuple, dict, set):
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return f"list[{_type_name(args[0])}]"
        inner = ", ".join(_type_name(a) for a in args)
        name = "list" if origin in (list, tuple) else origin.__name__
        return f"{name}[{inner}]" if inner else name
    if inspect.isclass(annotation):
        if annotation is Path or issubclass(annotation, Path):
            return "path"
        if annotation.__module__.startswith("audit."):
            return "section"
        return annotation.__name__
    return re.sub(r"\b(typing|pathlib|annotated_types)\.", "", str(annotation))


def _default(field: Any) -> str:
    from pydantic_core import PydanticUndefined

    if field.is_required():
        return "required"
    if field.default_factory is not None:
        value = field.default_factory()
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    if hasattr(value, "model_dump"):
        return "see its section"
    if isinstance(value, tuple):
        value = list(value)
    if value is None:
        return "`null`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value}`"


def _constraints(field: Any) -> str:
    parts = []
    for item in field.metadata:
        for key, word in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"), ("min_length", "length >=")):
            value = getattr(item, key, None)
            if value is not None:
                parts.append(f"{word} {value}")
        pattern = getattr(item, "pattern", None)
        if pattern:
            parts.append(f"matches `{pattern}`")
    return "; ".join(parts)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _doc(model: type) -> str:
    doc = inspect.getdoc(model) if model.__doc__ else ""
    return re.sub(r":(?:meth|func|class|mod|attr):`~?([^`]+)`", r"`\1`", doc or "")


def _section(key: str, model: type, out: list[str], seen: set[type]) -> None:
    from pydantic import BaseModel

    nested: list[tuple[str, type]] = []
    out.append(f"## `{key}`" if key else "## Top level")
    out.append("")
    doc = _doc(model)
    if doc:
        out.append(doc)
        out.append("")
    if model.model_config.get("extra") == "allow":
        out.append("Keys other than those below are passed to the stressor as its options.")
        out.append("")
    out.append("| key | type | default | constraints and description |")
    out.append("|---|---|---|---|")
    for name, field in model.model_fields.items():
        annotation = field.annotation
        candidates = [annotation, *typing.get_args(annotation)]
        for candidate in candidates:
            inner = typing.get_args(candidate) if typing.get_origin(candidate) is list else ()
            for sub in (candidate, *inner):
                if inspect.isclass(sub) and issubclass(sub, BaseModel) and sub not in seen:
                    seen.add(sub)
                    nested.append((f"{key}.{name}" if key else name, sub))
        full = f"{key}.{name}" if key else name
        if typing.get_origin(annotation) is list and any(
            inspect.isclass(a) and issubclass(a, BaseModel) for a in typing.get_args(annotation)
        ):
            full = f"{full}[]"
        notes = "; ".join(p for p in (_constraints(field), field.description or "") if p)
        out.append(f"| `{full}` | {_cell(_type_name(annotation))} | {_cell(_default(field))} | {_cell(notes)} |")
    out.append("")
    for sub_key, sub_model in nested:
        _section(sub_key + ("[]" if _is_list_of(model, sub_key, sub_model) else ""), sub_model, out, seen)


def _is_list_of(parent: type, key: str, model: type) -> bool:
    name = key.rsplit(".", 1)[-1]
    annotation = parent.model_fields[name].annotation
    return typing.get_origin(annotation) is list and model in typing.get_args(annotation)


def render() -> str:
    """The configuration reference page (Markdown) for the config model of this checkout."""
    from audit.contract.config import AuditConfig

    out = [_INTRO]
    _section("", AuditConfig, out, {AuditConfig})
    return "\n".join(out).rstrip() + "\n"


def on_files(files: Any, config: Any) -> Any:
    """MkDocs event: add the generated configuration reference to the site's files."""
    from mkdocs.structure.files import File

    files.append(File.generated(config, PAGE, content=render()))
    return files
