"""The detection ground-truth readers: COCO, YOLO and the manifest join (audit/evaluation/detection/annotations.py)."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest
from PIL import Image

from audit.contract.errors import AuditError
from audit.evaluation.detection.annotations import (
    GroundTruth,
    join_manifest,
    read_coco,
    read_yolo,
    size_class,
)

# A scene of two images: a.png (100x80) with three objects, b.png (64x48) with none.
SCENE = {
    "images": [
        {"id": 7, "file_name": "a.png", "width": 100, "height": 80},
        {"id": 9, "file_name": "b.png", "width": 64, "height": 48},
    ],
    "categories": [{"id": 3, "name": "car"}, {"id": 1, "name": "person"}],
    "annotations": [
        {"id": 1, "image_id": 7, "category_id": 1, "bbox": [10, 20, 30, 40], "area": 1200, "iscrowd": 0},
        {"id": 2, "image_id": 7, "category_id": 3, "bbox": [0, 0, 100, 80], "area": 8000.0, "iscrowd": 1},
        {"id": 5, "image_id": 7, "category_id": 1, "bbox": [50.5, 10.25, 20, 5.5], "area": 110, "iscrowd": 0},
    ],
}


def _images(folder: Path, sizes: dict[str, tuple[int, int]]) -> None:
    for name, size in sizes.items():
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, (40, 80, 120)).save(target)


def _coco(tmp_path: Path, data: dict, name: str = "instances.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def _one_line_error(excinfo: pytest.ExceptionInfo, *parts: str) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    for part in parts:
        assert part in message, (part, message)
    return message


# ----------------------------------------------------------------------- COCO


def test_coco_reads_images_objects_and_classes(tmp_path):
    truth = read_coco(_coco(tmp_path, SCENE), root=tmp_path)
    assert truth.class_names == ("person", "car")  # by ascending category id
    assert truth.category_ids == (1, 3)
    assert [i.image_id for i in truth.images] == [7, 9]
    a, b = truth.images
    assert (a.width, a.height, b.width, b.height) == (100, 80, 64, 48)
    assert a.path == (tmp_path / "a.png").resolve()
    assert b.objects == ()  # an image without objects is valid
    first, crowd, small = a.objects
    assert first.box == (10.0, 20.0, 40.0, 60.0)
    assert all(isinstance(v, float) for v in first.box)
    assert (first.category, first.category_id, first.annotation_id) == (0, 1, 1)
    assert (crowd.category, crowd.category_id, crowd.iscrowd) == (1, 3, True)
    assert small.box == (50.5, 10.25, 70.5, 15.75)
    assert truth.num_objects == 3 and truth.skipped == ()


def test_coco_optional_iscrowd_and_area_defaults(tmp_path):
    data = copy.deepcopy(SCENE)
    for ann in data["annotations"]:
        del ann["iscrowd"], ann["area"]
    truth = read_coco(_coco(tmp_path, data), root=tmp_path)
    assert [o.area for o in truth.images[0].objects] == [1200.0, 8000.0, 110.0]
    assert not any(o.iscrowd for o in truth.images[0].objects)


@pytest.mark.parametrize(
    ("area", "expected"),
    [(1023.999, "small"), (1024.0, "medium"), (9215.5, "medium"), (9216.0, "large"), (0.0, "small")],
)
def test_size_classes_at_the_coco_boundaries(tmp_path, area, expected):
    assert size_class(area) == expected
    data = copy.deepcopy(SCENE)
    data["images"][0].update(width=200, height=200)
    data["annotations"] = [{"id": 1, "image_id": 7, "category_id": 1, "bbox": [0, 0, 100, 100], "area": area}]
    (obj,) = read_coco(_coco(tmp_path, data), root=tmp_path).images[0].objects
    assert obj.size == expected  # by the file's area, not the box's (10000)


def test_object_attributes_are_kept_as_text(tmp_path):
    data = copy.deepcopy(SCENE)
    data["annotations"][0].update(occluded=True, truncated=0.25, camera_zone="north")
    data["annotations"][1].update(occluded=False, truncated=None)
    truth = read_coco(_coco(tmp_path, data), root=tmp_path, object_attributes=("occluded", "truncated", "camera_zone"))
    first, second, third = truth.images[0].objects
    assert first.attributes == {"occluded": "true", "truncated": "0.25", "camera_zone": "north"}
    assert second.attributes == {"occluded": "false", "truncated": "<missing>", "camera_zone": "<missing>"}
    assert third.attributes == {"occluded": "<missing>", "truncated": "<missing>", "camera_zone": "<missing>"}


def _bad_annotation(**changes):
    ann = {"id": 40, "image_id": 7, "category_id": 1, "bbox": [10, 10, 20, 20], "area": 400, "iscrowd": 0}
    for key, value in changes.items():
        if value is _DELETE:
            del ann[key]
        else:
            ann[key] = value
    return ann


_DELETE = object()

BAD_ANNOTATIONS = {
    "box right of the image": (_bad_annotation(bbox=[90, 10, 20, 20]), "outside the image"),
    "box below the image": (_bad_annotation(bbox=[10, 70, 20, 20]), "outside the image"),
    "negative corner": (_bad_annotation(bbox=[-1, 10, 20, 20]), "outside the image"),
    "zero width": (_bad_annotation(bbox=[10, 10, 0, 20]), "non-positive width or height"),
    "negative height": (_bad_annotation(bbox=[10, 10, 20, -3]), "non-positive width or height"),
    "unknown category": (_bad_annotation(category_id=2), "category_id 2 is not a category"),
    "image not in images": (_bad_annotation(image_id=8), "image_id 8 is not an image"),
    "missing bbox": (_bad_annotation(bbox=_DELETE), "key 'bbox' is missing"),
    "missing category_id": (_bad_annotation(category_id=_DELETE), "key 'category_id' is missing"),
    "bbox of three": (_bad_annotation(bbox=[1, 2, 3]), "'bbox' must be a list"),
    "bbox text": (_bad_annotation(bbox=[1, "2", 3, 4]), "bbox[1] must be a number"),
    "bbox boolean": (_bad_annotation(bbox=[1, True, 3, 4]), "bbox[1] must be a number"),
    "category id float": (_bad_annotation(category_id=1.0), "'category_id' must be an integer"),
    "NaN in bbox": (_bad_annotation(bbox=[1, float("nan"), 3, 4]), "must be finite"),
    "infinite area": (_bad_annotation(area=float("inf")), "must be finite"),
    "huge integer": (_bad_annotation(bbox=[1, 10**400, 3, 4]), "too large"),
    "negative area": (_bad_annotation(area=-5), "'area' -5 is negative"),
    "iscrowd 2": (_bad_annotation(iscrowd=2), "'iscrowd' must be 0 or 1"),
    "duplicate annotation id": (_bad_annotation(id=1), "annotation id given twice"),
}


@pytest.mark.parametrize("case", sorted(BAD_ANNOTATIONS))
def test_bad_annotation_is_one_line_naming_file_and_id(tmp_path, case):
    ann, problem = BAD_ANNOTATIONS[case]
    data = copy.deepcopy(SCENE)
    data["annotations"].append(ann)
    path = _coco(tmp_path, data)
    with pytest.raises(AuditError) as excinfo:
        read_coco(path, root=tmp_path)
    _one_line_error(
        excinfo, str(path), "annotation 1:" if case == "duplicate annotation id" else "annotation 40:", problem
    )


@pytest.mark.parametrize("case", sorted(BAD_ANNOTATIONS))
def test_skip_mode_drops_and_lists_the_bad_annotation(tmp_path, case):
    ann, problem = BAD_ANNOTATIONS[case]
    data = copy.deepcopy(SCENE)
    data["annotations"].insert(1, ann)
    truth = read_coco(_coco(tmp_path, data), root=tmp_path, on_bad_annotation="skip")
    assert [o.annotation_id for o in truth.images[0].objects] == [1, 2, 5]
    (skipped,) = truth.skipped
    assert problem in skipped.reason and skipped.id.startswith("annotation")
    assert skipped.source == str(tmp_path / "instances.json")


def test_skip_mode_counts_every_bad_annotation(tmp_path):
    data = copy.deepcopy(SCENE)
    data["annotations"] += [_bad_annotation(id=100 + k, bbox=[90, 10, 20, 20]) for k in range(4)]
    data["annotations"] += ["not an object", _bad_annotation(id=200, category_id=99)]
    truth = read_coco(_coco(tmp_path, data), root=tmp_path, on_bad_annotation="skip")
    assert len(truth.skipped) == 6 and truth.num_objects == 3
    assert [s.id for s in truth.skipped] == [
        "annotation 100",
        "annotation 101",
        "annotation 102",
        "annotation 103",
        "annotation #8",
        "annotation 200",
    ]


def test_box_tolerance_allows_rounding_at_the_edge(tmp_path):
    data = copy.deepcopy(SCENE)
    data["annotations"] = [_bad_annotation(bbox=[60, 40, 40.005, 40.005])]
    (obj,) = read_coco(_coco(tmp_path, data), root=tmp_path).images[0].objects
    assert obj.box == (60.0, 40.0, 100.005, 80.005)  # kept as given, not clipped


BAD_FILES = {
    "duplicate image id": (lambda d: d["images"].append({**d["images"][0], "file_name": "c.png"}), "image 7: image id"),
    "duplicate file name": (lambda d: d["images"].append({**d["images"][0], "id": 11}), "image 11: file_name 'a.png'"),
    "image without width": (lambda d: d["images"][1].pop("width"), "image 9: key 'width' is missing"),
    "image size zero": (lambda d: d["images"][1].update(height=0), "image 9: size 64x0 must be positive"),
    "image id text": (lambda d: d["images"][1].update(id="9"), "image '9': 'id' must be an integer"),
    "empty file name": (lambda d: d["images"][1].update(file_name=" "), "'file_name' must be a non-empty"),
    "duplicate category": (lambda d: d["categories"].append({"id": 3, "name": "bus"}), "category 3: category id"),
    "repeated class name": (lambda d: d["categories"].append({"id": 4, "name": "car"}), "name 'car' is also"),
    "no categories": (lambda d: d.update(categories=[]), "'categories' is empty"),
    "images missing": (lambda d: d.pop("images"), "key 'images' is missing"),
    "images not a list": (lambda d: d.update(images={"a": 1}), "'images' must be a list"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
@pytest.mark.parametrize("mode", ["error", "skip"])
def test_bad_images_and_categories_are_errors_in_both_modes(tmp_path, case, mode):
    change, problem = BAD_FILES[case]
    data = copy.deepcopy(SCENE)
    change(data)
    path = _coco(tmp_path, data)
    with pytest.raises(AuditError) as excinfo:
        read_coco(path, root=tmp_path, on_bad_annotation=mode)
    _one_line_error(excinfo, str(path), problem)


def test_image_above_the_pixel_limit_is_refused(tmp_path):
    path = _coco(tmp_path, SCENE)
    with pytest.raises(AuditError) as excinfo:
        read_coco(path, root=tmp_path, max_image_pixels=5000)
    _one_line_error(excinfo, str(path), "image 7", "100x80 = 8000 pixels", "max_image_pixels (5000)")


def test_oversized_file_is_refused_before_parsing(tmp_path):
    path = _coco(tmp_path, SCENE)
    with pytest.raises(AuditError) as excinfo:
        read_coco(path, root=tmp_path, max_bytes=100)
    _one_line_error(excinfo, str(path), "bytes; at most 100 bytes are read")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"images": [' + "1" * 5000 + "]}", "not valid JSON"),
        ("{not json", "line 1: not valid JSON"),
        ("[]", "expected a JSON object"),
        (b"\xff\xfe{}", "not UTF-8"),
    ],
)
def test_hostile_json_is_one_line(tmp_path, text, problem):
    path = tmp_path / "instances.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(AuditError) as excinfo:
        read_coco(path, root=tmp_path)
    message = _one_line_error(excinfo, str(path), problem)
    assert len(message) < 1000


def test_deeply_nested_attribute_is_bounded(tmp_path):
    data = copy.deepcopy(SCENE)
    text = json.dumps(data).replace('"iscrowd": 0}', '"iscrowd": 0, "occluded": ' + "[" * 900 + "]" * 900 + "}", 1)
    path = tmp_path / "instances.json"
    path.write_text(text)
    truth = read_coco(path, root=tmp_path, object_attributes=("occluded",), on_bad_annotation="skip")
    assert truth.skipped == ()
    assert truth.images[0].objects[0].attributes["occluded"] == "[" * 900 + "]" * 900  # compact JSON text


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(AuditError, match="annotation file not found"):
        read_coco(tmp_path / "none.json", root=tmp_path)
    with pytest.raises(AuditError, match="is a folder"):
        read_coco(tmp_path, root=tmp_path)


def test_unknown_mode_is_refused(tmp_path):
    with pytest.raises(AuditError, match="on_bad_annotation must be 'error' or 'skip'"):
        read_coco(_coco(tmp_path, SCENE), root=tmp_path, on_bad_annotation="ignore")


@pytest.mark.parametrize("file_name", ["../outside.png", "sub/../../outside.png", "/etc/hostname"])
def test_paths_leaving_the_root_are_refused(tmp_path, file_name):
    root = tmp_path / "data"
    root.mkdir()
    data = copy.deepcopy(SCENE)
    data["images"][1]["file_name"] = file_name
    path = _coco(root, data)
    with pytest.raises(AuditError) as excinfo:
        read_coco(path, root=root)
    _one_line_error(excinfo, str(path), "image 9", "outside the data root")
    truth = read_coco(path, root=root, allow_outside_root=True)
    assert truth.images[1].path == Path(os.path.realpath(root / file_name))


def test_symbolic_link_leaving_the_root_is_refused(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    _images(tmp_path, {"secret.png": (4, 4)})
    (root / "b.png").symlink_to(tmp_path / "secret.png")
    path = _coco(root, SCENE)
    with pytest.raises(AuditError, match="image 9: image path 'b.png' resolves to .* outside the data root"):
        read_coco(path, root=root)
    assert len(read_coco(path, root=root, data_root=tmp_path).images) == 2


def test_agrees_with_pycocotools(tmp_path):
    coco_module = pytest.importorskip("pycocotools.coco")
    import numpy as np

    rng = np.random.default_rng(5)
    images, annotations = [], []
    for i in range(30):
        width, height = int(rng.integers(50, 700)), int(rng.integers(50, 700))
        images.append({"id": 1000 + i, "file_name": f"img/{i}.jpg", "width": width, "height": height})
        for _ in range(int(rng.integers(0, 6))):
            x, y = float(rng.uniform(0, width - 2)), float(rng.uniform(0, height - 2))
            w, h = float(rng.uniform(0.5, width - x)), float(rng.uniform(0.5, height - y))
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": 1000 + i,
                    "category_id": int(rng.choice([2, 5, 11])),
                    "bbox": [x, y, w, h],
                    "area": float(w * h * rng.uniform(0.4, 1.0)),
                    "iscrowd": int(rng.random() < 0.1),
                }
            )
    categories = [{"id": 11, "name": "bus"}, {"id": 2, "name": "bicycle"}, {"id": 5, "name": "airplane"}]
    path = _coco(tmp_path, {"images": images, "annotations": annotations, "categories": categories})
    truth = read_coco(path, root=tmp_path)
    reference = coco_module.COCO(str(path))
    assert list(truth.category_ids) == sorted(reference.getCatIds())
    assert list(truth.class_names) == [reference.loadCats(c)[0]["name"] for c in sorted(reference.getCatIds())]
    assert [i.image_id for i in truth.images] == list(reference.imgs)
    for image in truth.images:
        refs = reference.loadAnns(reference.getAnnIds(imgIds=[image.image_id]))
        assert [o.annotation_id for o in image.objects] == [a["id"] for a in refs]
        for obj, ref in zip(image.objects, refs):
            x, y, w, h = ref["bbox"]
            assert obj.box == pytest.approx((x, y, x + w, y + h), abs=1e-9)
            assert obj.area == ref["area"] and obj.iscrowd == bool(ref["iscrowd"])
            assert truth.category_ids[obj.category] == ref["category_id"]


# ----------------------------------------------------------------------- YOLO


def _yolo(tmp_path: Path, labels: dict[str, str], names: str = "names: [person, car]\n") -> Path:
    folder = tmp_path / "yolo"
    _images(folder / "images", {"a.png": (100, 80), "b.png": (64, 48)})
    (folder / "labels").mkdir(parents=True, exist_ok=True)
    for name, text in labels.items():
        (folder / "labels" / name).write_text(text)
    (folder / "data.yaml").write_text(names)
    return folder


def _scene_labels() -> str:
    """The COCO scene's objects of a.png as YOLO lines (normalised centres and sizes)."""
    lines = []
    for ann in SCENE["annotations"]:
        x, y, w, h = ann["bbox"]
        cls = 0 if ann["category_id"] == 1 else 1
        lines.append(f"{cls} {(x + w / 2) / 100!r} {(y + h / 2) / 80!r} {w / 100!r} {h / 80!r}")
    return "\n".join(lines) + "\n"


