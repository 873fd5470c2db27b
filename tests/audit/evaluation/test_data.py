"""Data loading: manifests, ImageFolder, npz; image conversions; bad input."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from audit.contract.config import DataConfig, ModelConfig
from audit.contract.errors import AuditError, CvauditError
from audit.evaluation.data import AuditDataset, collate, make_loader, read_samples, to_float_array

MODEL = ModelConfig(path="m.pt", input_size=(16, 16))


def _png(path, arr, mode=None):
    Image.fromarray(arr, mode=mode).save(path)


def test_manifest_csv_and_conversions(tmp_path):
    _png(tmp_path / "gray.png", np.full((8, 8), 128, np.uint8))
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[..., 3] = 0  # fully transparent -> white background
    _png(tmp_path / "rgba.png", rgba)
    Image.fromarray(np.full((8, 8), 65535, np.uint16)).save(tmp_path / "deep.png")
    (tmp_path / "m.csv").write_text("path,label,camera\ngray.png,0,A\nrgba.png,1,\ndeep.png,1,B\n")
    table = read_samples(DataConfig(manifest=tmp_path / "m.csv", attributes=["camera"]), class_names=None)
    assert table.ids.tolist() == ["gray.png", "rgba.png", "deep.png"]
    assert table.attributes["camera"].tolist() == ["A", "<missing>", "B"]
    ds = AuditDataset(table, MODEL)
    gray, rgba_t, deep = (ds[i]["image"] for i in range(3))
    assert gray.shape == (3, 16, 16) and torch.allclose(gray, torch.full_like(gray, 128 / 255))
    assert torch.allclose(rgba_t, torch.ones_like(rgba_t))
    assert torch.allclose(deep, torch.ones_like(deep))


def test_sixteen_bit_scaling():
    img = Image.fromarray(np.full((4, 4), 32768, np.uint16))
    assert np.allclose(to_float_array(img), 32768 / 65535)


def test_jsonl_manifest_with_class_names(tmp_path):
    _png(tmp_path / "a.png", np.zeros((4, 4, 3), np.uint8))
    (tmp_path / "m.jsonl").write_text(json.dumps({"sample_id": "s1", "path": "a.png", "label": "dog"}) + "\n")
    table = read_samples(DataConfig(manifest=tmp_path / "m.jsonl"), class_names=["cat", "dog"])
    assert table.ids.tolist() == ["s1"] and table.labels.tolist() == [1]


def test_image_folder(tmp_path):
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        _png(tmp_path / cls / "x.png", np.zeros((4, 4, 3), np.uint8))
    table = read_samples(DataConfig(images=tmp_path), class_names=None)
    assert table.class_names == ["cat", "dog"] and table.labels.tolist() == [0, 1]
    assert table.ids.tolist() == ["cat/x.png", "dog/x.png"]


def test_npz(tmp_path):
    np.savez(
        tmp_path / "d.npz",
        images=np.zeros((3, 8, 8), np.uint8),
        labels=np.array([0, 1, 2]),
        site=np.array(["x", "y", "x"]),
    )
    table = read_samples(DataConfig(npz=tmp_path / "d.npz", attributes=["site"]), class_names=None)
    ds = AuditDataset(table, MODEL)
    assert ds[1]["image"].shape == (3, 16, 16) and table.attributes["site"].tolist() == ["x", "y", "x"]


def test_loader_streams_and_reports_bad_images(tmp_path):
    _png(tmp_path / "ok.png", np.zeros((4, 4, 3), np.uint8))
    (tmp_path / "bad.png").write_bytes(b"not an image")
    (tmp_path / "m.csv").write_text("path,label\nok.png,0\nbad.png,0\nmissing.png,0\n")
    table = read_samples(DataConfig(manifest=tmp_path / "m.csv"), class_names=None)
    batches = list(make_loader(AuditDataset(table, MODEL), batch_size=2, num_workers=0))
    assert [b["index"].tolist() for b in batches] == [[0], []]
    bad = [reason for b in batches for _, reason in b["bad"]]
    assert "corrupt" in bad[0] and "not found" in bad[1]


@pytest.mark.parametrize(
    "manifest, expected",
    [
        ("path,label\n", "empty"),
        ("path,camera\na.png,A\n", "column 'label' is missing"),
        ("path,label\na.png,zebra\n", "label 'zebra'"),
        ("path,label\na.png,0\na.png,1\n", "appears more than once"),
        ("path,label\na.png,0\n", "attribute column 'camera' is missing"),
        ("path,label\na.png,0,extra\n", "line 2: expected 2 fields, got 3"),
        ("path,label,camera\na.png,0\n", "line 2: expected 3 fields, got 2"),
    ],
)
def test_bad_manifests(tmp_path, manifest, expected):
    (tmp_path / "m.csv").write_text(manifest)
    attrs = ["camera"] if "attribute" in expected or "3 fields" in expected else []
    with pytest.raises(CvauditError, match=expected) as err:
        read_samples(DataConfig(manifest=tmp_path / "m.csv", attributes=attrs), class_names=None)
    assert str(tmp_path / "m.csv") in str(err.value)


def test_missing_manifest(tmp_path):
    with pytest.raises(CvauditError, match="manifest not found"):
        read_samples(DataConfig(manifest=tmp_path / "none.csv"), class_names=None)


def test_collate_keeps_good_images():
    out = collate([{"index": 0, "image": torch.zeros(3, 2, 2), "size": (5, 4)}, {"index": 1, "error": "boom"}])
    assert out["index"].tolist() == [0] and out["bad"] == [(1, "boom")]
    assert out["sizes"].tolist() == [[5, 4]]  # the decoded size (width, height) of each good image


def test_image_folder_follows_class_names(tmp_path):
    for cls in ("blue", "green", "red"):
        (tmp_path / cls).mkdir()
        _png(tmp_path / cls / "x.png", np.zeros((4, 4, 3), np.uint8))
    table = read_samples(DataConfig(images=tmp_path), class_names=["red", "green", "blue"])
    assert dict(zip(table.ids, table.labels.tolist())) == {"blue/x.png": 2, "green/x.png": 1, "red/x.png": 0}
    with pytest.raises(AuditError, match="class folder 'blue' is not in model.class_names"):
        read_samples(DataConfig(images=tmp_path), class_names=["red", "green"])


def test_labels_are_all_names_or_all_integers(tmp_path):
    (tmp_path / "m.csv").write_text("path,label\na.png,0\nb.png,1\nc.png,2\n")
    table = read_samples(DataConfig(manifest=tmp_path / "m.csv"), class_names=["1", "2", "3"])
    assert table.labels.tolist() == [0, 1, 2]  # integers, because "0" is not a class name
    table = read_samples(DataConfig(manifest=tmp_path / "m.csv"), class_names=["0", "2", "1"])
    assert table.labels.tolist() == [0, 2, 1]  # every label is a class name: names win


def test_bom_and_jsonl_line_numbers(tmp_path):
    (tmp_path / "m.csv").write_bytes("\ufeffsample_id,path,label\ns1,a.png,0\n".encode("utf-8"))
    assert read_samples(DataConfig(manifest=tmp_path / "m.csv"), class_names=None).ids.tolist() == ["s1"]
    (tmp_path / "m.jsonl").write_text('{"path": "a.png", "label": 0}\n\n{"path": "b.png", "label": null}\n')
    with pytest.raises(AuditError, match="line 3 .*label ''"):
        read_samples(DataConfig(manifest=tmp_path / "m.jsonl"), class_names=None)
    (tmp_path / "m.jsonl").write_text('{"path": "a.png", "label": 0}\n{"path": "b.png"}\n')
    with pytest.raises(AuditError, match="line 2: column 'label' is missing"):
        read_samples(DataConfig(manifest=tmp_path / "m.jsonl"), class_names=None)


def test_explicit_id_column_must_exist(tmp_path):
    (tmp_path / "m.csv").write_text("path,label\na.png,0\n")
    with pytest.raises(AuditError, match="data.id_column 'uid' is not a column"):
        read_samples(DataConfig(manifest=tmp_path / "m.csv", id_column="uid"), class_names=None)


def test_float_images_out_of_range_are_bad_images_not_clipped(tmp_path):
    Image.fromarray(np.full((4, 4), 200.0, np.float32), mode="F").save(tmp_path / "f.tif")
    (tmp_path / "m.csv").write_text("path,label\nf.tif,0\n")
    table = read_samples(DataConfig(manifest=tmp_path / "m.csv"), class_names=None)
    assert "outside [0, 1]" in AuditDataset(table, MODEL)[0]["error"]
    np.savez(tmp_path / "d.npz", images=np.full((1, 4, 4), np.nan, np.float32), labels=np.array([0]))
    table = read_samples(DataConfig(npz=tmp_path / "d.npz"), class_names=None)
    assert "NaN" in AuditDataset(table, MODEL)[0]["error"]


@pytest.mark.parametrize(
    "arrays, expected",
    [
        ({"images": np.zeros((2, 4, 4)), "labels": np.array([0.7, 1.0])}, "1-D array of integers"),
        ({"images": np.zeros((2, 4, 4)), "labels": np.eye(2)}, "1-D array of integers"),
        ({"images": np.zeros((2, 4, 4, 4)), "labels": np.array([0, 1])}, "C = 1 or 3"),
        (
            {"images": np.zeros((2, 4, 4)), "labels": np.array([0, 1]), "site": np.array(["x"])},
            "attribute 'site' has shape",
        ),
    ],
)
def test_bad_npz(tmp_path, arrays, expected):
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(AuditError, match=expected):
        read_samples(
            DataConfig(npz=tmp_path / "d.npz", attributes=["site"] if "site" in arrays else []), class_names=None
        )
