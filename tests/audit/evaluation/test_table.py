"""The columnar sample table: the same ids, labels, attributes and paths as reading the rows one by one."""

from __future__ import annotations

import json
import pickle
import random

import numpy as np
import pytest
import torch

from audit.contract.config import DataConfig
from audit.contract.errors import AuditError
from audit.contract.manifest import read_manifest
from audit.contract.seeds import sample_key
from audit.evaluation.data import MISSING, read_samples
from audit.evaluation.groups import build_layout, slot_matrix
from audit.evaluation.table import (
    CodedColumn,
    SampleTable,
    StringColumn,
    check_unique_ids,
    sample_keys_of_bytes,
)

IDS = ["a", "", "ümlaut-ß", "日本語", "x" * 300, "with,comma", "a b"]


def test_string_column_round_trips_any_text():
    column = StringColumn.from_strings(IDS)
    assert len(column) == len(IDS) and column.tolist() == IDS and [column[i] for i in range(len(IDS))] == IDS
    assert pickle.loads(pickle.dumps(column)).tolist() == IDS


def test_keys_are_the_sample_keys():
    keys = sample_keys_of_bytes([s.encode("utf-8") for s in IDS])
    assert keys.dtype == np.int64 and keys.tolist() == [sample_key(s) for s in IDS]
    assert SampleTable("m.csv", IDS, [0] * len(IDS), {}).keys.tolist() == keys.tolist()


def test_coded_column_sorts_values_and_counts():
    column = CodedColumn.from_strings(["b", "a", "c", "a", "b", "a"])
    assert column.values == ("a", "b", "c") and column.tolist() == ["b", "a", "c", "a", "b", "a"]
    assert column.counts() == {"a": 3, "b": 2, "c": 1}
    keep = np.array([True, False, False, True, True, True])
    assert column.counts(keep) == {"a": 2, "b": 2}  # c has no kept sample: left out


def test_the_first_repeated_id_in_file_order_is_named():
    ids = StringColumn.from_strings(["a", "b", "c", "b", "a"])
    keys = sample_keys_of_bytes([s.encode() for s in ids])
    with pytest.raises(AuditError, match="sample id 'b' appears more than once"):
        check_unique_ids(ids, keys, "m.csv")
    check_unique_ids(StringColumn.from_strings(["a", "b"]), keys[:2], "m.csv")


def test_a_key_collision_of_distinct_ids_is_not_a_repeat():
    ids = StringColumn.from_strings(["a", "b", "c"])
    check_unique_ids(ids, np.array([5, 5, 5], dtype=np.int64), "m.csv")  # same keys, different ids


def test_indices_of_finds_ids_through_their_keys():
    table = SampleTable("m.csv", ["s3", "s1", "s2"], [0, 1, 2], {})
    assert table.indices_of(["s2", "s3"]).tolist() == [2, 0]
    with pytest.raises(KeyError):
        table.indices_of(["nope"])


def _rowwise(path, cfg, class_names):
    """The table as the row-by-row reader built it (the reference)."""
    rows = list(read_manifest(path))
    names = list(class_names) if class_names else None
    raw = [(r["label"] or "").strip() for r in rows]
    by_name = names is not None and all(x in names for x in raw)
    use_ids = cfg.id_column in rows[0]
    ids = [((r.get(cfg.id_column) if use_ids else None) or r["path"]).strip() for r in rows]
    labels = [names.index(x) if by_name else int(x) for x in raw]
    attributes = {a: [(r.get(a) or "").strip() or MISSING for r in rows] for a in cfg.attributes}
    paths = [str(path.parent / r["path"].strip()) for r in rows]
    return ids, labels, attributes, paths


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_the_columnar_table_equals_the_rowwise_one(tmp_path, suffix):
    rng = random.Random(4)
    cams = [" A", "B ", "", "C", "日本"]
    rows = []
    for i in range(40_000):  # several chunks
        rows.append(
            {
                "sample_id": rng.choice([f"s{i}", f" s{i} ", ""]),
                "path": f"img/{i}.png",
                "label": rng.choice(["cat", "dog", " cat "]),
                "camera": rng.choice(cams),
                "site": str(rng.randint(0, 600)),
            }
        )
    path = tmp_path / f"m{suffix}"
    if suffix == ".csv":
        lines = ["sample_id,path,label,camera,site"] + [",".join(r.values()) for r in rows]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    cfg = DataConfig(manifest=path, attributes=["camera", "site"], intersections=[["camera", "site"]])
    table = read_samples(cfg, class_names=["cat", "dog"])
    ids, labels, attributes, paths = _rowwise(path, cfg, ["cat", "dog"])
    assert table.ids.tolist() == ids and table.labels.tolist() == labels
    assert {a: c.tolist() for a, c in table.attributes.items()} == attributes
    assert [str(p) for p in table.paths] == paths
    assert table.keys.tolist() == [sample_key(s) for s in ids]
    layout = build_layout(table, cfg.intersections)
    names = layout.describe()
    slots = slot_matrix(table, layout)
    for i in rng.sample(range(len(ids)), 200):
        cam, site = attributes["camera"][i], attributes["site"][i]
        assert [names[s] for s in slots[i].tolist()] == [
            None,
            ("camera", cam),
            ("site", site),
            ("camera×site", f"{cam}×{site}"),
        ]
    assert slots.dtype == torch.int64


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        ("path,label\na.png,zebra\n ,0\n", "line 2 (sample a.png): label 'zebra'"),  # the first bad row wins
        ("path,label\n ,zebra\na.png,0\n", "line 2 (sample ): empty path"),  # a row's empty path before its label
        ("path,label\na.png,0\nb.png,1\n ,2\nc.png,x\n", "line 4 (sample ): empty path"),
        ("path,label\na.png,0\nb.png,1\nc.png,x\n ,2\n", "line 4 (sample c.png): label 'x'"),
    ],
)
def test_errors_name_the_first_bad_row(tmp_path, manifest, message):
    (tmp_path / "m.csv").write_text(manifest)
    with pytest.raises(AuditError) as err:
        read_samples(DataConfig(manifest=tmp_path / "m.csv"), class_names=None)
    assert message in str(err.value)


def test_governance_sees_every_row_once_in_order(tmp_path):
    lines = ["path,label,consent"] + [f"{i}.png,0,{'yes' if i % 3 else ''}" for i in range(40_000)]
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n")
    seen = []
    read_samples(DataConfig(manifest=tmp_path / "m.csv"), class_names=None, on_chunk=seen.append)
    assert [c.start for c in seen] == [0, *np.cumsum([len(c) for c in seen])[:-1].tolist()]
    assert [v for c in seen for v in c.columns["consent"]] == [("yes" if i % 3 else "") for i in range(40_000)]
