"""``python -m audit.contract.schema [--check]``: write (or check) the shipped results.schema.json."""

from __future__ import annotations

import sys
from pathlib import Path

from audit.contract.schema import SCHEMA_FILE, schema_text


def main(argv: list[str]) -> int:
    target = Path(__file__).with_name(SCHEMA_FILE)
    if "--check" in argv:
        ok = target.is_file() and target.read_text(encoding="utf-8") == schema_text()
        print(
            f"{SCHEMA_FILE}: {'up to date' if ok else 'differs from the models; run python -m audit.contract.schema'}"
        )
        return 0 if ok else 1
    target.write_text(schema_text(), encoding="utf-8")
    print(f"wrote {SCHEMA_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
