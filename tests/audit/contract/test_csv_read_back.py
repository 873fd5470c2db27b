"""Reading a run folder's CSVs back: bounded lines, parse errors as one line (issue 31, points 5 and 8)."""

from __future__ import annotations

import os
import resource

import pytest

from audit.contract import csvfile
from audit.contract.errors import AuditError, CvauditError


def test_lines_feed_the_reader_and_round_trip(tmp_path):
    path = tmp_path / "predictions.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csvfile.writer(fh, lineterminator="\r\n")
        w.writerow(["sample_id", "camera"])
        w.writerow(["=cmd|x", "a\nb"])  # a guarded formula and a quoted newline
    rows = list(csvfile.reader(csvfile.lines(path, what="predictions.csv", error=AuditError)))
    assert rows == [["sample_id", "camera"], ["=cmd|x", "a\nb"]]


def test_a_gigabyte_line_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "predictions.csv"
    with open(path, "wb") as fh:  # a sparse 1 GiB file of NUL bytes and no line end
        fh.write(b"sample_id\n")
        fh.truncate(1 << 30)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(AuditError, match=r"line 2 of predictions\.csv is longer than 1048576 bytes"):
        list(csvfile.reader(csvfile.lines(path, what="predictions.csv", error=AuditError)))
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # KiB


def test_a_fifo_is_refused(tmp_path):
    fifo = tmp_path / "objects.csv"
    os.mkfifo(fifo)
    with pytest.raises(AuditError, match="FIFO"):
        list(csvfile.lines(fifo, what="objects.csv", error=AuditError))


def test_a_field_over_the_csv_modules_limit_is_one_line(tmp_path):
    path = tmp_path / "queue.csv"
    path.write_text("a,b\n" + "x" * 200_000 + ",1\n")  # one line under the bound, one field over csv's 128 KiB
    with pytest.raises(CvauditError, match="line 2: not a CSV that cvaudit wrote"):
        list(csvfile.DictReader(csvfile.lines(path, what="queue.csv", error=AuditError)))
