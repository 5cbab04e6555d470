"""datasets/prepare_ytvis_split.py (library: stmask_d2.data.split): reproducible split by video, annotations follow
their videos."""
import json
from pathlib import Path

import pytest

from stmask_d2.data import split


def _train(n=20):
    return {
        "info": {"x": 1}, "licenses": [{"id": 1}], "categories": [{"id": 1, "name": "a"}],
        "videos": [{"id": i, "height": 2, "width": 2, "length": 1, "file_names": [f"v{i}/0.jpg"]}
                   for i in range(1, n + 1)],
        "annotations": [{"id": 100 + i, "video_id": i, "category_id": 1, "segmentations": [None]}
                        for i in range(1, n + 1)],
    }


def test_split(tmp_path):
    src = tmp_path / "train.json"
    src.write_text(json.dumps(_train()))
    tr, va = split.split_ytvis_json(str(src))
    assert (tr, va) == (str(tmp_path / "train_sub.json"), str(tmp_path / "valid_sub.json"))
    t, v = json.loads(Path(tr).read_text()), json.loads(Path(va).read_text())
    tv, vv = {x["id"] for x in t["videos"]}, {x["id"] for x in v["videos"]}
    assert len(vv) == 2 and len(tv) == 18 and not tv & vv
    assert {a["video_id"] for a in v["annotations"]} == vv and {a["video_id"] for a in t["annotations"]} == tv
    assert t["categories"] == v["categories"] == _train()["categories"] and v["info"] == {"x": 1}
    assert v["videos"][0]["file_names"][0].startswith("v")  # paths untouched
    # reproducible, seed-dependent, CLI
    split.main([str(src), "--out-dir", str(tmp_path / "again")])
    assert json.loads((tmp_path / "again" / "valid_sub.json").read_text()) == v
    _, va3 = split.split_ytvis_json(str(src), str(tmp_path / "s5"), seed=5)
    assert {x["id"] for x in json.loads(Path(va3).read_text())["videos"]} != vv
    _, va4 = split.split_ytvis_json(str(src), str(tmp_path / "f"), valid_fraction=0.25)
    assert len(json.loads(Path(va4).read_text())["videos"]) == 5


def test_split_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        split.split_ytvis_json(str(tmp_path / "none.json"))
    d = _train()
    d["annotations"] = None
    (tmp_path / "valid.json").write_text(json.dumps(d))
    with pytest.raises(ValueError, match="no annotations"):
        split.split_ytvis_json(str(tmp_path / "valid.json"))
