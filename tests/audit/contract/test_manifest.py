"""The one manifest reader: formats, value conversion, line numbers and errors."""

from __future__ import annotations

import pytest

from audit.contract.manifest import ManifestError, read_manifest


def test_read_manifest_csv_jsonl_json(tmp_path):
    csv_path = tmp_path / "m.csv"
    csv_path.write_text("sample_id,consent\na,yes\nb,\n", encoding="utf-8")
    assert list(read_manifest(csv_path)) == [
        {"sample_id": "a", "consent": "yes"},
        {"sample_id": "b", "consent": ""},
    ]
    jsonl = tmp_path / "m.jsonl"
    jsonl.write_text('{"sample_id": 1, "contains_face": true, "x": null}\n\n{"sample_id": 2}\n', encoding="utf-8")
    assert list(read_manifest(jsonl)) == [
        {"sample_id": "1", "contains_face": "true", "x": ""},
        {"sample_id": "2"},
    ]
    js = tmp_path / "m.json"
    js.write_text('[{"sample_id": "z"}]', encoding="utf-8")
    assert list(read_manifest(js)) == [{"sample_id": "z"}]


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("m.jsonl", '{"a": 1}\n{oops\n', "line 2: not valid JSON"),
        ("m.csv", "a,b\n1,2,3\n", "line 2: expected 2 fields, got 3"),
        ("m.txt", "x", "unknown manifest type"),
        ("m.json", '{"a": 1}', "expected a JSON list"),
    ],
)
def test_read_manifest_errors(tmp_path, name, content, match):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ManifestError, match=match):
        list(read_manifest(path))
    with pytest.raises(ManifestError, match="absent.csv: manifest not found"):
        list(read_manifest(tmp_path / "absent.csv"))


def test_rows_remember_their_line(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("path,label\na.png,0\n\nb.png,1\n", encoding="utf-8")
    rows = list(read_manifest(path))
    assert [(r.line, r["path"]) for r in rows] == [(2, "a.png"), (4, "b.png")]


def test_json_values_read_the_same_way_in_every_format(tmp_path):
    jsonl = tmp_path / "m.jsonl"
    jsonl.write_text('{"a": true, "b": null, "c": 2, "d": 0.5, "e": [1, 2], "f": {"y": 1, "x": 2}}\n', encoding="utf-8")
    assert list(read_manifest(jsonl)) == [
        {"a": "true", "b": "", "c": "2", "d": "0.5", "e": "[1,2]", "f": '{"x":2,"y":1}'}
    ]
    csv_path = tmp_path / "m.csv"
    csv_path.write_text("a,b,c,d\ntrue,,2,0.5\n", encoding="utf-8")
    assert list(read_manifest(csv_path)) == [{"a": "true", "b": "", "c": "2", "d": "0.5"}]


def test_bom_and_tsv(tmp_path):
    path = tmp_path / "m.tsv"
    path.write_bytes("\ufeffpath\tlabel\na.png\t1\n".encode())
    assert list(read_manifest(path)) == [{"path": "a.png", "label": "1"}]


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("m.csv", "path,label,path\na,1,b\n", "line 1: column 'path' appears twice"),
        ("m.csv", "path,label,camera\na.png,0\n", "line 2: expected 3 fields, got 2"),
        ("m.jsonl", "[1, 2]\n", "line 1: expected a JSON object, got list"),
        ("m.json", "[1]", "item 1: expected a JSON object"),
    ],
)
def test_more_errors_name_the_line(tmp_path, name, content, match):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ManifestError, match=match):
        list(read_manifest(path))


def test_not_utf8_and_a_folder(tmp_path):
    path = tmp_path / "m.csv"
    path.write_bytes(b"path,label\n\xff\xfe,1\n")
    with pytest.raises(ManifestError, match="not UTF-8"):
        list(read_manifest(path))
    folder = tmp_path / "d.csv"
    folder.mkdir()
    with pytest.raises(ManifestError, match="is a folder"):
        list(read_manifest(folder))


def _long_line_file(path, size: int, *, first: bytes) -> None:
    """``first`` then a line of ``size`` bytes, as a sparse file (no disk, no memory to write it)."""
    with open(path, "wb") as fh:
        fh.write(first)
        fh.truncate(len(first) + size)  # zeros: one line with no line break
    with open(path, "ab") as fh:
        fh.write(b"\n")


@pytest.mark.parametrize("name, first", [("m.csv", b"path,label\n"), ("m.jsonl", b'{"path": "a.png"}\n')])
def test_a_1gb_line_is_refused_with_bounded_memory(tmp_path, name, first):
    """Regression (issue 31): a 1 GB CSV line peaked at 2.4 GB before it was refused."""
    import tracemalloc

    from audit.contract.manifest import MAX_LINE_BYTES, read_manifest_chunks

    path = tmp_path / name
    _long_line_file(path, 1 << 30, first=first)
    tracemalloc.start()
    try:
        with pytest.raises(ManifestError) as err:
            list(read_manifest_chunks(path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(err.value) == f"{path}: line 2 is longer than {MAX_LINE_BYTES} bytes"
    assert peak < 16 << 20, f"peak {peak / 2**20:.1f} MiB"


def test_line_bound_counts_bytes_and_names_the_line(tmp_path):
    from audit.contract.manifest import _line_blocks

    path = tmp_path / "m.csv"
    path.write_bytes(b"ab\n" + b"x" * 9 + b"\n" + b"y" * 10 + b"\n")
    blocks = _line_blocks(path, max_line=10)
    with pytest.raises(ManifestError, match=r"m.csv: line 3 is longer than 10 bytes$"):
        [line for block in blocks for line in block]
    path.write_bytes(b"ab\r\n" + "é".encode() * 4 + b"\r\ncd")  # 10 bytes with CRLF; no final line break
    assert [line for block in _line_blocks(path, max_line=10) for line in block] == ["ab\r\n", "éééé\r\n", "cd"]
    path.write_bytes(b"ab\n\xff\n")
    with pytest.raises(ManifestError, match="line 2: not UTF-8 text"):
        [line for block in _line_blocks(path, max_line=10) for line in block]


def test_lone_surrogates_become_visible_escapes(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"sample_id": "s\\ud800", "cam\\udfff": "B\\ud800x", "n": {"k": "\\ud800"}}\n', encoding="ascii")
    (row,) = read_manifest(path)
    assert row == {"sample_id": "s\\ud800", "cam\\udfff": "B\\ud800x", "n": '{"k":"\\ud800"}'}
    for key, value in row.items():
        (key + value).encode("utf-8")


def test_a_fifo_manifest_is_refused_without_waiting(tmp_path):
    import os

    fifo = tmp_path / "m.csv"
    os.mkfifo(fifo)
    with pytest.raises(ManifestError, match="FIFO"):
        list(read_manifest(fifo))
