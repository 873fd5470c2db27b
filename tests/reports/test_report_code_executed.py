"""The report's "What was tested" names the code the run executed (results 1.5 model.code_executed)."""

from __future__ import annotations

import copy
import shutil
import subprocess

import pytest

from reports import write_reports

DIGEST = "0123456789abcdef" * 4


@pytest.fixture
def code_results(base_results) -> dict:
    results = copy.deepcopy(base_results)
    results["model"] = {
        **results["model"],
        "format": "factory",
        "code_executed": {"kind": "factory", "name": "nets.derm:make", "path": "nets/derm.py", "sha256": DIGEST},
    }
    return results


def test_html_and_pdf_name_the_factory_and_its_digest(tmp_path, code_results):
    write_reports(tmp_path, code_results, formats=("html", "pdf"))
    html = (tmp_path / "report.html").read_text()
    assert "Code executed" in html and "nets.derm:make" in html and "nets/derm.py" in html and DIGEST in html
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler) not installed")
    text = subprocess.run(["pdftotext", str(tmp_path / "report.pdf"), "-"], capture_output=True, text=True).stdout
    flat = "".join(text.split())
    assert "Codeexecuted" in flat and "nets.derm:make" in flat and DIGEST in flat


def test_no_line_when_no_code_was_executed(tmp_path, base_results):
    write_reports(tmp_path, base_results, formats=("html",))
    assert "Code executed" not in (tmp_path / "report.html").read_text()
