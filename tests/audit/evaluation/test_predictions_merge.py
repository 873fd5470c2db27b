"""merge_predictions: the line-copy path for one unquoted part gives the CSV round trip's bytes."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from audit.contract import csvfile
from audit.evaluation.predictions import COLUMNS, LINE_END, merge_predictions, merged_rows


def _row(i: int, sample: str, attr: str) -> list:
    return [i, sample, "clean", "", "", i % 3, (i + 1) % 3, repr(0.5 + i / 1e3), repr(1 / 3), repr(0.1 * i), attr]


def _write_part(path: Path, rows: list[list]) -> None:
    """A part as the evaluator writes it (cvaudit's one CSV writer, CRLF lines)."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        csvfile.writer(fh, lineterminator=LINE_END).writerows(rows)


def _round_trip(work: Path, attributes: list[str]) -> bytes:
    """The general path, written independently: cvaudit's CSV reader -> its CSV writer."""
    buf = io.StringIO(newline="")
    writer = csvfile.writer(buf, lineterminator=LINE_END)
    writer.writerow(COLUMNS + attributes)
    writer.writerows(merged_rows(work))
    return buf.getvalue().encode("utf-8")


@pytest.mark.parametrize(
    "samples",
    [
        ["a", "b", "c"],  # nothing quoted: the line-copy path
        ["a,1", "b", "c"],  # a comma in a sample id: quoted, the CSV path
        ['say "hi"', "b", "c"],  # a quote
        ["multi\nline", "b", "c\r\nd"],  # newlines inside a field: one row spans lines
        ["é-ü", "日本", "c"],  # UTF-8 (no quotes: the line-copy path)
        ["=HYPERLINK(x)", "-0.5", "a\x1bb\u202e"],  # guarded, a plain number, control characters escaped
    ],
)
def test_one_part_gives_the_round_trip_bytes(tmp_path, samples):
    rows = [_row(i, s, "A" if i % 2 else "B,x") for i, s in enumerate(samples)]
    rows += [_row(i + 3, f"s{i}", "A") for i in range(200)]
    _write_part(tmp_path / "predictions.part-00000.csv", rows)
    dest = tmp_path / "predictions.csv"
    merge_predictions(tmp_path, dest, attributes=["camera"])
    assert dest.read_bytes() == _round_trip(tmp_path, ["camera"])
    with open(dest, newline="", encoding="utf-8") as fh:
        back = list(csvfile.reader(fh))
    assert back[0] == COLUMNS + ["camera"]
    assert [r[0] for r in back[1:]] == [csvfile.read_back(str(r[1])) for r in rows]  # the sample ids, _index dropped
    assert len(back) == len(rows) + 1


def test_unquoted_single_part_has_no_index_column_and_crlf_lines(tmp_path):
    _write_part(tmp_path / "predictions.part-00000.csv", [_row(i, f"s{i}", "A") for i in range(5)])
    dest = tmp_path / "predictions.csv"
    merge_predictions(tmp_path, dest, attributes=["camera"])
    lines = dest.read_bytes().split(b"\r\n")
    assert lines[1].startswith(b"s0,clean,") and lines[-1] == b""


def test_two_parts_are_interleaved_by_index(tmp_path):
    _write_part(tmp_path / "predictions.part-00000.csv", [_row(i, f"s{i}", "A") for i in range(0, 10, 2)])
    _write_part(tmp_path / "predictions.part-00001.csv", [_row(i, f"s{i}", "A") for i in range(1, 10, 2)])
    dest = tmp_path / "predictions.csv"
    merge_predictions(tmp_path, dest, attributes=["camera"])
    with open(dest, newline="", encoding="utf-8") as fh:
        assert [r[0] for r in list(csv.reader(fh))[1:]] == [f"s{i}" for i in range(10)]


def test_an_empty_part_gives_the_header_only(tmp_path):
    (tmp_path / "predictions.part-00000.csv").write_bytes(b"")
    dest = tmp_path / "predictions.csv"
    merge_predictions(tmp_path, dest, attributes=[])
    assert dest.read_bytes() == _round_trip(tmp_path, [])
