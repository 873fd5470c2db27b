"""The JSON Schema (Draft 2020-12) of results.json, generated from :mod:`audit.contract.results`.

Regenerate after changing a model: ``python -m audit.contract.schema``. A
test fails when the shipped file and the models differ.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from audit.contract.results import SCHEMA_VERSION, Results

__all__ = ["SCHEMA_FILE", "generate_schema", "schema_text", "shipped_schema"]

SCHEMA_FILE = "results.schema.json"


def generate_schema() -> dict[str, Any]:
    """The JSON Schema of :class:`~audit.contract.results.Results`, with its dialect and version."""
    body = Results.model_json_schema(mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"urn:cvaudit:results:{SCHEMA_VERSION}",
        "x-schema-version": SCHEMA_VERSION,
        **body,
    }


def schema_text() -> str:
    """The schema as the shipped file holds it (sorted keys, two-space indent, final newline)."""
    return json.dumps(generate_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


@cache
def shipped_schema() -> dict[str, Any]:
    """The schema file shipped with the package."""
    return json.loads(resources.files(__name__).joinpath(SCHEMA_FILE).read_text(encoding="utf-8"))
