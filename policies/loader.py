"""Read policy files: built-in names or YAML paths.

Every problem becomes a one-line :class:`~policies.errors.PolicyError` that
names the file, the rule id (when inside a rule) and the key.
"""

from __future__ import annotations

import hashlib
import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from audit.contract.errors import CvauditError, echo
from audit.contract.files import check_path_name
from audit.contract.keys import unknown_key_message
from audit.contract.yaml_loader import load_yaml, read_yaml_file
from policies.errors import PolicyError
from policies.schema import FindingRule, MetricRule, Policy

_RULE_TAGS = {"metric", "finding"}


def available_policies() -> list[str]:
    """Names of the built-in policies, sorted.

    Returns:
        e.g. ``["ci-gate", "demo", "high-risk"]``.
    """
    folder = resources.files("policies").joinpath("builtin")
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def builtin_policy_text(name: str) -> bytes:
    """The bytes of a built-in policy file.

    Raises:
        PolicyError: ``name`` is not a built-in policy.
    """
    if name not in available_policies():
        raise PolicyError(
            f"unknown built-in policy; choose one of {', '.join(available_policies())}",
            file=f"builtin:{name}",
        )
    return resources.files("policies").joinpath("builtin").joinpath(f"{name}.yaml").read_bytes()


def read_policy_file(path: Path, *, source: str) -> bytes:
    """The bytes of a policy file, read with the bound :data:`~audit.contract.yaml_loader.MAX_BYTES`.

    Raises:
        PolicyError: missing, unreadable, not a regular file (folder, device, FIFO, socket) or
            over the limit; one line naming the file (``source``).
    """
    try:
        return read_yaml_file(path, what="policy file", error=CvauditError)
    except CvauditError as exc:  # read_bounded's line starts with the path; PolicyError puts `source` first
        raise PolicyError(str(exc).removeprefix(f"{path}: "), file=source) from None


def load_policy(name_or_path: str | Path) -> Policy:
    """Load a built-in policy by name, or a policy YAML file by path.

    A string that names an existing file (or anything else there that is not a
    built-in name, which is then refused), or ends in ``.yaml``/``.yml``, is a path; otherwise it must be a
    built-in name (see :func:`available_policies`). A file is opened once, checked
    on its descriptor and read with the bound
    :data:`audit.contract.yaml_loader.MAX_BYTES`: a larger file, a folder, a
    device such as ``/dev/zero``, a FIFO or a socket is refused before a byte is read.

    Args:
        name_or_path: ``"ci-gate"``, ``"high-risk"``, ``"demo"`` or a path.

    Returns:
        The validated policy; ``policy.sha256`` is the digest of the file bytes.

    Raises:
        PolicyError: missing, unreadable, not a regular file, over ``MAX_BYTES``, malformed YAML
            or an invalid policy.
    """
    text = str(name_or_path)
    path = check_path_name(text, what="policy file", error=PolicyError)
    named = path.is_file() or (os.path.lexists(path) and text not in available_policies())
    if isinstance(name_or_path, Path) or named or path.suffix in (".yaml", ".yml"):
        return parse_policy(read_policy_file(path, source=text), source=text)
    if text in available_policies():
        return parse_policy(builtin_policy_text(text), source=f"builtin:{text}")
    raise PolicyError(
        f"not a policy file and not a built-in policy ({', '.join(available_policies())})",
        file=text,
    )


def parse_policy(data: bytes | str, *, source: str = "<policy>") -> Policy:
    """Parse and validate policy YAML.

    Args:
        data: The file contents.
        source: Name used in error messages and kept as ``policy.source``.

    Raises:
        YamlError: not acceptable YAML (size, alias expansion, syntax).
        PolicyError: an invalid policy.
    """
    raw = data.encode("utf-8") if isinstance(data, str) else data
    document = load_yaml(raw, source=source)
    if not isinstance(document, dict):
        raise PolicyError("expected a mapping with 'version', 'name' and 'rules'", file=source)
    policy = policy_from_dict(document, source=source)
    policy._sha256 = hashlib.sha256(raw).hexdigest()
    return policy


def policy_from_dict(document: dict[str, Any], *, source: str = "<policy>") -> Policy:
    """Validate an already-parsed policy mapping.

    ``policy.sha256`` is the digest of the canonical JSON of ``document``
    (:func:`parse_policy` replaces it with the digest of the file bytes).

    Raises:
        PolicyError: the first validation problem, in one line.
    """
    try:
        policy = Policy.model_validate(document)
    except ValidationError as exc:
        raise _to_policy_error(exc, document, source) from None
    policy._source = source
    canonical = json.dumps(document, sort_keys=True, default=str).encode("utf-8")
    policy._sha256 = hashlib.sha256(canonical).hexdigest()
    return policy


def _to_policy_error(exc: ValidationError, document: dict[str, Any], source: str) -> PolicyError:
    error = exc.errors()[0]
    loc = list(error["loc"])
    ctx = error.get("ctx") or {}
    rule_id = None
    model: type[BaseModel] = Policy
    if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
        rules = document.get("rules") or []
        raw_rule = rules[loc[1]] if loc[1] < len(rules) else None
        rule_id = str(raw_rule.get("id")) if isinstance(raw_rule, dict) and "id" in raw_rule else f"#{loc[1] + 1}"
        loc = loc[2:]
        if loc and loc[0] in _RULE_TAGS:
            model = FindingRule if loc[0] == "finding" else MetricRule
            loc = loc[1:]
        else:
            model = MetricRule
    rule_id = ctx.get("rule_id", rule_id)
    if error["type"] == "policy_key":
        loc.append(ctx["key"])
        problem = ctx["message"]
    elif error["type"] == "extra_forbidden":
        problem = unknown_key_message(model, loc)
    elif error["type"] in ("union_tag_invalid", "union_tag_not_found"):
        loc.append("kind")
        problem = "expected 'metric' or 'finding'"
    elif error["type"] == "missing":
        problem = "required key is missing"
    else:
        problem = f"{error['msg']}, got {echo(error.get('input'))}" if "input" in error else error["msg"]
        if error["type"] == "not_a_number":
            problem = error["msg"]
    key = ".".join(str(part) for part in loc) or None
    return PolicyError(problem, file=source, rule_id=rule_id, key=key)
