"""Every reader of users' strings returns valid UTF-8 text: a lone surrogate becomes its visible escape
(:func:`audit.contract.text.valid_text`; issue 31, point 4)."""

from __future__ import annotations

import json
import os
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from audit.contract.config import DataConfig
from audit.contract.errors import AuditError
from audit.contract.text import valid_text
from audit.evaluation.data import read_image_folder
from audit.evaluation.detection.annotations import read_coco
from audit.evaluation.hf_model import _class_names


def test_valid_text_escapes_every_surrogate_and_keeps_the_rest():
    assert valid_text("a\ud800b\udcffc") == "a\\ud800b\\udcffc"
    assert valid_text("\U0001f600 é \u202e") == "\U0001f600 é \u202e"  # encodable: left to each writer


def test_hugging_face_labels(tmp_path):
    names = _class_names(SimpleNamespace(id2label={"0": "cat\ud800", "1": "dog"}), tmp_path)
    assert names == ["cat\\ud800", "dog"]


def test_coco_category_and_file_names(tmp_path):
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "a.png")
    data = {
        "images": [{"id": 1, "file_name": "a.png", "width": 4, "height": 4}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 2, 2], "colour": "r\ud800"},
        ],
        "categories": [{"id": 1, "name": "c\ud800"}],
    }
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data), encoding="ascii")  # "\ud800" as the JSON escape
    truth = read_coco(path, root=tmp_path, object_attributes=["colour"])
    assert truth.class_names == ("c\\ud800",)
    assert truth.images[0].objects[0].attributes == {"colour": "r\\ud800"}


@pytest.mark.skipif(os.name != "posix", reason="non-UTF-8 file names are a POSIX thing")
def test_image_folder_with_a_name_that_is_not_utf8(tmp_path):
    root = tmp_path / "data"
    folder = os.fsdecode(os.fsencode(str(root)) + b"/red\xff")
    os.makedirs(folder)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(os.path.join(folder, "0.png"))
    with pytest.raises(AuditError) as err:
        read_image_folder(root, DataConfig(images=root))
    message = str(err.value)
    assert "red\\udcff/0.png" in message and "not UTF-8" in message
    message.encode("utf-8")
