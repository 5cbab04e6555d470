"""load_ytvis_json / register_ytvis_instances / builtin splits: every accepted JSON form and clear errors."""
import argparse
import json
import os

import numpy as np
import pycocotools.mask as mask_util
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from stmask_d2.data import (
    YTVISFormatError,
    add_register_ytvis_argument,
    load_ytvis_json,
    register_ytvis_from_args,
    register_ytvis_instances,
)
from stmask_d2.data import builtin

H, W = 8, 10


def _mask(x0, y0, x1, y1):
    m = np.zeros((H, W), np.uint8)
    m[y0:y1, x0:x1] = 1
    return m


def _uncompressed(m):
    flat = m.T.reshape(-1)
    counts, cur, run = [], 0, 0
    for v in flat:
        if v != cur:
            counts.append(run)
            cur, run = v, 0
        run += 1
    counts.append(run)
    return {"size": [H, W], "counts": [int(c) for c in counts]}


def _compressed(m):
    r = mask_util.encode(np.asfortranarray(m))
    return {"size": [H, W], "counts": r["counts"].decode()}


def _data(**over):
    m = _mask(2, 1, 6, 5)
    data = {
        "info": {}, "licenses": [],
        "videos": [{"id": 3, "width": W, "height": H, "length": 3, "file_names": ["v/0.jpg", "v/1.jpg", "v/2.jpg"]}],
        "categories": [{"id": 7, "name": "b"}, {"id": 2, "name": "a"}],
        "annotations": [
            {"id": 11, "video_id": 3, "category_id": 7, "iscrowd": 0,
             "segmentations": [_uncompressed(m), None, _compressed(m)],
             "bboxes": [[2, 1, 4, 4], None, None], "areas": [16, None, None]},
            {"id": 12, "video_id": 3, "category_id": 2, "iscrowd": 0,
             "segmentations": [None, [[0, 0, 4, 0, 4, 3, 0, 3]], _compressed(_mask(5, 5, 9, 8))],
             "bboxes": None, "areas": None},
        ],
    }
    data.update(over)
    return data


def _write(tmp_path, data, name="a.json"):
    p = tmp_path / name
    p.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return str(p)


def test_all_forms(tmp_path):
    vids = load_ytvis_json(_write(tmp_path, _data()), str(tmp_path / "img"))
    assert len(vids) == 1
    v = vids[0]
    assert (v["video_id"], v["height"], v["width"], v["length"]) == (3, H, W, 3)
    assert v["file_names"][1] == os.path.abspath(str(tmp_path / "img" / "v/1.jpg"))
    f0, f1, f2 = v["annotations"]
    assert [a["id"] for a in f0] == [11] and [a["id"] for a in f1] == [12] and [a["id"] for a in f2] == [11, 12]
    a = f0[0]
    assert a["category_id"] == 1 and a["bbox_mode"] == BoxMode.XYWH_ABS and a["iscrowd"] == 0
    assert isinstance(a["segmentation"]["counts"], str)  # uncompressed -> compressed
    rle = dict(a["segmentation"], counts=a["segmentation"]["counts"].encode())
    assert (mask_util.decode(rle) == _mask(2, 1, 6, 5)).all()
    assert f1[0]["category_id"] == 0 and isinstance(f1[0]["segmentation"], list)
    assert f1[0]["bbox"] == [0, 0, 4, 3]  # derived from the polygon
    assert f2[0]["bbox"] == [2, 1, 4, 4]  # derived from the RLE
    assert f2[1]["bbox"] == [5, 5, 4, 3]


def test_no_annotations_forms(tmp_path):
    d = _data()
    del d["annotations"]
    assert "annotations" not in load_ytvis_json(_write(tmp_path, d), "")[0]  # YTVIS valid/test
    v = load_ytvis_json(_write(tmp_path, _data(annotations=None), "b.json"), "")[0]  # OVIS valid/test
    assert "annotations" not in v