def test_yolo_and_coco_give_the_same_boxes(tmp_path):
    folder = _yolo(tmp_path, {"a.txt": _scene_labels()})
    yolo = read_yolo(folder)
    coco = read_coco(_coco(tmp_path, SCENE), root=tmp_path)
    assert yolo.class_names == coco.class_names == ("person", "car")
    assert [i.file_name for i in yolo.images] == ["a.png", "b.png"]
    assert [(i.width, i.height) for i in yolo.images] == [(100, 80), (64, 48)]  # from the headers
    assert yolo.images[1].objects == ()  # no label file: no objects
    for got, want in zip(yolo.images[0].objects, coco.images[0].objects, strict=True):
        assert got.box == pytest.approx(want.box, abs=1e-6)
        assert got.category == want.category
    assert [o.annotation_id for o in yolo.images[0].objects] == [1, 2, 3]  # line numbers
    assert yolo.images[0].objects[0].area == pytest.approx(1200)


def test_yolo_names_as_mapping_and_nested_images(tmp_path):
    folder = _yolo(tmp_path, {}, names="path: .\nnames:\n  1: car\n  0: person\n")
    _images(folder / "images" / "val", {"c.jpg": (32, 16)})
    (folder / "labels" / "val").mkdir()
    (folder / "labels" / "val" / "c.txt").write_text("1 0.5 0.5 0.5 0.5\n\n")
    truth = read_yolo(folder)
    assert truth.class_names == ("person", "car")
    assert [i.file_name for i in truth.images] == ["a.png", "b.png", "val/c.jpg"]
    (obj,) = truth.images[2].objects
    assert obj.box == (8.0, 4.0, 24.0, 12.0) and obj.category == 1


