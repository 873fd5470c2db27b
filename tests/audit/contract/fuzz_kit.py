"""Shared pieces of the loaders' property-based fuzzing (the ``test_fuzz_*`` modules).

The contract every fuzz test checks with :func:`check`: an input either loads or raises cvaudit's
own :class:`CvauditError` whose message is one line of at most ``MAX_MESSAGE`` characters; any other exception is a
bug and fails the test. The reader must also stay within a CPU-time budget (the CPU time of the
calling thread, :func:`time.thread_time`, which a loaded machine does not inflate the way it
inflates wall-clock time; the bound is wide, it catches a loader that works for ever, not a slow
one) and a memory budget (peak Python allocations, :mod:`tracemalloc`).

Profiles: ``CVAUDIT_FUZZ=smoke`` (a handful of examples a test), ``ci`` (the default, what
``make test`` runs), ``long`` (``make fuzz``), or a number (``CVAUDIT_FUZZ=3000``: the examples of a
test whose share is 1). No example database is written.
"""

from __future__ import annotations

import json
import os
import re
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import yaml
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from audit.contract.errors import MAX_MESSAGE, CvauditError

PROFILES = {"smoke": 30, "ci": 600, "long": 20_000}
PROFILE = os.environ.get("CVAUDIT_FUZZ", "ci")
EXAMPLES = PROFILES[PROFILE] if PROFILE in PROFILES else int(PROFILE)  # or a number of examples

# Thread CPU seconds one call may use. Wide on purpose: tracemalloc slows pure-Python parsing
# several times over, and a busy machine (shared caches, frequency scaling) slows CPU time a little
# too. What it must catch is an input that makes a loader loop or go quadratic (seconds per KB).
CPU_SECONDS = 60.0
MEGABYTES = 64.0


def fuzz_settings(share: float = 1.0) -> settings:
    """Hypothesis settings for one test: ``share`` of the profile's examples (at least 10)."""
    return settings(
        max_examples=max(10, int(EXAMPLES * share)),
        deadline=None,  # no wall-clock limit: check() bounds CPU time instead
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.function_scoped_fixture,
            HealthCheck.filter_too_much,
        ],
    )


@dataclass(frozen=True)
class KnownCrash:
    """A crash fuzzing found in a reader that another change is fixing (issue 31).

    A property test passes ``known=`` to :func:`check` so that this one crash does not hide every
    other finding on the same inputs; each known crash is ALSO pinned by a regression test marked
    ``xfail(strict=True)`` on its minimal input, which turns red (XPASS) the day the fix merges:
    then delete the entry and the xfail mark.
    """

    reader: str
    minimal: str
    exception: type[BaseException]
    pattern: str  # re.search on str(exception)

    def matches(self, err: BaseException) -> bool:
        return isinstance(err, self.exception) and re.search(self.pattern, str(err)) is not None


def check_message(err: CvauditError) -> str:
    """The error's message, asserted to be one line of at most MAX_MESSAGE characters.

    A lone surrogate in a message (a file name from a non-UTF-8 command line) is allowed: the CLI
    escapes what it prints (audit/cli/boundary.py).
    """
    message = str(err)
    assert message, f"{type(err).__name__} with an empty message"
    assert "\n" not in message and "\r" not in message, f"multi-line message: {message!r}"
    assert len(message) <= MAX_MESSAGE, f"message of {len(message)} characters"
    return message


def check(call: Callable[[], Any], known: Sequence[KnownCrash] = ()) -> Any:
    """``call()`` loads (returned) or raises a well-formed CvauditError (None), within the bounds.

    Any other exception propagates (the test fails) unless it matches one of ``known``.
    """
    tracemalloc.start()
    started = time.thread_time()
    result = None
    try:
        try:
            result = call()
        except CvauditError as err:
            check_message(err)
    except Exception as err:
        if not any(k.matches(err) for k in known):
            raise
    finally:
        used = time.thread_time() - started
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert used < CPU_SECONDS, f"used {used:.2f} thread CPU seconds"
    assert peak < MEGABYTES * 1e6, f"peak {peak / 1e6:.1f} MB"
    return result


# --- hostile values ------------------------------------------------------------------------------

HOSTILE_TEXT = [
    "",
    "\ud800",  # lone high surrogate
    "a\udfffb",  # lone low surrogate
    '=HYPERLINK("http://x","y")',
    "+cmd|' /C calc'!A0",
    "-1+1",
    "@SUM(A1)",
    "\t=1",
    "\r=1",
    "\x1b[31mred\x1b[0m",
    "\x07bell",
    "\u202eevil",
    "a\x00b",
    "line\nbreak",
    "\ufeffbom",
    "</script><script>alert(1)</script>",
    "~nobody-here/x",
    "../../etc/passwd",
    "nan",
    "-inf",
    "1" * 5000,
    "x" * 70_000,  # a very long value
    "é" * 10,
]
HUGE_INTEGERS = [10**30, -(10**30), 2**63, 2**64 + 1, 10**4000]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from(HUGE_INTEGERS),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(HOSTILE_TEXT),
)

# Byte fragments spliced into valid files: raw (invalid UTF-8) surrogates, JSON-escaped ones,
# control characters, formula starts, BOMs, NULs, huge digit runs, deep nesting, long lines.
HOSTILE_BYTES = [
    b"\xed\xa0\x80",  # UTF-8 encoding of U+D800, which strict decoders refuse
    b"\\ud800",  # the JSON escape of a lone surrogate (valid JSON, invalid Unicode)
    b'"\\udc00"',
    b"\xef\xbb\xbf",  # UTF-8 BOM
    b"\xff\xfe",  # UTF-16 BOM
    b"\x00",
    b"\x1b[2J",
    b"\x07",
    b"\xe2\x80\xae",  # RLO
    b"\r",
    b"=cmd|' /C calc'!A0",
    b"+1+1",
    b"@SUM(1)",
    b"1" * 5000,
    b"9" * 20_000,
    b"[" * 200,
    b"{" * 200,
    b"a" * 200_000,  # a very long line
    b"\xc3",  # a truncated multi-byte sequence
]