def test_zero_area_dropped_from_frame_only(tmp_path, caplog):
    d = _data()
    d["annotations"][0]["bboxes"] = [[2, 1, 0, 4], None, None]
    v = load_ytvis_json(_write(tmp_path, d), "")[0]
    assert v["annotations"][0] == [] and [a["id"] for a in v["annotations"][2]] == [11, 12]
    empty = _data()
    empty["annotations"][1]["segmentations"][2] = _compressed(np.zeros((H, W), np.uint8))
    v = load_ytvis_json(_write(tmp_path, empty, "e.json"), "")[0]
    assert [a["id"] for a in v["annotations"][2]] == [11]


def test_metadata_from_json(tmp_path):
    name = "test_ytvis_meta_from_json"
    load_ytvis_json(_write(tmp_path, _data()), "", dataset_name=name)
    meta = MetadataCatalog.get(name)
    assert meta.thing_classes == ["a", "b"] and meta.thing_dataset_id_to_contiguous_id == {2: 0, 7: 1}


def test_metadata_preset_is_used(tmp_path):
    name = "test_ytvis_meta_preset"
    MetadataCatalog.get(name).set(thing_classes=["x", "a", "y", "b"],
                                  thing_dataset_id_to_contiguous_id={1: 0, 2: 1, 5: 2, 7: 3})
    v = load_ytvis_json(_write(tmp_path, _data()), "", dataset_name=name)[0]
    assert v["annotations"][0][0]["category_id"] == 3


def _bad(**kw):
    d = _data()
    for path, value in kw.items():
        obj = d
        keys = path.split(".")
        for k in keys[:-1]:
            obj = obj[int(k)] if k.isdigit() else obj[k]
        last = keys[-1]
        if value is KeyError:
            del obj[int(last) if last.isdigit() else last]
        else:
            obj[int(last) if last.isdigit() else last] = value
    return d


@pytest.mark.parametrize("data, words", [
    (_bad(**{"annotations.0.segmentations": [None, None]}), ["annotation id 11", "2 entries", "3 frames"]),
    (_bad(**{"annotations.0.category_id": 99}), ["annotation id 11", "unknown category_id 99"]),
    (_bad(**{"videos.0.file_names": KeyError}), ["video id 3", "file_names"]),
    (_bad(**{"videos.0.length": 5}), ["video id 3", "length"]),
    (_bad(**{"annotations.1.video_id": 42}), ["annotation id 12", "video_id"]),
    (_bad(**{"annotations.0.segmentations": KeyError}), ["annotation id 11", "segmentations"]),
    (_bad(**{"annotations.0.bboxes": [[1, 2, 3, 4]]}), ["annotation id 11", "bboxes"]),
    (_bad(**{"annotations.0.segmentations.1": {"size": [3, 3], "counts": [9]}}), ["annotation id 11", "size"]),
    (_bad(**{"annotations.1.id": 11}), ["annotation id 11", "duplicate"]),
    (_bad(categories=KeyError), ["categories"]),
    (_bad(categories=[{"id": 7, "name": "b"}, {"id": "2", "name": "a"}]), ["category", '"id" must be an integer']),
    (_bad(videos=KeyError), ["videos"]),
    ('{"videos": [', ["not valid JSON"]),
])
def test_malformed_clear_error(tmp_path, data, words):
    path = _write(tmp_path, data)
    with pytest.raises(YTVISFormatError) as e:
        load_ytvis_json(path, "")
    msg = str(e.value)
    assert path in msg
    for w in words:
        assert w in msg, msg


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        load_ytvis_json(str(tmp_path / "nope.json"), "")