BAD_LINES = {
    "class out of range": ("2 0.5 0.5 0.1 0.1", "class 2 is not a class index"),
    "negative class": ("-1 0.5 0.5 0.1 0.1", "class -1 is not a class index"),
    "class not integer": ("0.0 0.5 0.5 0.1 0.1", "class '0.0' is not an integer"),
    "centre above one": ("0 1.5 0.5 0.1 0.1", "cx 1.5 is outside [0, 1]"),
    "negative size": ("0 0.5 0.5 -0.1 0.1", "w -0.1 is outside [0, 1]"),
    "zero size": ("0 0.5 0.5 0 0.1", "non-positive width or height"),
    "edge past the image": ("0 0.95 0.5 0.2 0.1", "outside the image"),
    "four fields": ("0 0.5 0.5 0.1", "expected 5 fields"),
    "segment polygon": ("0 0.1 0.1 0.2 0.1 0.2 0.2", "expected 5 fields"),
    "not a number": ("0 0.5 x 0.1 0.1", "cy 'x' is not a number"),
    "nan": ("0 0.5 nan 0.1 0.1", "cy is 'nan'; it must be finite"),
}


@pytest.mark.parametrize("case", sorted(BAD_LINES))
def test_bad_yolo_line_is_one_line_naming_file_and_line(tmp_path, case):
    line, problem = BAD_LINES[case]
    folder = _yolo(tmp_path, {"a.txt": "0 0.5 0.5 0.2 0.2\n\n" + line + "\n"})
    with pytest.raises(AuditError) as excinfo:
        read_yolo(folder)
    _one_line_error(excinfo, str(folder), "labels/a.txt: line 3:", problem)
    truth = read_yolo(folder, on_bad_annotation="skip")
    assert len(truth.images[0].objects) == 1
    (skipped,) = truth.skipped
    assert skipped.id == "labels/a.txt: line 3" and problem in skipped.reason


