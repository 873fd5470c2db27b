"""End to end: lone surrogates from the user's data (a JSONL ``"\\ud800"`` escape in an attribute value and a
sample id, a class name in the config) are read as visible escapes; the run writes every output (issue 31, point 4)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

from cvaudit_fixtures import write_config

REPO = Path(__file__).resolve().parents[1]
ESCAPE = "\\ud800"  # the six characters the README promises in place of the lone surrogate


def _jsonl_workspace(root: Path) -> Path:
    """The fixture's dataset as a JSONL manifest whose first sample id and first camera hold JSON ``\\ud800``."""
    with open(root / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    lines = []
    for i, row in enumerate(rows):
        row["label"] = int(row["label"])
        text = json.dumps(row)
        if i == 0:
            text = text.replace('"s000"', '"s\\ud800"').replace('"camera": "B"', '"camera": "B\\ud800"')
        lines.append(text)
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n", encoding="ascii")
    assert "\\ud800" in (root / "manifest.jsonl").read_text()
    cfg = write_config(root, stressors="  - {name: night, severities: [5]}\n")
    text = cfg.read_text().replace("manifest: manifest.csv", "manifest: manifest.jsonl")
    text = text.replace("class_names: [red, green, blue]", 'class_names: ["red\\ud800", green, blue]')
    cfg.write_text(text)
    return cfg


def test_lone_surrogates_are_visible_escapes_in_every_output(workspace):
    cfg = _jsonl_workspace(workspace)
    out = workspace / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "audit", "run", str(cfg), "--out", str(out), "--quiet"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode in (0, 1), result.stdout + result.stderr
    assert "internal error" not in result.stdout + result.stderr

    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert results["model"]["class_names"] == ["red" + ESCAPE, "green", "blue"]
    with open(out / "predictions.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert {(r["sample_id"], r["camera"]) for r in rows if r["sample_id"].startswith("s" + ESCAPE)} == {
        ("s" + ESCAPE, "B" + ESCAPE)
    }
    with open(out / "groups.csv", newline="", encoding="utf-8") as fh:
        assert "B" + ESCAPE in {r["value"] for r in csv.DictReader(fh)}

    written = [p for p in out.rglob("*") if p.is_file()]
    assert any(p.name == "report.html" for p in written)
    for path in written:
        data = path.read_bytes()
        data.decode("utf-8")  # every output is valid UTF-8 ...
        assert "\ud800".encode("utf-8", "surrogatepass") not in data  # ... with no encoded surrogate in it
        if path.suffix == ".json":
            json.loads(data)
        elif path.suffix == ".csv":
            list(csv.reader(data.decode("utf-8").splitlines()))
        elif path.suffix == ".xml":
            import xml.dom.minidom

            xml.dom.minidom.parseString(data)
    assert ESCAPE in (out / "report.html").read_text(encoding="utf-8")


def test_a_manifest_line_over_the_bound_is_one_line_before_any_image(workspace):
    """Issue 31, point 5: a long manifest line is refused, naming the line, before it is decoded or evaluated."""
    from click.testing import CliRunner

    from audit.cli import main
    from audit.contract.manifest import MAX_LINE_BYTES

    manifest = workspace / "manifest.csv"
    with open(manifest, "ab") as fh:
        fh.write(b"s999,img/0.png,0," + b"A" * MAX_LINE_BYTES + b",2026-01-01,granted\n")
    out = workspace / "out"
    result = CliRunner().invoke(main, ["run", str(write_config(workspace)), "--out", str(out), "--quiet"])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and f"line 26 is longer than {MAX_LINE_BYTES} bytes" in lines[0], lines
    assert str(manifest) in lines[0] and not out.exists()
