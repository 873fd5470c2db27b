"""Shared fixtures for the reports tests: results, keys and one signed report."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
from reports_fixture import make_results

from reports import write_reports
from reports.keys import keygen

PASSPHRASE = b"correct horse battery staple"


@pytest.fixture(scope="session")
def base_results() -> dict:
    """The 20-condition x 10-group results, built once (do not mutate)."""
    return make_results()


@pytest.fixture
def results(base_results) -> dict:
    """A private deep copy of the fixture results, free to modify."""
    return copy.deepcopy(base_results)


@pytest.fixture
def small_results(base_results) -> dict:
    """Three conditions only: for tests that render a PDF and need speed."""
    small = copy.deepcopy(base_results)
    small["conditions"] = small["conditions"][:2] + small["conditions"][-1:]
    keep = {c["id"] for c in small["conditions"]}
    small["fairness"] = [f for f in small["fairness"] if f["condition"] in keep]
    small["robustness_disparity"] = [d for d in small["robustness_disparity"] if d["condition"] in keep]
    return small


@pytest.fixture(scope="session")
def key_dir(tmp_path_factory) -> Path:
    """An unencrypted key folder."""
    folder = tmp_path_factory.mktemp("keys") / "plain"
    keygen(folder)
    return folder


@pytest.fixture(scope="session")
def key_dir_pw(tmp_path_factory) -> Path:
    """A passphrase-protected key folder (passphrase: PASSPHRASE)."""
    folder = tmp_path_factory.mktemp("keys") / "encrypted"
    keygen(folder, passphrase=PASSPHRASE)
    return folder


@pytest.fixture(scope="session")
def signed_report_master(tmp_path_factory, base_results, key_dir_pw) -> Path:
    """A full signed report folder of the 20x10 fixture, rendered once."""
    root = tmp_path_factory.mktemp("signed")
    out = root / "out"
    out.mkdir()
    (out / "results.json").write_text(json.dumps(base_results, indent=2))
    (out / "predictions.csv").write_text("sample_id,condition,label,prediction\nimg_1,clean,0,0\n")
    (out / "junit.xml").write_text('<?xml version="1.0"?><testsuite name="cvaudit" tests="0"/>\n')
    model = root / "derm-resnet50.pt"
    model.write_bytes(b"not really torchscript" * 100)
    write_reports(out, base_results, sign_key=key_dir_pw, passphrase=PASSPHRASE, extra_subjects={"model.pt": model})
    return out


@pytest.fixture
def signed_report(signed_report_master, tmp_path) -> Path:
    """A private copy of the signed report folder, free to tamper with."""
    copy_dir = tmp_path / "report"
    shutil.copytree(signed_report_master, copy_dir)
    shutil.copy2(signed_report_master.parent / "derm-resnet50.pt", tmp_path / "derm-resnet50.pt")
    return copy_dir


def flip_byte(path: Path, offset: int) -> None:
    """Change one byte of ``path`` in place (offset may be negative)."""
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))