def test_yolo_label_without_image(tmp_path):
    folder = _yolo(tmp_path, {"a.txt": "0 0.5 0.5 0.2 0.2\n", "zz.txt": "0 0.5 0.5 0.2 0.2\n"})
    with pytest.raises(AuditError, match="labels/zz.txt: has no image of the same name"):
        read_yolo(folder)
    assert [s.id for s in read_yolo(folder, on_bad_annotation="skip").skipped] == ["labels/zz.txt"]


ALIAS_BOMB = (
    "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
    + "".join(f"a{k}: &a{k} [{', '.join([f'*a{k - 1}'] * 10)}]\n" for k in range(1, 7))
    + "names: [p]\n"
)


@pytest.mark.parametrize(
    ("yaml_text", "problem"),
    [
        ("nc: 2\n", "key 'names' is missing"),
        ("names: []\n", "must be a non-empty list"),
        ("names: {0: a, 2: b}\n", "keys must be the class indices 0..1"),
        ("names: [a, a]\n", "class name 'a' appears twice"),
        ("names: [a, '']\n", "names[1] must be a non-empty string"),
        (ALIAS_BOMB, "alias bomb"),
        ("names: [" * 100 + "]" * 100, "nested deeper"),
    ],
)
def test_bad_data_yaml(tmp_path, yaml_text, problem):
    folder = _yolo(tmp_path, {}, names=yaml_text)
    with pytest.raises(AuditError) as excinfo:
        read_yolo(folder)
    _one_line_error(excinfo, "data.yaml", problem)


