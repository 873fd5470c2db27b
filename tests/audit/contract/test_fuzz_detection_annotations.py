"""Property-based fuzzing of the detection ground-truth readers (COCO JSON and YOLO folders).

:func:`read_coco` (the instances JSON, in both ``on_bad_annotation`` modes) and :func:`read_yolo`
(``data.yaml`` and the label files) take user files: every input either loads or raises one
well-formed :class:`CvauditError` within the CPU-time and memory bounds of :func:`fuzz_kit.check`.
A file that loads keeps class names and attribute values that encode as UTF-8, so no writer fails
on them later (issue 31, point 4). ``CVAUDIT_FUZZ=smoke|ci|long`` sets the number of examples.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from fuzz_kit import (
    HOSTILE_BYTES,
    HOSTILE_TEXT,
    check,
    duplicate_keys,
    fuzz_settings,
    inputs,
    mutations,
)
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from audit.evaluation.detection.annotations import GroundTruth, read_coco, read_yolo

COCO_KEYS = [
    "images",
    "annotations",
    "categories",
    "id",
    "file_name",
    "width",
    "height",
    "image_id",
    "category_id",
    "bbox",
    "iscrowd",
    "area",
    "name",
    "occluded",
]
COCO = {
    "images": [
        {"id": 1, "file_name": "a.png", "width": 8, "height": 6},
        {"id": 2, "file_name": "sub/b.png", "width": 8, "height": 6},
    ],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 3, "bbox": [1, 1, 2, 2], "iscrowd": 0, "occluded": 1},
        {"id": 2, "image_id": 2, "category_id": 5, "bbox": [0.5, 0, 4, 5.5], "area": 12.5},
    ],
    "categories": [{"id": 3, "name": "car"}, {"id": 5, "name": "person"}],
}
VALID_COCO = json.dumps(COCO).encode()
VALID_DATA_YAML = b"names: [car, person]\n"
VALID_LABELS = b"0 0.5 0.5 0.25 0.25\n1 0.1 0.2 0.1 0.2\n"


def assert_text_encodes(truth: GroundTruth) -> None:
    """Every string a loaded ground truth holds encodes as UTF-8 (no lone surrogates)."""
    for name in truth.class_names:
        name.encode("utf-8")
    for image in truth.images:
        image.file_name.encode("utf-8")
        for obj in image.objects:
            for key, value in obj.attributes.items():
                str(key).encode("utf-8")
                if isinstance(value, str):
                    value.encode("utf-8")


@pytest.fixture(scope="module")
def coco_folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("coco")


@fuzz_settings(0.25)
@given(
    data=st.one_of(inputs(COCO_KEYS, VALID_COCO, COCO), duplicate_keys(VALID_COCO)),
    mode=st.sampled_from(["error", "skip"]),
)
def test_read_coco(coco_folder, data, mode):
    path = coco_folder / "instances.json"
    path.write_bytes(data)
    truth = check(lambda: read_coco(path, root=coco_folder, object_attributes=["occluded"], on_bad_annotation=mode))
    if truth is not None:
        assert_text_encodes(truth)


@pytest.fixture(scope="module")
def yolo_template(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("yolo-template")
    (folder / "images").mkdir()
    (folder / "labels").mkdir()
    Image.new("RGB", (8, 6)).save(folder / "images" / "a.png")
    (folder / "data.yaml").write_bytes(VALID_DATA_YAML)
    (folder / "labels" / "a.txt").write_bytes(VALID_LABELS)
    return folder


LABEL_LINES = st.lists(
    st.one_of(
        st.lists(
            st.one_of(
                st.sampled_from(["0", "1", "2", "-1", "0.5", "1e309", "nan", "inf", "1" * 5000]),
                st.floats(allow_nan=True, allow_infinity=True).map(repr),
                st.sampled_from(HOSTILE_TEXT),
            ),
            max_size=7,
        ).map(" ".join),
        st.sampled_from([h.decode("latin-1") for h in HOSTILE_BYTES]),
    ),
    max_size=6,
).map(lambda lines: "\n".join(lines).encode("utf-8", "surrogatepass"))


@fuzz_settings(0.25)
@given(
    data_yaml=st.one_of(st.just(VALID_DATA_YAML), inputs(["names", "nc", "path", "train"], VALID_DATA_YAML)),
    labels=st.one_of(st.just(VALID_LABELS), LABEL_LINES, mutations(VALID_LABELS), st.binary(max_size=200)),
    mode=st.sampled_from(["error", "skip"]),
)
def test_read_yolo(yolo_template, tmp_path_factory, data_yaml, labels, mode):
    folder = tmp_path_factory.getbasetemp() / "yolo-example"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(yolo_template, folder)
    (folder / "data.yaml").write_bytes(data_yaml)
    (folder / "labels" / "a.txt").write_bytes(labels)
    truth = check(lambda: read_yolo(folder, on_bad_annotation=mode))
    if truth is not None:
        assert_text_encodes(truth)


@fuzz_settings(0.05)
@given(names=st.lists(st.one_of(st.sampled_from(HOSTILE_TEXT), st.text(max_size=10)), min_size=1, max_size=4))
def test_read_coco_class_names(coco_folder, names):
    """Hostile category names load as text that encodes, or are refused in one line."""
    document = {**COCO, "categories": [{"id": 3 + k, "name": n} for k, n in enumerate(names)], "annotations": []}
    path = coco_folder / "names.json"
    path.write_bytes(json.dumps(document).encode())
    truth = check(lambda: read_coco(path, root=coco_folder))
    if truth is not None:
        assert_text_encodes(truth)


def test_read_coco_surrogate_name_regression(coco_folder):
    """Found by test_read_coco_class_names: a lone surrogate in a category name was kept (fixed on main)."""
    path = coco_folder / "surrogate.json"
    path.write_bytes(b'{"images": [], "annotations": [], "categories": [{"id": 1, "name": "\\ud800"}]}')
    assert_text_encodes(read_coco(path, root=coco_folder))


def test_templates_load(coco_folder, yolo_template):
    """The valid templates load, so substitutions and mutations start from files the readers accept."""
    path = coco_folder / "valid.json"
    path.write_bytes(VALID_COCO)
    truth = read_coco(path, root=coco_folder, object_attributes=["occluded"])
    assert truth.class_names == ("car", "person") and len(truth.images) == 2
    yolo = read_yolo(yolo_template)
    assert yolo.class_names == ("car", "person") and len(yolo.images[0].objects) == 2
