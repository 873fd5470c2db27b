"""The one YAML loader for config and policy files, with limits a hostile file cannot pass.

PyYAML's ``safe_load`` builds no objects beyond plain data, but it still lets a
few hundred bytes of nested aliases ("billion laughs") stand for billions of
values, which later code (validation, error messages) then walks. This loader
refuses, before anything is built:

- files larger than :data:`MAX_BYTES`: :func:`read_yaml_file` refuses them from the
  open descriptor's size before reading a byte (and refuses folders, devices such
  as ``/dev/zero``, FIFOs and sockets), through :func:`audit.contract.files.read_bounded`;
- documents whose nodes, with every alias expanded, exceed :data:`MAX_NODES`,
  or whose text (scalar characters), with every alias expanded, exceeds
  :data:`MAX_CHARS` (a long string repeated through aliases);
- collections nested deeper than :data:`MAX_DEPTH` (PyYAML parses recursively);
- more than one document in a file (and, like ``safe_load``, any Python object tag).
"""

from __future__ import annotations

from os import PathLike
from typing import Any

import yaml

from audit.contract.errors import CvauditError
from audit.contract.files import read_bounded
from audit.contract.text import valid_text

__all__ = ["MAX_BYTES", "MAX_CHARS", "MAX_DEPTH", "MAX_NODES", "YamlError", "load_yaml", "read_yaml_file"]

#: Largest config or policy file read (bytes).
MAX_BYTES = 1 << 20
#: Most YAML nodes a document may hold once aliases are expanded.
MAX_NODES = 100_000
#: Most characters of scalar text a document may hold once aliases are expanded.
MAX_CHARS = 4 * MAX_BYTES
#: Deepest nesting of collections (a config or policy needs fewer than ten levels).
MAX_DEPTH = 64

_OPEN = (
    yaml.FlowSequenceStartToken,
    yaml.FlowMappingStartToken,
    yaml.BlockSequenceStartToken,
    yaml.BlockMappingStartToken,
)
_CLOSE = (yaml.FlowSequenceEndToken, yaml.FlowMappingEndToken, yaml.BlockEndToken)


def _check_depth(text: str, source: str) -> None:
    """Refuse nesting deeper than :data:`MAX_DEPTH`, from the scanner's tokens (no recursion)."""
    depth = 0
    for token in yaml.scan(text, Loader=yaml.SafeLoader):
        if isinstance(token, _OPEN):
            depth += 1
            if depth > MAX_DEPTH:
                line = token.start_mark.line + 1
                raise YamlError(f"{source}: collections nested deeper than {MAX_DEPTH} levels at line {line}")
        elif isinstance(token, _CLOSE):
            depth -= 1


class YamlError(CvauditError):
    """A config or policy file is not acceptable YAML; one line naming the file."""


def _expanded_size(root: yaml.Node, limit: int, char_limit: int = MAX_CHARS) -> tuple[int, int]:
    """Nodes and scalar characters with every alias expanded (each stops counting past its limit)."""
    sizes: dict[int, tuple[int, int]] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        if id(node) in sizes:
            continue
        if isinstance(node, yaml.ScalarNode):
            sizes[id(node)] = (1, min(char_limit + 1, len(node.value)))
            continue
        children = (
            [item for pair in node.value for item in pair] if isinstance(node, yaml.MappingNode) else list(node.value)
        )
        if done:
            nodes = 1 + sum(sizes.get(id(c), (0, 0))[0] for c in children)
            chars = sum(sizes.get(id(c), (0, 0))[1] for c in children)
            sizes[id(node)] = (min(limit + 1, nodes), min(char_limit + 1, chars))
            continue
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in sizes)
    return sizes[id(root)]


def read_yaml_file(path: str | PathLike[str], *, what: str, error: type[CvauditError] | None = None) -> bytes:
    """The bytes of a config or policy file, read with the bound :data:`MAX_BYTES`.

    Opened once and checked on the descriptor (:func:`audit.contract.files.read_bounded`): a file
    over ``MAX_BYTES``, a folder, a character device, a FIFO or a socket is refused before a byte is
    read, so memory never depends on the file.

    Args:
        path: the file a user named.
        what: what it is, for messages ("config file", "policy file").
        error: the error class to raise (default :class:`YamlError`).

    Raises:
        error: missing, unreadable, not a regular file, or larger than ``MAX_BYTES``; one line
            naming the file (and the limit).
    """
    return read_bounded(path, limit=MAX_BYTES, what=what, error=error or YamlError)


def _valid_strings(value: Any) -> Any:
    """``value`` with every string (keys too) through :func:`audit.contract.text.valid_text`."""
    if isinstance(value, str):
        return valid_text(value)
    if isinstance(value, dict):
        return {_valid_strings(k): _valid_strings(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_valid_strings(v) for v in value]
    return value


def load_yaml(data: bytes | str, *, source: str) -> Any:
    """Parse one YAML document with the limits of the module docstring.

    Args:
        data: the file's contents.
        source: the file name, for messages.

    Returns:
        The plain data (dicts, lists, strings, numbers, booleans, None).

    Raises:
        YamlError: too large, not UTF-8, nested too deeply, too many nodes or characters after alias expansion,
            several documents, or malformed YAML (with the line and column).
    """
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if len(raw) > MAX_BYTES:
        raise YamlError(f"{source}: file is {len(raw)} bytes; at most {MAX_BYTES} are read")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise YamlError(f"{source}: not UTF-8 text") from None
    loader = None
    try:
        loader = yaml.SafeLoader(text)  # the reader refuses control characters here already
        _check_depth(text, source)
        node = loader.get_single_node()  # a second document is a ComposerError
        if node is None:
            return None
        nodes, chars = _expanded_size(node, MAX_NODES)
        if nodes > MAX_NODES:
            raise YamlError(f"{source}: more than {MAX_NODES} values once YAML aliases are expanded (an alias bomb?)")
        if chars > MAX_CHARS:
            raise YamlError(
                f"{source}: more than {MAX_CHARS} characters of text once YAML aliases are expanded (an alias bomb?)"
            )
        try:
            document = loader.construct_document(node)
        except ValueError as exc:  # int() of a scalar: Python's limit on the digits of an integer
            mark = getattr(node, "start_mark", None)
            where = f" at line {mark.line + 1}" if mark else ""
            raise YamlError(f"{source}: a value cannot be read{where}: {str(exc)[:120]}") from None
        # a "\ud800" escape is the only way a YAML file holds a lone surrogate: made a visible escape here,
        # once, so that no writer of a class name, attribute or rule name can fail on it later
        return _valid_strings(document) if "\\" in text else document
    except RecursionError:  # a safety net behind _check_depth
        raise YamlError(f"{source}: collections nested too deeply") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = " ".join(str(getattr(exc, "problem", None) or "cannot parse").split())[:120]
        raise YamlError(f"{source}: malformed YAML{where}: {problem}") from None
    finally:
        if loader is not None:
            loader.dispose()
