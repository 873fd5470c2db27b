"""Config ``slices``: bad input is one line and exit 2 before any image; watched slices are measured and judged."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from cvaudit_fixtures import ColourNet, make_dataset, save_model, write_config

from audit.contract.intervals import wilson

WATCH = """\
slices:
  watch:
    - id: cam-b-dark
      all:
        - {attribute: camera, equals: B}
        - {attribute: brightness, max: 0.3}
"""


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "audit", *args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )


@pytest.fixture()
def ws(tmp_path: Path) -> Path:
    make_dataset(tmp_path, n=24)
    save_model(tmp_path / "model.pt", ColourNet())
    return tmp_path


@pytest.mark.parametrize(
    ("slices", "expected"),
    [
        ("slices:\n  depth: 5\n", "slices.depth: Input should be less than or equal to 4"),
        ("slices:\n  depth: 0\n", "slices.depth: Input should be greater than or equal to 1"),
        ("slices:\n  tolerance: 1.5\n", "slices.tolerance: Input should be less than or equal to 1"),
        ("slices:\n  tolerance: -0.1\n", "slices.tolerance: Input should be greater than or equal to 0"),
        (
            "slices:\n  watch:\n    - {id: s1, all: [{attribute: site, equals: x}]}\n",
            "slices.watch[0].all[0].attribute: 'site' (slice 's1') is neither in data.attributes (camera) nor an image property",
        ),
        ("slices:\n  protected: [site]\n", "slices.protected: 'site' is not in data.attributes (camera)"),
    ],
)
def test_bad_slices_config_is_one_line_and_exit_2(ws: Path, slices: str, expected: str):
    cfg = write_config(ws, stressors="", extra=slices)
    out = ws / "out"
    proc = _cli("run", str(cfg), "--out", str(out), cwd=ws)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0], proc.stderr
    assert not out.exists() or not any(out.iterdir())


def test_a_rule_on_a_slice_the_config_does_not_watch_fails_before_any_image(ws: Path):
    cfg = write_config(ws, stressors="", extra=WATCH)
    (ws / "policy.yaml").write_text(
        "version: 1\nname: s\nrules:\n"
        "  - {id: r, section: slices, entry: cam-a, metric: metrics.accuracy, min: 0.5, blocking: true}\n"
    )
    (ws / "img" / "0.png").unlink()  # an image is never read: the run would fail on it otherwise
    proc = _cli("run", str(cfg), "--out", str(ws / "out"), cwd=ws)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert (
        len(lines) == 1 and "slice 'cam-a' is not watched by this run (config slices.watch ids: cam-b-dark)" in lines[0]
    )


def test_a_search_of_a_condition_the_run_lacks_fails_before_any_image(ws: Path):
    cfg = write_config(ws, stressors="", extra="slices:\n  search: on\n  condition: night@3\n")
    (ws / "img" / "0.png").unlink()  # an image is never read: the run would fail on it otherwise
    proc = _cli("run", str(cfg), "--out", str(ws / "out"), cwd=ws)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert (
        len(lines) == 1 and "slices.condition: 'night@3' is not a condition of this run (conditions: clean)" in lines[0]
    )


def _reference(out: Path) -> dict:
    """The watched slice from the run's CSV files, independently of cvaudit's reader."""
    with open(out / "predictions.csv", newline="") as fh:
        clean = [r for r in csv.DictReader(fh) if r["condition"] == "clean"]
    with open(out / "image_properties.csv", newline="") as fh:
        bright = {r["id"]: float(r["brightness"]) for r in csv.DictReader(fh)}
    inside = [r for r in clean if r["camera"] == "B" and bright[r["sample_id"]] < 0.3]
    rest = [r for r in clean if r not in inside]

    def acc(rows):
        return sum(r["label"] == r["prediction"] for r in rows), len(rows)

    def nll(rows):
        return sum(-math.log(max(float(r["p_true"]), 2.220446049250313e-16)) for r in rows) / len(rows)

    return {"in": acc(inside), "rest": acc(rest), "nll_in": nll(inside), "nll_rest": nll(rest)}


def test_a_watched_slice_is_measured_and_judged(ws: Path):
    # make the dark camera-B images hard: a blue-ish tint the colour classifier gets wrong
    import numpy as np
    from PIL import Image

    for i in range(24):
        if i % 2 == 0 and i % 3 == 0:  # camera B, red: darkened and tinted towards green
            arr = np.asarray(Image.open(ws / "img" / f"{i}.png")).astype(int)
            arr = np.stack([arr[..., 0] // 4, arr[..., 0] // 3, arr[..., 2] // 4], axis=-1)
            Image.fromarray(arr.astype(np.uint8)).save(ws / "img" / f"{i}.png")
    cfg = write_config(ws, stressors="", extra=WATCH)
    (ws / "policy.yaml").write_text(
        "version: 1\nname: s\nrules:\n"
        "  - {id: clean, condition: clean, metric: accuracy, min: 0.1, blocking: true}\n"
        "  - {id: dark-b, section: slices, entry: cam-b-dark, metric: metrics.accuracy, min: 0.9, blocking: true}\n"
    )
    out = ws / "out"
    proc = _cli("run", str(cfg), "--out", str(out), cwd=ws)
    assert proc.returncode == 1, proc.stderr  # the watched slice fails its rule
    results = json.loads((out / "results.json").read_text())
    (entry,) = results["slices"]
    ref = _reference(out)
    k, n = ref["in"]
    kr, nr = ref["rest"]
    assert n > 0 and entry["n"] == n and entry["rest"]["n"] == nr and n + nr == 24
    assert entry["metrics"]["accuracy"] == pytest.approx(k / n)
    assert entry["metrics"]["accuracy_ci"] == pytest.approx(wilson(k, n))
    assert entry["rest"]["metrics"]["accuracy"] == pytest.approx(kr / nr)
    assert entry["gap"]["accuracy"] == pytest.approx(kr / nr - k / n)
    assert entry["gap"]["nll"] == pytest.approx(ref["nll_in"] - ref["nll_rest"])
    assert entry["text"] == "camera = B AND brightness < 0.3"
    assert entry["insufficient_data"] is (n < 5)
    rules = {r["id"]: r for r in results["policy"]["rules"]}
    assert rules["dark-b"]["status"] == "fail", rules["dark-b"]

    html = (out / "report.html").read_text()
    assert (
        'id="slices"' in html and "Watched slices" in html and "cam-b-dark: camera = B AND brightness &lt; 0.3" in html
    )
    assert "dark-b: " in html and "s-fail" in html.split('id="slices"')[1].split("</section>")[0]
    # cvaudit report draws the section again from the run folder; image_properties.csv stays attested-kind output
    again = _cli("report", str(out / "results.json"), "--out", str(out), "--format", "html", cwd=ws)
    assert again.returncode == 0, again.stderr
    assert "Watched slices" in (out / "report.html").read_text()
    assert (out / "image_properties.csv").is_file()
