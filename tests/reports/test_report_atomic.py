"""Atomic writes and write_reports' ordering: no half-written or wrongly signed output."""

from __future__ import annotations

import json
import os

import pytest
from conftest import PASSPHRASE

import reports.pdf
from audit.contract.results import SCHEMA_VERSION
from reports import write_reports
from reports.atomic import atomic_write_bytes, atomic_write_text
from reports.keys import SigningError


def test_atomic_write_replaces_and_keeps_mode(tmp_path):
    path = tmp_path / "a.txt"
    atomic_write_text(path, "one")
    os.chmod(path, 0o640)
    atomic_write_bytes(path, b"two")
    assert path.read_bytes() == b"two" and (path.stat().st_mode & 0o777) == 0o640
    atomic_write_bytes(tmp_path / "key", b"k", mode=0o600)
    assert ((tmp_path / "key").stat().st_mode & 0o777) == 0o600


def test_interrupted_write_leaves_old_file(tmp_path, monkeypatch):
    path = tmp_path / "report.html"
    path.write_text("old")

    def boom(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(path, "new")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_bad_key_writes_nothing(tmp_path, small_results, key_dir_pw):
    with pytest.raises(SigningError):
        write_reports(tmp_path / "out", small_results, sign_key=key_dir_pw, passphrase=b"wrong")
    assert not (tmp_path / "out").exists()


def test_failed_pdf_leaves_no_signed_output(tmp_path, small_results, key_dir_pw, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text(json.dumps(small_results))
    (out / "attestation.dsse.json").write_text("{stale attestation from an earlier run}")

    def crash(*args, **kwargs):
        raise RuntimeError("renderer died")

    monkeypatch.setattr(reports.pdf, "pdf_bytes", crash)
    with pytest.raises(RuntimeError):
        write_reports(out, small_results, sign_key=key_dir_pw, passphrase=PASSPHRASE)
    assert {p.name for p in out.iterdir()} == {"results.json", "report.html"}


def test_unsigned_reports_and_missing_results_json(tmp_path, small_results):
    written = write_reports(tmp_path, small_results, formats=("html",), sign_key=None)
    assert [p.name for p in written] == ["results.json", "report.html"]
    assert json.loads((tmp_path / "results.json").read_text())["schema_version"] == SCHEMA_VERSION


def test_unknown_format_and_missing_extra_subject(tmp_path, small_results, key_dir):
    with pytest.raises(ValueError, match="unknown report format"):
        write_reports(tmp_path, small_results, formats=("docx",))
    with pytest.raises(OSError, match="attestation subject 'model.pt'"):
        write_reports(tmp_path / "o", small_results, sign_key=key_dir, extra_subjects={"model.pt": tmp_path / "x"})
    assert not (tmp_path / "o").exists()
