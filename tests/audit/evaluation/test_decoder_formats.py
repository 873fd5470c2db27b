"""Images are decoded only by the formats cvaudit supports (``data.image_formats``): an EPS file named ``.png``
never starts Ghostscript, and every decoder error inside a DataLoader worker is a skipped image (issue 31, point 3)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cvaudit_fixtures import write_config
from PIL import Image

from audit.contract.config import DEFAULT_IMAGE_FORMATS, load_config
from audit.contract.errors import AuditError
from audit.evaluation.data import AuditDataset, open_image
from audit.evaluation.table import SampleTable

REPO = Path(__file__).resolve().parents[3]


def _fake_gs(folder: Path) -> Path:
    """A ``gs`` on PATH that leaves a marker file when it runs, then fails as a broken Ghostscript would."""
    folder.mkdir(exist_ok=True)
    marker = folder / "gs-ran"
    gs = folder / "gs"
    gs.write_text(f"#!/bin/sh\necho ran > '{marker}'\nexit 3\n")
    gs.chmod(0o755)
    return marker


def _eps_as_png(path: Path) -> Path:
    """A real EPS file (Pillow's own EPS writer) under a ``.png`` name."""
    Image.fromarray(np.full((16, 16, 3), 200, np.uint8)).save(path.with_suffix(".eps"), "EPS")
    path.with_suffix(".eps").rename(path)
    assert path.read_bytes().startswith(b"%!PS-Adobe")
    return path


def test_defaults_are_the_supported_formats():
    assert DEFAULT_IMAGE_FORMATS == ("PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF")


def test_open_image_refuses_eps_named_png(tmp_path, monkeypatch):
    marker = _fake_gs(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    from PIL import EpsImagePlugin

    monkeypatch.setattr(EpsImagePlugin, "gs_binary", None)  # look gs up again, on the PATH above
    eps = _eps_as_png(tmp_path / "x.png")
    with pytest.raises(Image.UnidentifiedImageError):
        open_image(eps, max_pixels=10**6, exif="ignore", alpha="composite_white")
    assert not marker.exists()
    # Without the allow-list Pillow would run the fake gs: the test above can fail.
    with pytest.raises(Exception), Image.open(eps) as img:  # noqa: B017 (whatever the plugin raises)
        img.load()
    assert marker.exists()


class _Raising(Exception):
    """An exception type no decoder list names (as a plugin's own error would be)."""


def test_any_decoder_exception_is_a_bad_image(tmp_path, monkeypatch):
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "a.png")
    from audit.contract.config import ModelConfig

    table = SampleTable(tmp_path, ["a"], np.array([0]), {}, paths=[str(tmp_path / "a.png")], class_names=["x"])
    dataset = AuditDataset(table, ModelConfig(path="m.pt", input_size=[4, 4]))

    def boom(*args, **kwargs):
        raise _Raising("plugin blew up")

    monkeypatch.setattr(Image, "open", boom)
    item = dataset[0]
    assert "image" not in item and "plugin blew up" in item["error"]


def test_formats_key_is_validated(tmp_path):
    write_config(tmp_path)
    cfg = tmp_path / "config.yaml"
    base = cfg.read_text()
    for value, words in [
        ("[PNG, EPS]", "EPS"),
        ("[PDF]", "PDF"),
        ("[PS]", "PS"),
        ("[NOPE]", "NOPE"),
        ("[]", "at least one"),
    ]:
        cfg.write_text(base.replace("  num_workers: 0\n", f"  num_workers: 0\n  image_formats: {value}\n"))
        with pytest.raises(AuditError) as err:
            load_config(cfg)
        message = str(err.value)
        assert "data.image_formats" in message and words in message and "\n" not in message, message
    cfg.write_text(base.replace("  num_workers: 0\n", "  num_workers: 0\n  image_formats: [png, jpg, ppm]\n"))
    assert load_config(cfg).data.image_formats == ["PNG", "JPEG", "PPM"]


def _hostile_workspace(root: Path, workers: int, on_bad_image: str) -> tuple[Path, Path]:
    from cvaudit_fixtures import ColourNet, make_dataset, save_model

    make_dataset(root)
    save_model(root / "model.pt", ColourNet())
    _eps_as_png(root / "img" / "eps.png")
    with open(root / "manifest.csv", "a", newline="") as fh:
        csv.writer(fh).writerow(["eps", "img/eps.png", 0, "A", "2026-01-01", "granted"])
    cfg = write_config(root, stressors="")
    cfg.write_text(
        cfg.read_text().replace("  num_workers: 0\n", f"  num_workers: {workers}\n  on_bad_image: {on_bad_image}\n")
    )
    return cfg, _fake_gs(root / "bin")


def _run(cfg: Path, out: Path, bin_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "audit", "run", str(cfg), "--out", str(out), "--quiet"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


@pytest.mark.slow
def test_eps_named_png_is_skipped_in_a_worker_and_gs_never_runs(tmp_path):
    cfg, marker = _hostile_workspace(tmp_path, workers=1, on_bad_image="skip")
    result = _run(cfg, tmp_path / "out", tmp_path / "bin")
    assert result.returncode in (0, 1), result.stdout + result.stderr
    assert not marker.exists()
    dataset = json.loads((tmp_path / "out" / "results.json").read_text())["dataset"]
    assert dataset["num_skipped"] == 1 and dataset["skipped"][0]["sample"] == "eps"
    assert "not a readable image" in dataset["skipped"][0]["reason"]
    with open(tmp_path / "out" / "skipped.csv", newline="") as fh:
        assert [r["sample_id"] for r in csv.DictReader(fh)] == ["eps"]


@pytest.mark.slow
def test_eps_named_png_under_on_bad_image_error_is_one_line(tmp_path):
    cfg, marker = _hostile_workspace(tmp_path, workers=0, on_bad_image="error")
    result = _run(cfg, tmp_path / "out", tmp_path / "bin")
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [  # the one error line (the run names the model code it loaded on a line of its own)
        line for line in (result.stdout + result.stderr).splitlines() if line.strip() and "code executed:" not in line
    ]
    assert len(lines) == 1 and "eps.png" in lines[0] and "internal error" not in lines[0], lines
    assert not marker.exists()