def test_register_and_reregister(tmp_path):
    path = _write(tmp_path, _data())
    register_ytvis_instances("test_ytvis_reg", {}, path, str(tmp_path))
    register_ytvis_instances("test_ytvis_reg", {}, path, str(tmp_path))  # same args: no-op
    meta = MetadataCatalog.get("test_ytvis_reg")
    assert meta.evaluator_type == "ytvis" and meta.json_file == path and meta.image_root == str(tmp_path)
    assert len(DatasetCatalog.get("test_ytvis_reg")) == 1
    assert MetadataCatalog.get("test_ytvis_reg").thing_classes == ["a", "b"]
    with pytest.raises(ValueError, match="already registered"):
        register_ytvis_instances("test_ytvis_reg", {}, str(tmp_path / "other.json"), str(tmp_path))


def test_builtin_splits(monkeypatch, tmp_path):
    names = DatasetCatalog.list()
    for split in ["ytvis_2019_train", "ytvis_2019_val", "ytvis_2019_test", "ytvis_2021_train", "ytvis_2021_val",
                  "ytvis_2021_test", "ovis_train", "ovis_val", "ovis_test", "ytvis_2019_train_sub",
                  "ytvis_2019_valid_sub", "ytvis_2021_train_sub", "ytvis_2021_valid_sub", "ovis_train_sub",
                  "ovis_valid_sub", "synthetic_vis_train", "synthetic_vis_train_sub", "synthetic_vis_valid_sub"]:
        assert split in names
        assert MetadataCatalog.get(split).evaluator_type == "ytvis"
    assert len(MetadataCatalog.get("ytvis_2019_train").thing_classes) == 40
    assert MetadataCatalog.get("ytvis_2021_val").thing_classes[2] == "bird"
    assert MetadataCatalog.get("ovis_train").thing_classes[-1] == "Vehical"
    assert MetadataCatalog.get("ytvis_2019_valid_sub").image_root.endswith("ytvis_2019/train/JPEGImages")
    builtin.register_all_ytvis()  # second registration: no crash
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    builtin.register_all_ytvis()  # new root re-points
    assert MetadataCatalog.get("ovis_train").json_file == str(tmp_path / "ovis/annotations_train.json")
    with pytest.raises(FileNotFoundError, match="annotations_train.json"):
        DatasetCatalog.get("ovis_train")
    monkeypatch.delenv("DETECTRON2_DATASETS")
    builtin.register_all_ytvis()
    assert MetadataCatalog.get("ovis_train").thing_classes[0] == "Person"


def test_register_from_args(tmp_path):
    parser = add_register_ytvis_argument(argparse.ArgumentParser())
    path = _write(tmp_path, _data())
    args = parser.parse_args(["--register-ytvis", "test_ytvis_args_a", path, str(tmp_path),
                              "--register-ytvis", "test_ytvis_args_b", path, str(tmp_path)])
    assert register_ytvis_from_args(args) == ["test_ytvis_args_a", "test_ytvis_args_b"]
    assert len(DatasetCatalog.get("test_ytvis_args_b")) == 1
    args = parser.parse_args(["--register-ytvis", "test_ytvis_args_c", str(tmp_path / "no.json"), str(tmp_path)])
    with pytest.raises(FileNotFoundError, match="no.json"):
        register_ytvis_from_args(args)
    assert register_ytvis_from_args(parser.parse_args([])) == []


def test_rle_runs_decodes_like_pycocotools_and_names_defects():
    from stmask_d2.utils.rle import rle_runs, rle_total

    rng = np.random.RandomState(0)
    for _ in range(20):
        m = (rng.rand(H, W) < rng.rand()).astype(np.uint8)
        runs = rle_runs(_compressed(m)["counts"])
        assert runs.tolist() == _uncompressed(m)["counts"]  # the same runs as the uncompressed form
        assert rle_total(_compressed(m)["counts"].encode()) == H * W
    for counts, defect in [("0~", "invalid character '~'"), ("0é", "invalid character 'é'"), ("01P", "truncated"),
                           ("P" * 13 + "0", "more than 60 bits"), ("@", "negative")]:
        with pytest.raises(ValueError, match=defect):
            rle_runs(counts)
        assert rle_total(counts) == -1
    assert rle_runs("").tolist() == [] and rle_total([3, 4]) == 7 and rle_total([3, -1]) == -1