def test_yolo_missing_parts(tmp_path):
    with pytest.raises(AuditError, match="no 'images' folder"):
        read_yolo(tmp_path)
    folder = _yolo(tmp_path, {})
    (folder / "data.yaml").unlink()
    with pytest.raises(AuditError, match="data.yaml not found"):
        read_yolo(folder)


def test_yolo_pixel_limit_and_unreadable_image(tmp_path):
    folder = _yolo(tmp_path, {})
    with pytest.raises(AuditError, match=r"images: a.png: image is 100x80 = 8000 pixels, more than max_image_pixels"):
        read_yolo(folder, max_image_pixels=5000)
    (folder / "images" / "c.png").write_bytes(b"not a png")
    with pytest.raises(AuditError, match="images: c.png: not a readable image"):
        read_yolo(folder)


def test_yolo_exif_orientation_swaps_the_size(tmp_path):
    folder = _yolo(tmp_path, {"d.txt": "0 0.5 0.5 1 1\n"})
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90°: the image shown is 20 wide, 40 high
    Image.new("RGB", (40, 20)).save(folder / "images" / "d.jpg", exif=exif)
    ignored = read_yolo(folder).images[2]
    applied = read_yolo(folder, exif="apply").images[2]
    assert (ignored.width, ignored.height, applied.width, applied.height) == (40, 20, 20, 40)
    assert applied.objects[0].box == (0.0, 0.0, 20.0, 40.0)