def documents(keys: list[str], max_leaves: int = 30) -> st.SearchStrategy:
    """Nested data whose mapping keys come mostly from ``keys``."""
    key = st.one_of(st.sampled_from(keys), st.text(max_size=8), st.sampled_from(["\ud800", "a\x00", "=1"]))
    return st.recursive(
        SCALARS,
        lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(key, inner, max_size=6)),
        max_leaves=max_leaves,
    )


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path (tuple of keys / indexes) to a value in nested dicts and lists, the root included."""
    found = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            found += _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += _paths(v, prefix + (i,))
    return found


def _replaced(value: Any, path: tuple, new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replaced(value[head], rest, new)}
    copy = list(value)
    copy[head] = _replaced(copy[head], rest, new)
    return copy


def substituted(valid: Any, keys: list[str]) -> st.SearchStrategy:
    """``valid`` (parsed data) with one to three values replaced by hostile or random ones.

    Validation, not only parsing, meets the hostile values this way: the rest of the document stays
    valid, so the reader gets as far as the replaced value.
    """
    paths = _paths(valid)
    replacement = st.one_of(SCALARS, documents(keys, max_leaves=8), st.sampled_from(HOSTILE_TEXT))

    @st.composite
    def build(draw):
        value = valid
        for _ in range(draw(st.integers(1, 3))):
            path = draw(st.sampled_from(paths))
            try:
                value = _replaced(value, path, draw(replacement))
            except (KeyError, IndexError, TypeError):  # an earlier replacement removed the path
                pass
        return value

    return build()


def mutations(valid: bytes) -> st.SearchStrategy:
    """``valid`` with a few bytes replaced, inserted or deleted, or a hostile fragment spliced in."""

    @st.composite
    def mutate(draw):
        data = bytearray(valid)
        for _ in range(draw(st.integers(1, 6))):
            pos = draw(st.integers(0, max(len(data) - 1, 0)))
            op = draw(st.sampled_from(["set", "insert", "delete", "splice"]))
            byte = draw(st.integers(0, 255))
            if op == "set" and data:
                data[pos] = byte
            elif op == "insert":
                data[pos:pos] = bytes([byte]) * draw(st.integers(1, 4))
            elif op == "splice":
                data[pos:pos] = draw(st.sampled_from(HOSTILE_BYTES))
            elif data:
                del data[pos : pos + draw(st.integers(1, 8))]
        return bytes(data)

    return mutate()


def duplicate_keys(valid_json: bytes) -> st.SearchStrategy:
    """A JSON object text that names one of its keys twice (the second value hostile)."""
    document = json.loads(valid_json)
    keys = sorted(document) if isinstance(document, dict) and document else ["a"]

    @st.composite
    def build(draw):
        key = draw(st.sampled_from(keys))
        value = draw(st.one_of(SCALARS, st.sampled_from(HOSTILE_TEXT)))
        extra = json.dumps(key) + ": " + json.dumps(value) + ", "
        first = valid_json.index(b"{") + 1
        return valid_json[:first] + extra.encode() + valid_json[first:]

    return build()


def as_yaml(value: Any) -> bytes:
    """``value`` written as YAML, lone surrogates kept as the raw bytes a careless writer produces."""
    return yaml.safe_dump(value, allow_unicode=True).encode("utf-8", "surrogatepass")


def as_json(value: Any) -> bytes:
    """``value`` as JSON text (lone surrogates written as ``\\udXXX`` escapes)."""
    return json.dumps(value).encode()


def adversarial() -> st.SearchStrategy:
    """Whole-file shapes that found bugs before: nesting, digits, alias bombs, BOMs, NULs."""
    depth = st.integers(50, 300)  # past every depth limit (64); deeper only costs time
    return st.one_of(
        depth.map(lambda n: ("[" * n + "]" * n).encode()),
        depth.map(lambda n: ("{a: " * n + "1" + "}" * n).encode()),
        depth.map(lambda n: ('{"a": ' * n + "1" + "}" * n).encode()),
        st.integers(4300, 20_000).map(lambda n: ("1" * n).encode()),
        st.just(b"a: &a [x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n"),
        st.just(b"\xff\xfe\x00garbage"),
        st.just(b"\xef\xbb\xbf{}"),
        st.just(b"!!python/object/apply:os.system [echo hi]"),
        st.just(b"---\na: 1\n---\nb: 2\n"),
        st.just(b"a: 1\na: 2\n"),
        st.just(b'{"a": 1, "a": 2}'),
        st.just(b'"\\ud800"'),
        st.just(b"\xed\xa0\x80"),
        st.just(b"\x00" * 64),
        st.just(b"x" * 2_000_000),  # one 2 MB line
    )


def inputs(keys: list[str], valid: bytes, parsed: Any = None) -> st.SearchStrategy:
    """Random bytes, random documents (YAML and JSON), mutations and substitutions of ``valid``."""
    parts = [
        st.binary(max_size=300),
        documents(keys).map(as_yaml),
        documents(keys).map(as_json),
        mutations(valid),
        adversarial(),
        st.just(valid + valid),  # every key twice (YAML) / two documents (JSON)
        st.just(b"\xef\xbb\xbf" + valid),
    ]
    if parsed is not None:
        parts.append(substituted(parsed, keys).map(as_yaml))
        parts.append(substituted(parsed, keys).map(as_json))
    return st.one_of(*parts)
