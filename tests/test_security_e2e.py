"""`cvaudit run` with hostile data: paths outside the data folder, decompression bombs (issue 13)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from click.testing import CliRunner
from cvaudit_fixtures import write_config, write_png_bomb
from PIL import Image

from audit.cli import main


def run(cfg: Path, out: Path):
    return CliRunner().invoke(main, ["run", str(cfg), "--out", str(out), "--quiet"])


def test_manifest_row_outside_the_data_folder_stops_the_run(workspace):
    """Regression: `../../secret/secret.png` was read and, with report.images: raw, embedded in report.html."""
    secret = workspace.parent / f"{workspace.name}-secret"
    secret.mkdir()
    Image.fromarray(np.full((16, 16, 3), 7, np.uint8)).save(secret / "secret.png")
    manifest = workspace / "manifest.csv"
    lines = manifest.read_text().splitlines()
    fields = lines[1].split(",")
    fields[1] = f"../{secret.name}/secret.png"
    manifest.write_text("\n".join([lines[0], ",".join(fields), *lines[2:]]) + "\n")
    cfg = write_config(workspace, extra="  images: raw\n")
    out = workspace / "out"
    result = run(cfg, out)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "line 2" in lines[0] and str((secret / "secret.png").resolve()) in lines[0]
    assert not out.exists()

    allowed = write_config(workspace, extra="  images: raw\n")
    allowed.write_text(
        allowed.read_text().replace("  num_workers: 0\n", "  num_workers: 0\n  allow_outside_root: true\n")
    )
    assert run(allowed, out).exit_code == 0


def test_bomb_is_skipped_under_on_bad_image_skip(workspace):
    write_png_bomb(workspace / "img" / "bomb.png", 20000, 20000)
    manifest = workspace / "manifest.csv"
    text = manifest.read_text()
    manifest.write_text(text + "bomb,img/bomb.png,0,A,2026-01-01,granted\n")
    cfg = write_config(workspace)
    cfg.write_text(cfg.read_text().replace("  num_workers: 0\n", "  num_workers: 0\n  on_bad_image: skip\n"))
    out = workspace / "out"
    result = run(cfg, out)
    assert result.exit_code == 0, result.output
    dataset = json.loads((out / "results.json").read_text())["dataset"]
    assert dataset["num_skipped"] == 1 and dataset["skipped"][0]["sample"] == "bomb"
    assert "decompression bomb" in dataset["skipped"][0]["reason"]
    strict = write_config(workspace)
    failed = run(strict, workspace / "out2")
    assert failed.exit_code == 2 and "bomb.png: sample bomb:" in failed.output


def test_bomb_as_the_first_image_with_automatic_workers(workspace):
    """Regression: the worker default reads the first image's header, and Pillow's bomb error escaped as a bug."""
    write_png_bomb(workspace / "img" / "bomb.png", 20000, 20000)
    manifest = workspace / "manifest.csv"
    header, *rows = manifest.read_text().splitlines()
    manifest.write_text("\n".join([header, "bomb,img/bomb.png,0,A,2026-01-01,granted", *rows]) + "\n")
    cfg = write_config(workspace)
    cfg.write_text(cfg.read_text().replace("  num_workers: 0\n", "  on_bad_image: skip\n"))
    out = workspace / "out"
    result = run(cfg, out)
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert results["dataset"]["num_skipped"] == 1 and results["dataset"]["skipped"][0]["sample"] == "bomb"
    assert results["provenance"]["num_workers"] >= 0


OSC = "\x1b]0;owned\x07"


def test_terminal_output_carries_no_escape_sequences(workspace):
    """Regression: an OSC title sequence from the data reached the terminal."""
    manifest = workspace / "manifest.csv"
    manifest.write_text(manifest.read_text().replace(",B,", f",B{OSC}[bold],"))  # B: the worst group at night@5
    out = workspace / "out"
    result = CliRunner().invoke(main, ["run", str(write_config(workspace)), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "\x07" not in result.output
    assert "\\x1b]0;owned\\x07[bold]" in result.output  # visible, and not read as markup

    manifest.write_text(manifest.read_text().replace(",0,", f",0{OSC},", 1))
    failed = CliRunner().invoke(main, ["run", str(write_config(workspace)), "--out", str(out), "--quiet"])
    assert failed.exit_code == 2
    assert "\x1b" not in failed.output and "\x07" not in failed.output and "\\x1b]0;owned" in failed.output