def test_yolo_oversized_label_file(tmp_path, monkeypatch):
    import audit.evaluation.detection.annotations as annotations

    folder = _yolo(tmp_path, {"a.txt": "0 0.5 0.5 0.2 0.2\n" * 10})
    monkeypatch.setattr(annotations, "MAX_LABEL_BYTES", 50)
    with pytest.raises(AuditError, match="labels/a.txt: label file is 180 bytes; at most 50 bytes are read"):
        read_yolo(folder)


def test_yolo_image_link_leaving_the_root_is_refused(tmp_path):
    folder = _yolo(tmp_path, {})
    _images(tmp_path, {"secret.png": (4, 4)})
    (folder / "images" / "s.png").symlink_to(tmp_path / "secret.png")
    with pytest.raises(AuditError, match="images: s.png: image path 'images/s.png' resolves to .* outside the data"):
        read_yolo(folder)
    assert len(read_yolo(folder, data_root=tmp_path).images) == 3


# ----------------------------------------------------------------------- manifest join


def _manifest(folder: Path, text: str, name: str = "manifest.csv") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def test_join_manifest_attaches_columns_by_resolved_path(tmp_path):
    truth = read_coco(_coco(tmp_path, SCENE), root=tmp_path)
    manifest = _manifest(tmp_path, "path,camera,consent\n./b.png,night,yes\nsub/../a.png,day,\n")
    seen = []
    joined = join_manifest(truth, manifest, on_chunk=seen.append)
    assert [i.image_id for i in joined.images] == [7, 9]  # the annotation file's order
    assert joined.images[0].attributes == {"camera": "day", "consent": "<missing>"}
    assert joined.images[1].attributes == {"camera": "night", "consent": "yes"}
    assert joined.images[0].objects == truth.images[0].objects
    assert sum(len(c) for c in seen) == 2
    only = join_manifest(truth, manifest, columns=["camera"])
    assert only.images[1].attributes == {"camera": "night"}


