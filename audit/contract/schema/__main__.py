"""``python -m audit.contract.schema [--check]``: write (or check) the shipped results.schema.json."""

from __future__ import annotations

import sys
from pathlib import Path

from audit.contract.schema import SCHEMA_FILE, schema_text

target = Path(__file__).with_name(SCHEMA_FILE)
if "--check" in sys.argv[1:]:
    ok = target.is_file() and target.read_text(encoding="utf-8") == schema_text()
    print(f"{target}: {'up to date' if ok else 'differs from the models; run python -m audit.contract.schema'}")
    sys.exit(0 if ok else 1)
target.write_text(schema_text(), encoding="utf-8")
print(f"wrote {target}")
