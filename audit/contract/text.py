"""Neutralising users' strings for the terminal and other plain-text media.

Class names, attribute values, sample ids and file names come from users'
data. Printed raw they can move the cursor, retitle the terminal (OSC
sequences) or reorder text (bidirectional overrides). :func:`neutralise`
replaces every such character by a visible escape, so the text reads the same
and cannot act.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = [
    "BIDI_CONTROLS",
    "FORMULA_GUARDED",
    "bidi_isolate",
    "has_rtl",
    "markdown_text",
    "neutralise",
    "spreadsheet_safe",
    "valid_text",
    "xml_text",
]

#: Unicode bidirectional embedding, override and isolate controls (and the marks).
BIDI_CONTROLS = "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"

#: Code points no text medium may carry: lone surrogates (unencodable) and Unicode noncharacters.
_INVALID = "\ud800-\udfff\ufdd0-\ufdef\ufffe\uffff"

_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f" + BIDI_CONTROLS + _INVALID + "]")
_CONTROL_WITH_NEWLINES = re.compile("[\x00-\x1f\x7f-\x9f" + BIDI_CONTROLS + _INVALID + "]")
#: Text a spreadsheet would run as a formula once its leading apostrophes are gone (:func:`spreadsheet_safe`).
FORMULA_GUARDED = re.compile("'*[=+\\-@\t\r]")
_PLAIN_NUMBER = re.compile(r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
#: What UTF-8 cannot encode: the surrogate code points (a lone surrogate from a JSON ``"\\ud800"`` escape, or a
#: byte of a non-UTF-8 file name that Python decoded with ``surrogateescape``).
_UNENCODABLE = re.compile("[\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def neutralise(text: str, *, keep_newlines: bool = False) -> str:
    """Replace C0/C1 control characters (tab kept), bidi controls, lone surrogates and noncharacters by visible escapes.

    Args:
        text: any string.
        keep_newlines: keep ``\\n`` (multi-line output); otherwise it becomes ``\\x0a``.

    >>> neutralise("a\\x1b]0;owned\\x07b")
    'a\\\\x1b]0;owned\\\\x07b'
    """
    pattern = _CONTROL if keep_newlines else _CONTROL_WITH_NEWLINES
    return pattern.sub(_escape, text.replace("\t", " ") if not keep_newlines else text)


def valid_text(text: str) -> str:
    """``text`` as valid Unicode that every writer can encode as UTF-8: each surrogate code point becomes
    its visible escape (``\\ud800`` as six characters); everything else is kept.

    The one normalisation every reader of users' strings applies (manifest values, sample ids, file
    names as text, class names), so no writer, terminal or hash fails on them later. Paths used to
    open files are kept as they are; only their text in tables and outputs goes through this.

    >>> valid_text("cam\\ud800era") == "cam\\\\ud800era", valid_text("caf\\u00e9")
    (True, 'café')
    """
    return _UNENCODABLE.sub(_escape, text) if _UNENCODABLE.search(text) else text


def spreadsheet_safe(value: object) -> str:
    """A CSV cell that a spreadsheet shows as text and never runs: the guard of every CSV cvaudit writes.

    Control characters are escaped first (:func:`neutralise`, newlines and tabs
    kept), then a cell starting with ``=``, ``+``, ``-``, ``@`` or a tab
    (after any apostrophes) gets one leading apostrophe (OWASP "CSV
    injection"); a carriage return is escaped, so no cell starts with one.
    Numbers, and text that is a plain decimal number (``-0.5``, ``-1e-05``),
    are left alone: a spreadsheet reads them as numbers. The apostrophe is
    the only change a reader must undo (:func:`audit.contract.csvfile.unguard`);
    a cell that already starts with apostrophes before a formula character
    gets one more, so the guard is exactly invertible.

    >>> spreadsheet_safe("=SUM(A1:A9)")
    "'=SUM(A1:A9)"
    >>> spreadsheet_safe(-0.5), spreadsheet_safe("-0.5"), spreadsheet_safe("'=x")
    ('-0.5', '-0.5', "''=x")
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    text = neutralise("" if value is None else str(value), keep_newlines=True)
    if FORMULA_GUARDED.match(text) and not _PLAIN_NUMBER.fullmatch(text):
        text = "'" + text
    return text


_RTL_CLASSES = frozenset({"R", "AL", "AN"})


def has_rtl(text: str) -> bool:
    """Whether ``text`` holds a right-to-left letter or an Arabic digit (which can reorder its neighbours)."""
    return any(unicodedata.bidirectional(ch) in _RTL_CLASSES for ch in text if ord(ch) >= 0x0590)


def bidi_isolate(text: str) -> str:
    """``text`` between FIRST STRONG ISOLATE and POP DIRECTIONAL ISOLATE when it holds right-to-left text,
    for plain text (attribute values, SVG titles) where ``<bdi>`` cannot stand.

    >>> bidi_isolate("camera A") == "camera A", bidi_isolate("\u05e9\u05dc") == "\u2068\u05e9\u05dc\u2069"
    (True, True)
    """
    return f"\u2068{text}\u2069" if has_rtl(text) else text


def xml_text(text: object) -> str:
    """Text every XML 1.0 parser accepts, as element content or an attribute value: the one XML text
    escaper of cvaudit (``labeling_config.xml``, ``junit.xml``, the PDF's XMP packet).

    The characters XML 1.0 forbids (C0 controls other than tab and newline, carriage return included so
    that it survives parsing; lone surrogates; U+FFFE/U+FFFF) and those that act on a reader (C1 and
    bidirectional controls, noncharacters) become visible escapes (:func:`neutralise`, tab and newline
    kept). Markup characters (``& < > "``) are left to the serialiser (ElementTree, ``quoteattr``).

    >>> xml_text("cat\\x1b[31m\\x07\\u202e")
    'cat\\\\x1b[31m\\\\x07\\\\u202e'
    """
    return neutralise(str(text), keep_newlines=True)


_MARKDOWN_ACTIVE = re.compile(r"([\\`*_\[\]<>|#&])")


def markdown_text(text: object) -> str:
    """One line of user text, inert in Markdown prose and table cells: the one Markdown escaper of cvaudit
    (model cards, ``policy check --markdown``).

    Control, bidirectional and invalid characters become visible escapes (:func:`neutralise`), whitespace
    runs (newlines included) one space, and the characters Markdown acts on (``\\ ` * _ [ ] < > | # &``:
    emphasis, links, raw HTML such as ``</script>``, table cells, headings, character references that
    would bring a control character back) are backslash-escaped.

    >>> markdown_text("a|b\\n<script>\\x1b")
    'a\\\\|b \\\\<script\\\\>\\\\\\\\x1b'
    """
    flat = " ".join(neutralise(str(text), keep_newlines=True).split())
    return _MARKDOWN_ACTIVE.sub(r"\\\1", flat)
