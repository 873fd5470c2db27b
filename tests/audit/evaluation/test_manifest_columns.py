"""Manifest columns and rows: configurable path/label columns, the right line blamed, duplicate images refused."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from audit.contract.config import DataConfig, load_config
from audit.contract.errors import AuditError
from audit.evaluation.data import check_label_range, read_samples
from audit.evaluation.table import first_repeat


def _read(tmp_path, text: str, name: str = "m.csv", class_names=None, **data):
    (tmp_path / name).write_text(text)
    return read_samples(DataConfig(manifest=tmp_path / name, **data), class_names=class_names)


def _error(tmp_path, text: str, name: str = "m.csv", class_names=None, **data) -> str:
    with pytest.raises(AuditError) as info:
        _read(tmp_path, text, name, class_names, **data)
    message = str(info.value)
    assert "\n" not in message and str(tmp_path / name) in message
    return message


# ------------------------------------------------------------------ path_column / label_column


def test_path_and_label_columns_are_configurable(tmp_path):
    table = _read(tmp_path, "file,species\na.png,cat\nb.png,dog\n", class_names=["cat", "dog"],
                  path_column="file", label_column="species")  # fmt: skip
    assert [p.name for p in table.paths] == ["a.png", "b.png"] and table.labels.tolist() == [0, 1]
    assert table.ids.tolist() == ["a.png", "b.png"]  # without an id column, the path names a sample
    rows = [{"file": "a.png", "y": 1}, {"file": "b.png", "y": 0}]
    table = _read(tmp_path, "".join(json.dumps(r) + "\n" for r in rows), "m.jsonl", path_column="file",
                  label_column="y")  # fmt: skip
    assert table.labels.tolist() == [1, 0]


def test_a_missing_path_column_names_it_and_lists_the_columns(tmp_path):
    message = _error(tmp_path, "image,label\na.png,0\n")
    assert "line 2: column 'path' is missing (columns: 'image', 'label')" in message
    assert "set data.path_column to the column of the image paths" in message
    message = _error(tmp_path, "image,y\na.png,0\n", path_column="image")
    assert "column 'label' is missing (columns: 'image', 'y'); set data.label_column" in message


def test_path_and_label_columns_must_differ(tmp_path):
    (tmp_path / "config.yaml").write_text(
        "model: {path: m.pt}\ndata: {manifest: m.csv, path_column: x, label_column: x}\n"
    )
    with pytest.raises(AuditError, match="data.path_column and data.label_column are both 'x'"):
        load_config(tmp_path / "config.yaml")


# ------------------------------------------------------------------ the right line blamed


def test_a_number_in_a_class_name_column_is_blamed_on_its_own_line(tmp_path):
    # issue 30: the error used to name line 2 ('cat', a valid class name)
    text = "sample_id,path,label\ns1,a.png,cat\ns2,b.png,dog\ns3,c.png,2\ns4,d.png,cat\n"
    message = _error(tmp_path, text, class_names=["cat", "dog", "bird"])
    assert "line 4 (sample s3): label '2' (column 'label') is not one of model.class_names" in message
    rows = [{"path": "a.png", "label": "cat"}, {"path": "b.png", "label": 1}]  # a JSON number
    message = _error(tmp_path, "".join(json.dumps(r) + "\n" for r in rows), "m.jsonl", class_names=["cat", "dog"])
    assert "line 2 (sample b.png): label '1'" in message


@pytest.mark.parametrize(
    "rows, class_names, expected",
    [
        (["0", "1", "zebra", "1"], None, "line 4 (sample c.png): label 'zebra' (column 'label') is not an integer"),
        (["0", "1", "zebra"], ["a", "b"], "line 4 (sample c.png): label 'zebra' (column 'label') is not an integer or"),
        (["0", "-1", "1"], None, "line 3 (sample b.png): label '-1' (column 'label') is negative"),
        (["0", "1", "2"], ["a", "b"], "line 4 (sample c.png): label '2' (column 'label') is not a class index"),
        (["0", "", "1"], None, "line 3 (sample b.png): label '' (column 'label') is empty"),
        (["cat", "dog", "Dog"], ["cat", "dog"], "line 4 (sample c.png): label 'Dog'"),
    ],
)
def test_label_errors_name_the_first_offending_line(tmp_path, rows, class_names, expected):
    text = "path,label\n" + "".join(f"{'abcd'[i]}.png,{y}\n" for i, y in enumerate(rows))
    assert expected in _error(tmp_path, text, class_names=class_names)


def test_a_label_beyond_the_model_is_named_by_line_before_any_image(tmp_path):
    table = _read(tmp_path, "sample_id,path,label\ns1,a.png,0\ns2,b.png,7\ns3,c.png,9\n")
    check_label_range(table, 10)
    with pytest.raises(AuditError, match=r"m.csv: line 3 \(sample s2\): label 7 is outside the model's 3 classes"):
        check_label_range(table, 3)


# ------------------------------------------------------------------ duplicate images


@pytest.mark.parametrize(
    "second",
    ["img/a.png", "./img/a.png", "img//a.png", "img/../img/a.png", "{root}/img/a.png"],
)
def test_the_same_image_under_two_ids_is_refused(tmp_path, second):
    second = second.format(root=tmp_path)
    text = f"sample_id,path,label\ns1,img/a.png,0\ns2,img/b.png,1\ns3,{second},0\n"
    message = _error(tmp_path, text)
    assert "line 4 (sample s3): image 'img/a.png' is already listed at line 2 (sample s1)" in message
    assert "data.allow_duplicate_paths: true" in message
    if second != "img/a.png":
        assert f"as {second!r}" in message
    table = _read(tmp_path, text, allow_duplicate_paths=True)
    assert table.ids.tolist() == ["s1", "s2", "s3"]


def test_distinct_images_with_similar_paths_are_kept(tmp_path):
    text = "sample_id,path,label\ns1,img/a.png,0\ns2,img/A.png,1\ns3,img/a.png.png,0\ns4,other/img/a.png,0\n"
    assert len(_read(tmp_path, text)) == 4


def test_the_earliest_repeat_is_named_whatever_the_order_of_the_keys():
    rng = random.Random(0)
    for _ in range(200):
        values = [rng.randrange(12) for _ in range(rng.randrange(1, 15))]
        keys = np.array([v % 3 for v in values], dtype=np.int64)  # colliding keys: confirmed on the values
        expected = None
        for j, v in enumerate(values):
            if v in values[:j]:
                expected = (values.index(v), j)
                break
        assert first_repeat(keys, lambda i, j: values[i] == values[j]) == expected  # noqa: B023
