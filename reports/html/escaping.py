"""Users' strings in the HTML report: neutralised, escaped, and isolated when they run right to left.

Users' strings (class names, attribute values, sample ids, file names) are
neutralised for the medium before anything else (:func:`clean`): C0 and C1
control characters (tab and newline kept), bidirectional controls, lone
surrogates and noncharacters become visible escapes such as ``\\x1b``
(:func:`audit.contract.text.neutralise`), so the HTML is valid and nothing in
it can reorder or hide text. Every string is then escaped by Jinja2's
autoescaping. Right-to-left text is isolated: every ``{{ }}`` in element
content goes through the ``isolate`` filter (added by :class:`IsolateText` at
compile time, so templates need no change), which wraps a string holding
right-to-left characters in ``<bdi>``; in attribute values and ``<title>``
(where no element may go) the Unicode isolates U+2068/U+2069 do the same
(:func:`finalize`). Sentences built in Python mark the user values inside them
with :func:`user`, so that only they are isolated.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

import jinja2
import jinja2.ext
from jinja2.lexer import Token
from markupsafe import Markup, escape
from pydantic import BaseModel

from audit.contract.text import bidi_isolate, has_rtl, neutralise

__all__ = ["IsolateText", "clean", "finalize", "is_data_image", "isolate", "user"]

#: Marks a user value inside a sentence built here (private-use code points, never in the output).
_OPEN, _CLOSE = "\ue000", "\ue001"
_MARKED = re.compile(re.escape(str(escape(_OPEN))) + "(.*?)" + re.escape(str(escape(_CLOSE))), re.DOTALL)
_RAW_TEXT_ELEMENTS = ("title", "style", "script", "textarea")
_DATA_IMAGE = re.compile(r"^data:image/(png|jpeg|webp|gif);base64,[A-Za-z0-9+/=\s]+$")

T = TypeVar("T")
_SCALARS = (int, float, bool, type(None))


def is_data_image(value: Any) -> bool:
    """Whether ``value`` is an inline base64 image (``data:image/png|jpeg|webp|gif``), the only images shown."""
    return isinstance(value, str) and _DATA_IMAGE.match(value) is not None


def user(value: Any) -> str:
    """A user value inside a sentence: neutralised and marked, so that :func:`isolate` wraps it in ``<bdi>``."""
    text = neutralise(str(value), keep_newlines=True).replace(_OPEN, "\\ue000").replace(_CLOSE, "\\ue001")
    return f"{_OPEN}{text}{_CLOSE}"


def isolate(value: Any) -> Any:
    """The filter on every ``{{ }}`` in element content: escape, and isolate right-to-left text in ``<bdi>``.

    Markup (charts, pre-built HTML), numbers and undefined values pass
    unchanged. A string with marked user values (:func:`user`) gets each of
    them in its own ``<bdi>``; any other string holding right-to-left text is
    wrapped whole.
    """
    if isinstance(value, (Markup, jinja2.Undefined)) or value is None or isinstance(value, (int, float)):
        return value
    text = str(value)
    safe = str(escape(text))
    if _OPEN in text:
        return Markup(
            _MARKED.sub(lambda m: f"<bdi>{m.group(1)}</bdi>", safe)
            .replace(str(escape(_OPEN)), "")
            .replace(str(escape(_CLOSE)), "")
        )
    return Markup(f"<bdi>{safe}</bdi>") if has_rtl(text) else Markup(safe)


def finalize(value: Any) -> Any:
    """Every ``{{ }}`` outside element content (attribute values, ``<title>``): Unicode isolates, no tags."""
    if isinstance(value, Markup) or not isinstance(value, str):
        return value
    text = value.replace(_OPEN, "").replace(_CLOSE, "")
    return bidi_isolate(text)


def clean(value: T) -> T:
    """``value`` with every string in it (dict keys and model fields too) neutralised for HTML.

    Results models come back as models of the same type (built without validating
    again: only their strings change), so the report reads the same attributes. A
    part with nothing to neutralise is returned as it is (the same object).
    """
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is str:
        text = neutralise(value, keep_newlines=True)  # type: ignore[arg-type]
        return value if text == value else text  # type: ignore[return-value]
    if kind is list:
        items = [clean(v) for v in value]  # type: ignore[attr-defined]
        return value if all(a is b for a, b in zip(items, value)) else items  # type: ignore[return-value,arg-type]
    if kind is dict:
        pairs = [(clean(k), clean(v)) for k, v in value.items()]  # type: ignore[attr-defined]
        same = all(k is k0 and v is v0 for (k, v), (k0, v0) in zip(pairs, value.items()))  # type: ignore[attr-defined]
        return value if same else dict(pairs)  # type: ignore[return-value]
    if isinstance(value, BaseModel):
        fields = {name: getattr(value, name) for name in type(value).model_fields}
        cleaned = {name: clean(v) for name, v in fields.items()}
        if all(cleaned[name] is v for name, v in fields.items()):
            return value
        return type(value).model_construct(_fields_set=set(value.model_fields_set), **cleaned)
    return value


class IsolateText(jinja2.ext.Extension):
    """Adds ``| isolate`` to every ``{{ }}`` that stands in element content (not in a tag, not in ``<title>``).

    The context is read from the template text before each expression: inside
    ``<...>`` (an attribute value) or inside a raw-text element the expression
    is left to ``finalize``; elsewhere it becomes ``{{ (expr) | isolate }}``.
    """

    def filter_stream(self, stream):
        state = _HtmlState()
        for token in stream:
            if token.type == "data":
                state.feed(token.value)
                yield token
            elif token.type == "variable_begin" and state.in_content:
                yield token
                yield Token(token.lineno, "lparen", "(")
                for inner in stream:
                    if inner.type == "variable_end":
                        yield Token(inner.lineno, "rparen", ")")
                        yield Token(inner.lineno, "pipe", "|")
                        yield Token(inner.lineno, "name", "isolate")
                        yield inner
                        break
                    yield inner
            else:
                yield token


class _HtmlState:
    """Just enough of an HTML tokenizer to tell element content from tags and raw-text elements."""

    def __init__(self) -> None:
        self.in_tag = False
        self.tag = ""
        self.raw: str | None = None

    @property
    def in_content(self) -> bool:
        return not self.in_tag and self.raw is None

    def feed(self, text: str) -> None:
        i = 0
        while i < len(text):
            if self.raw is not None:
                end = text.lower().find(f"</{self.raw}", i)
                if end < 0:
                    return
                self.raw, self.in_tag, self.tag, i = None, True, "/", end + 2
            elif self.in_tag:
                end = text.find(">", i)
                if end < 0:
                    return
                self.in_tag, i = False, end + 1
                if self.tag in _RAW_TEXT_ELEMENTS:
                    self.raw = self.tag
            else:
                start = text.find("<", i)
                if start < 0:
                    return
                name = re.match(r"<([A-Za-z][A-Za-z0-9-]*)", text[start:])
                self.in_tag, self.tag, i = True, name.group(1).lower() if name else "", start + 1