def test_join_manifest_from_another_folder(tmp_path):
    (tmp_path / "images").mkdir()
    truth = read_coco(_coco(tmp_path, SCENE), root=tmp_path / "images")
    manifest = _manifest(
        tmp_path, json.dumps([{"file": "images/a.png", "n": 3}, {"file": "images/b.png", "n": None}]), "m.json"
    )
    joined = join_manifest(truth, manifest, path_column="file")
    assert [i.attributes["n"] for i in joined.images] == ["3", "<missing>"]


def test_join_manifest_unmatched_image_and_row(tmp_path):
    truth = read_coco(_coco(tmp_path, SCENE), root=tmp_path)
    missing_b = _manifest(tmp_path, "path,camera\na.png,day\n", "m1.csv")
    with pytest.raises(AuditError) as excinfo:
        join_manifest(truth, missing_b)
    _one_line_error(excinfo, str(missing_b), "image 9:", "'b.png'", "is not in the manifest")
    skipped = join_manifest(truth, missing_b, on_bad_annotation="skip")
    assert [i.image_id for i in skipped.images] == [7]
    assert [(s.id, s.source) for s in skipped.skipped] == [("image 9", str(missing_b))]
    extra_row = _manifest(tmp_path, "path,camera\na.png,day\nb.png,day\nc.png,dusk\n", "m2.csv")
    with pytest.raises(AuditError) as excinfo:
        join_manifest(truth, extra_row)
    _one_line_error(excinfo, str(extra_row), "line 4:", "'c.png' is not an image of")
    assert len(join_manifest(truth, extra_row, on_bad_annotation="skip").images) == 2


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("path,camera\na.png,day\n./a.png,night\nb.png,day\n", "line 3: image './a.png' is already listed at line 2"),
        ("file,camera\na.png,day\n", "line 2: column 'path' is missing"),
        ("path,camera\n,day\n", "line 2: empty path"),
        ("path,camera\n", "the manifest is empty"),
    ],
)
def test_join_manifest_bad_rows(tmp_path, text, problem):
    truth = read_coco(_coco(tmp_path, SCENE), root=tmp_path)
    manifest = _manifest(tmp_path, text)
    with pytest.raises(AuditError) as excinfo:
        join_manifest(truth, manifest, on_bad_annotation="skip")
    _one_line_error(excinfo, str(manifest), problem)


def test_join_manifest_missing_named_column(tmp_path):
    truth = read_coco(_coco(tmp_path, SCENE), root=tmp_path)
    manifest = _manifest(tmp_path, "path,camera\na.png,day\nb.png,day\n")
    with pytest.raises(AuditError, match="line 2: column 'lighting' is missing"):
        join_manifest(truth, manifest, columns=["lighting"])


def test_join_manifest_works_for_yolo(tmp_path):
    folder = _yolo(tmp_path, {"a.txt": _scene_labels()})
    manifest = _manifest(folder, "path,camera\nimages/a.png,day\nimages/b.png,night\n")
    joined = join_manifest(read_yolo(folder), manifest)
    assert isinstance(joined, GroundTruth)
    assert [i.attributes["camera"] for i in joined.images] == ["day", "night"]


def test_unresolvable_file_name_is_one_line(tmp_path):
    data = copy.deepcopy(SCENE)
    data["images"][1]["file_name"] = "b\x00.png"
    path = _coco(tmp_path, data)
    with pytest.raises(AuditError) as excinfo:
        read_coco(path, root=tmp_path)
    _one_line_error(excinfo, str(path), "image 9: image path", "cannot be resolved")


def test_yolo_two_images_with_one_label_name(tmp_path):
    folder = _yolo(tmp_path, {})
    _images(folder / "images", {"a.jpg": (10, 10)})
    with pytest.raises(AuditError, match=r"'a.png': another image has the same name; labels/a.txt is ambiguous"):
        read_yolo(folder)
