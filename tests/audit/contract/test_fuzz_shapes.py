"""Every reader of a user's file against a fixed set of hostile contents (the fuzzers' seeds).

The random fuzzers (the other ``test_fuzz_*`` modules) meet these shapes only by chance and in a
small size; here each reader gets each shape once, at full size: nesting 100 000 deep, an integer
of 4301 digits, a lone surrogate as raw bytes (``ED A0 80``) and as a JSON escape, control
characters and formula starts, NUL bytes, a 2 MB line, a UTF-8 BOM, duplicate keys. The reader
loads the file or raises one well-formed :class:`CvauditError` within the bounds of
:func:`fuzz_kit.check`; a file that loads keeps text that encodes as UTF-8 where the reader
returns text to writers (manifest values, class names).

A crash found here and not fixed on this branch is listed in :data:`KNOWN` and marked
``xfail(strict=True)``: it turns red (XPASS) when the reader's fix merges; then delete the entry.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fuzz_kit import check
from PIL import Image

from audit.contract.config import load_config
from audit.contract.load import load_results
from audit.contract.manifest import read_manifest_rows
from audit.evaluation.detection.annotations import read_coco, read_yolo
from audit.evaluation.hf_model import _read_config, _weights
from policies.loader import load_policy
from reports.keys import load_attestation_public_key
from reports.trust import load_anchors


def _manifest(name: str):
    def read(path: Path):
        target = path.with_name(name)
        path.rename(target)
        rows = read_manifest_rows(target)
        for row in rows:
            for key, value in row.items():
                str(key).encode("utf-8")
                if isinstance(value, str):
                    value.encode("utf-8")
        return rows

    return read


def _coco(path: Path):
    truth = read_coco(path, root=path.parent)
    for name in truth.class_names:
        name.encode("utf-8")
    return truth


def _yolo(which: str):
    def read(path: Path):
        folder = path.parent / "yolo"
        (folder / "images").mkdir(parents=True)
        (folder / "labels").mkdir()
        Image.new("RGB", (8, 6)).save(folder / "images" / "a.png")
        (folder / "data.yaml").write_bytes(b"names: [car]\n")
        path.rename(folder / ("data.yaml" if which == "data" else "labels/a.txt"))
        truth = read_yolo(folder)
        for name in truth.class_names:
            name.encode("utf-8")
        return truth

    return read


def _hf(name: str, read):
    def run(path: Path):
        path.rename(path.with_name(name))
        return read(path.parent)

    return run


READERS = {
    "config": load_config,
    "policy": load_policy,
    "manifest.csv": _manifest("m.csv"),
    "manifest.jsonl": _manifest("m.jsonl"),
    "manifest.json": _manifest("m.json"),
    "results": load_results,
    "coco": _coco,
    "yolo-data.yaml": _yolo("data"),
    "yolo-label": _yolo("label"),
    "trust-file": lambda path: load_anchors(trust_files=[path]),
    "attestation-pub": load_attestation_public_key,
    "hf-config.json": _hf("config.json", _read_config),
    "hf-index.json": _hf("model.safetensors.index.json", _weights),
}
SHAPES = {
    "deep-list": b"[" * 100_000,
    "deep-object": b'{"a":' * 100_000,
    "deep-yaml-flow": b"{a: " * 20_000,
    "huge-integer": b"1" * 4301,
    "huge-integer-in-object": b'{"seed": 1' + b"0" * 5000 + b"}",
    "raw-surrogate": b'{"a": "\xed\xa0\x80"}\n',
    "json-surrogate": b'{"path": "\\ud800.png", "label": "\\udfff", "name": "\\ud800"}\n',
    "json-surrogate-list": b'[{"path": "a.png", "label": "\\udfff", "camera": "\\ud800"}]',
    "coco-surrogate": b'{"images": [], "annotations": [], "categories": [{"id": 1, "name": "\\ud800"}]}',
    "csv-surrogate": b"path,label,camera\n\xed\xa0\x80.png,0,\xed\xa0\x80\n",
    "control-characters": b"path,label,camera\na.png,0,\x1b[2J\x07\xe2\x80\xae\n",
    "formula-starts": b"path,label,camera\n=cmd|' /C calc'!A0,+1,@SUM(A1)\n",
    "nul-bytes": b"path,label\x00,camera\na.png,0\x00,A\n",
    "long-line": b"path,label,camera\n" + b"a" * 2_000_000 + b",0,A\n",
    "bom": b"\xef\xbb\xbfpath,label,camera\na.png,0,A\n",
    "bom-json": b'\xef\xbb\xbf{"a": 1}',
    "duplicate-keys-json": b'{"schema_version": "1.1", "schema_version": 2}',
    "duplicate-keys-yaml": b"seed: 1\nseed: 2\n",
    "empty": b"",
}
KNOWN: dict[tuple[str, str], str] = {}  # integer digits and nesting in HF JSON: fixed in hf_model


def _cases():
    for reader in READERS:
        for shape in SHAPES:
            marks = ()
            if (reader, shape) in KNOWN:
                marks = pytest.mark.xfail(strict=True, reason=KNOWN[reader, shape])
            yield pytest.param(reader, shape, id=f"{reader}-{shape}", marks=marks)


@pytest.mark.parametrize(("reader", "shape"), list(_cases()))
def test_hostile_contents(tmp_path, reader, shape):
    path = tmp_path / ("input.yaml" if reader in ("config", "policy") else "input.json")
    path.write_bytes(SHAPES[shape])
    check(lambda: READERS[reader](path))
