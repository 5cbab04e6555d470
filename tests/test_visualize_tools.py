"""tools/visualize_data.py and tools/visualize_json_results.py on a tiny synthetic dataset: one contact sheet per
video (and an mp4), predictions beside the GT with each track's video IoU and the per-video AP, one-line errors."""
import json
import os

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest

from _tiny_setup import dataset_name, make_tiny_dataset, one_thread  # noqa: F401
from stmask_d2.visualization.cli import visualize_data_main, visualize_results_main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))




@pytest.fixture(scope="module")
def data(tmp_path_factory):
    json_file, image_root = make_tiny_dataset(tmp_path_factory.mktemp("vis"), num_videos=3, num_frames=5, seed=2)
    name = dataset_name(json_file)
    return {"json": json_file, "root": image_root, "name": name,
            "reg": ["--register-ytvis", name, json_file, image_root]}


def _one_error_line(err, prog):
    lines = [ln for ln in err.splitlines() if ln.strip() and "it/s]" not in ln and "video/s]" not in ln]
    return len(lines) == 1 and lines[0].startswith(f"{prog}: error: ")


def test_visualize_data_sheets_and_video(data, tmp_path, capsys):
    out = str(tmp_path / "gt")
    rc = visualize_data_main([*data["reg"], "--dataset", data["name"], "--output", out, "--videos", "2", "--video-out"])
    assert rc == 0, capsys.readouterr().err
    files = sorted(os.listdir(out))
    assert files == ["video_0000.mp4", "video_0000.png", "video_0001.mp4", "video_0001.png"]
    sheet = cv2.imread(os.path.join(out, "video_0000.png"))
    assert sheet is not None and sheet.shape[1] > 4 * 96  # 4 columns of upscaled tiles
    cap = cv2.VideoCapture(os.path.join(out, "video_0000.mp4"))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 5
    # the sheet shows the GT colours: pixels of the demo palette colour of a GT track are present
    from stmask_d2.utils.visualizer import track_color

    gt = json.load(open(data["json"]))
    tid = gt["annotations"][0]["id"]
    col = (track_color(tid) * 255)[::-1]  # BGR
    blended = np.abs(sheet.astype(float) - col).sum(2)
    assert (blended < 150).any()


def test_visualize_data_bad_input(data, tmp_path, capsys):
    rc = visualize_data_main(["--dataset", "no_such_dataset", "--output", str(tmp_path / "o")])
    cap = capsys.readouterr()
    assert rc == 2 and _one_error_line(cap.err, "visualize_data.py") and "no_such_dataset" in cap.err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    rc = visualize_data_main([*data["reg"], "--dataset", data["name"], "--output", str(blocker / "sub")])
    cap = capsys.readouterr()
    assert rc == 2 and _one_error_line(cap.err, "visualize_data.py")


def _results(gt):
    """Perfect predictions for every GT track (score 0.9), except that the first track of video 2 is shifted."""
    videos = {v["id"]: v for v in gt["videos"]}
    shifted = next(a["id"] for a in gt["annotations"] if a["video_id"] == 2)
    out, masks = [], {}
    for a in gt["annotations"]:
        v = videos[a["video_id"]]
        segs, ms = [], []
        for s in a["segmentations"]:
            if s is None:
                segs.append(None)
                ms.append(np.zeros((v["height"], v["width"]), bool))
                continue
            m = mask_util.decode(mask_util.frPyObjects(s, v["height"], v["width"])).astype(bool)
            gm = m
            if a["id"] == shifted:
                m = np.roll(m, 5, axis=1)
            e = mask_util.encode(np.asfortranarray(m.astype(np.uint8)))
            segs.append({"size": list(e["size"]), "counts": e["counts"].decode()})
            ms.append((m, gm))
        out.append({"video_id": a["video_id"], "category_id": a["category_id"], "segmentations": segs,
                    "score": 0.5 if a["id"] == shifted else 0.9})
        masks[len(out) - 1] = ms
    return out, shifted, masks


def test_visualize_results_iou_and_per_video_ap(data, tmp_path, capsys):
    gt = json.load(open(data["json"]))
    res, shifted, masks = _results(gt)
    rfile = str(tmp_path / "results.json")
    json.dump(res, open(rfile, "w"))
    out = str(tmp_path / "res")
    rc = visualize_results_main([*data["reg"], "--dataset", data["name"], "--results", rfile, "--output", out])
    assert rc == 0, capsys.readouterr().err
    assert sorted(os.listdir(out)) == ["per_video.json", "video_0000.png", "video_0001.png", "video_0002.png"]
    rep = json.load(open(os.path.join(out, "per_video.json")))
    by_vid = {v["video_id"]: v for v in rep["videos"]}
    for vid, v in by_vid.items():
        assert len(v["tracks"]) == sum(r["video_id"] == vid for r in res)
        for tr in v["tracks"]:
            if vid == 2 and tr["score"] == 0.5:  # the shifted track: IoU checked against a direct computation
                pairs = [p for p in masks[tr["result_index"]] if isinstance(p, tuple)]
                inter = sum((m & g).sum() for m, g in pairs)
                union = sum((m | g).sum() for m, g in pairs)
                assert tr["best_gt_id"] == shifted and abs(tr["iou"] - inter / union) < 1e-12 and tr["iou"] < 1
            else:
                assert tr["iou"] == 1.0 and tr["same_class"]
    assert by_vid[1]["AP"] == pytest.approx(1.0) and by_vid[3]["AP"] == pytest.approx(1.0)
    assert by_vid[2]["AP"] < 0.99
    sheet = cv2.imread(os.path.join(out, "video_0001.png"))
    assert sheet is not None and sheet.shape[1] > 2 * 2 * 96


def test_visualize_results_bad_input(data, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('[{"video_id": 99, "category_id": 1, "score": 0.5, "segmentations": []}]')
    rc = visualize_results_main([*data["reg"], "--dataset", data["name"], "--results", str(bad), "--output",
                           str(tmp_path / "o")])
    cap = capsys.readouterr()
    assert rc == 2 and _one_error_line(cap.err, "visualize_json_results.py") and "99" in cap.err
    rc = visualize_results_main([*data["reg"], "--dataset", data["name"], "--results", str(tmp_path / "missing.json"),
                           "--output", str(tmp_path / "o")])
    cap = capsys.readouterr()
    assert rc == 2 and _one_error_line(cap.err, "visualize_json_results.py") and "missing.json" in cap.err
    assert not os.path.exists(tmp_path / "o") or os.listdir(tmp_path / "o") == []
