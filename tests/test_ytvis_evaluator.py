"""YTVISEvaluator: process/evaluate on a registered tiny dataset; atomic results.json + flat results.zip."""
import json
import math
import os
import zipfile

import numpy as np
import pytest
from pycocotools import mask as mask_util

from stmask_d2.evaluation import YTVISEvaluator


def rle(m, as_bytes=False):
    r = mask_util.encode(np.asfortranarray(np.asarray(m, dtype=np.uint8)))
    if not as_bytes:
        r["counts"] = r["counts"].decode("ascii")
    return r


def box(y0, y1, x0, x1, h=12, w=16):
    m = np.zeros((h, w), np.uint8)
    m[y0:y1, x0:x1] = 1
    return m


A, B = box(0, 6, 0, 8), box(4, 12, 6, 16)


def _register(name, json_file, tmp_path):
    from detectron2.data import DatasetCatalog, MetadataCatalog

    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    # dataset ids 3 and 7 -> contiguous 0 and 1
    meta = {"thing_classes": ["cat", "dog"], "thing_dataset_id_to_contiguous_id": {3: 0, 7: 1}}
    try:
        from stmask_d2.data.ytvis import register_ytvis_instances

        register_ytvis_instances(name, meta, str(json_file), str(tmp_path))
    except ImportError:  # pragma: no cover - data package not ready
        DatasetCatalog.register(name, lambda: [])
        MetadataCatalog.get(name).set(json_file=str(json_file), image_root=str(tmp_path), evaluator_type="ytvis",
                                      **meta)


def _gt(with_annotations=True):
    gt = {
        "videos": [{"id": 5, "height": 12, "width": 16, "length": 2, "file_names": ["a/0.jpg", "a/5.jpg"]},
                   {"id": 6, "height": 12, "width": 16, "length": 2, "file_names": ["b/0.jpg", "b/5.jpg"]}],
        "categories": [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}],
    }
    if with_annotations:
        gt["annotations"] = [
            {"id": 1, "video_id": 5, "category_id": 3, "iscrowd": 0, "segmentations": [rle(A), rle(A)],
             "areas": [48.0, 48.0]},
            {"id": 2, "video_id": 6, "category_id": 7, "iscrowd": 0, "segmentations": [None, rle(B)],
             "areas": [None, 80.0]},
        ]
    return gt


def _run(evaluator):
    evaluator.reset()
    # video 5: contiguous class 0 (= dataset 3), perfect; RLE counts as bytes (as pycocotools returns them)
    evaluator.process(
        [{"video_id": 5, "length": 2}],
        [{"video_id": 5, "length": 2, "tracks": [
            {"track_id": 1, "score": 0.9, "category_id": 0, "segmentations": [rle(A, True), rle(A, True)]}]}],
    )
    # video 6: contiguous class 1 (= dataset 7), perfect, plus a low-score wrong-class track
    evaluator.process(
        [{"video_id": 6, "length": 2}],
        [{"video_id": 6, "length": 2, "tracks": [
            {"track_id": 1, "score": 0.2, "category_id": 0, "segmentations": [rle(A), None]},
            {"track_id": 2, "score": 0.8, "category_id": 1, "segmentations": [None, rle(B)]}]}],
    )
    return evaluator.evaluate()


def test_evaluator_with_annotations(tmp_path):
    gp = tmp_path / "gt.json"
    gp.write_text(json.dumps(_gt()))
    _register("_test_ytvis_eval_ann", gp, tmp_path)
    out_dir = tmp_path / "out"
    ev = YTVISEvaluator("_test_ytvis_eval_ann", output_dir=str(out_dir), distributed=False, hota=True)
    res = _run(ev)
    segm = res["segm"]
    # class 3: TP (0.9, video 5) then FP (0.2, video 6) -> precision 1 at recall 1 -> 100; class 7 perfect
    assert segm["AP"] == pytest.approx(100.0)
    assert segm["AR10"] == pytest.approx(100.0)
    assert math.isnan(segm["APl"])  # no large GT -> undefined
    for k in ("HOTA", "DetA", "AssA"):
        assert 0 <= segm[k] <= 100
    # files: results.json with dataset ids and str counts; zip with results.json at the root; no temp files left
    results = json.loads((out_dir / "results.json").read_text())
    assert sorted(r["category_id"] for r in results) == [3, 3, 7]
    assert all(isinstance(s["counts"], str) for r in results for s in r["segmentations"] if s)
    with zipfile.ZipFile(out_dir / "results.zip") as z:
        assert z.namelist() == ["results.json"]
        assert json.loads(z.read("results.json")) == results
    assert sorted(os.listdir(out_dir)) == ["results.json", "results.zip"]


def test_evaluator_without_annotations(tmp_path, caplog):
    gp = tmp_path / "gt_test.json"
    gp.write_text(json.dumps(_gt(with_annotations=False)))
    _register("_test_ytvis_eval_noann", gp, tmp_path)
    ev = YTVISEvaluator("_test_ytvis_eval_noann", output_dir=str(tmp_path / "o"), distributed=False)
    import logging

    with caplog.at_level(logging.INFO):
        assert _run(ev) == {}
    assert (tmp_path / "o" / "results.zip").is_file()
    assert "results.zip" in caplog.text


def test_max_tracks_and_length_padding(tmp_path):
    gp = tmp_path / "gt.json"
    gp.write_text(json.dumps(_gt()))
    _register("_test_ytvis_eval_cap", gp, tmp_path)
    ev = YTVISEvaluator("_test_ytvis_eval_cap", output_dir=str(tmp_path / "o"), distributed=False,
                        max_tracks_per_video=2)
    tracks = [{"track_id": i, "score": s, "category_id": 0, "segmentations": [rle(A)]} for i, s in
              enumerate([0.1, 0.9, 0.5])]
    ev.process([{"video_id": 5, "length": 2}], [{"video_id": 5, "length": 2, "tracks": tracks}])
    ev.evaluate()
    results = json.loads((tmp_path / "o" / "results.json").read_text())
    assert [r["score"] for r in results] == [0.9, 0.5]
    assert all(len(r["segmentations"]) == 2 and r["segmentations"][1] is None for r in results)
