"""Demo output options: display flags (each changes only what it says), class filter, indexed mask PNGs that
decode back to the JSON's masks, and the webcam path driven by a fake camera (a video file opened by the same
capture class)."""
import json
import os

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from detectron2.data import Metadata
from detectron2.structures import Boxes, Instances

from stmask_d2.utils.track_outputs import OutputOptions, exclusive_masks, read_mask_png
from test_demo import CONFIG, FAST_OPTS, H, N, W, _frame, _read_video, demo, weights  # noqa: F401

# ------------------------------------------------------------------------------------ visualiser pixel tests
VH, VW = 120, 160


def _instances():
    inst = Instances((VH, VW))
    inst.track_ids = torch.tensor([4, 9])
    inst.pred_classes = torch.tensor([0, 1])
    inst.scores = torch.tensor([0.9, 0.6])
    boxes = [[10, 10, 90, 100], [80, 30, 150, 90]]
    inst.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
    masks = torch.zeros(2, VH, VW, dtype=torch.bool)
    masks[0, 20:90, 20:80] = True
    masks[0, 40:60, 40:60] = False  # a hole
    masks[1, 40:80, 95:140] = True
    inst.pred_masks = masks
    return inst


def _draw(**kw):
    frame = np.random.RandomState(0).randint(0, 255, (VH, VW, 3)).astype(np.uint8)
    opts = OutputOptions(**kw)
    return frame, opts.visualizer(Metadata(thing_classes=["cat", "dog"])).draw_frame(frame, _instances())


def _dilate(mask, iterations=1):
    k = np.ones((3, 3), np.uint8)
    return cv2.dilate(mask.astype(np.uint8), k, iterations=iterations).astype(bool)


def _diff(a, b):
    return (a.astype(int) != b.astype(int)).any(axis=2)


def _footprint(**kw):
    """Pixels that drawing only the element of ``kw`` changes on the frame (dilated by 1 for anti-aliasing)."""
    frame, out = _draw(alpha=0.0, **kw)
    return _dilate(_diff(frame, out), 1)


def test_no_boxes_changes_only_the_boxes():
    _, with_boxes = _draw(labels=False)
    _, without = _draw(labels=False, boxes=False)
    d = _diff(with_boxes, without)
    boxes_only = _footprint(labels=False)
    assert d.any() and not (d & ~boxes_only).any()


def test_no_labels_changes_only_the_labels():
    _, with_labels = _draw()
    _, without = _draw(labels=False)
    d = _diff(with_labels, without)
    labels_only = _footprint(boxes=False)
    assert d.any() and not (d & ~labels_only).any()
    # hiding the boxes keeps the labels where they were
    _, a = _draw(boxes=False)
    _, b = _draw(boxes=False, labels=False)
    assert not (_diff(a, b) & ~labels_only).any()


def test_alpha_changes_only_mask_pixels():
    _, a = _draw(alpha=0.5)
    _, b = _draw(alpha=0.8)
    d = _diff(a, b)
    union = _instances().pred_masks.any(0).numpy()
    assert d.any() and not (d & ~union).any()
    with pytest.raises(ValueError, match="alpha"):
        OutputOptions(alpha=1.5)


def test_bw_background_changes_only_outside_the_masks():
    frame, a = _draw()
    _, b = _draw(bw_background=True)
    d = _diff(a, b)
    union = _instances().pred_masks.any(0).numpy()
    assert d.any() and not (d & union).any()
    outside = ~_dilate(_footprint() | union, 2)
    assert (b[outside][:, 0] == b[outside][:, 1]).all() and (b[outside][:, 1] == b[outside][:, 2]).all()


def test_class_filter_and_exclusive_masks():
    meta = Metadata(thing_classes=["cat", "dog"])
    opts = OutputOptions(classes=["DOG"])
    ids = opts.class_ids(meta)
    assert ids == [1]
    kept = opts.select(_instances(), ids)
    assert kept.track_ids.tolist() == [9]
    with pytest.raises(ValueError, match="unknown class 'cow'; known: cat, dog"):
        OutputOptions(classes=["cow"]).class_ids(meta)
    inst = _instances()
    inst.pred_masks[1, 20:90, 20:80] = True  # overlaps track 4 (score 0.9, which keeps the overlap)
    ex = exclusive_masks(inst)
    assert not (ex.pred_masks[0] & ex.pred_masks[1]).any()
    assert torch.equal(ex.pred_masks[0], inst.pred_masks[0])
    assert torch.equal(ex.pred_masks[0] | ex.pred_masks[1], inst.pred_masks[0] | inst.pred_masks[1])


# ------------------------------------------------------------------------------------ demo runs
@pytest.fixture(scope="module")
def png_frames(tmp_path_factory):
    d = tmp_path_factory.mktemp("png_frames")
    for t in range(N):
        cv2.imwrite(str(d / f"{t:03d}.png"), _frame(t))
    return str(d)


@pytest.fixture(scope="module")
def named(tmp_path_factory):
    """Arguments giving the demo the synthetic dataset's class names (circle, square, triangle, star, ring)."""
    from _tiny_setup import dataset_name, make_tiny_dataset

    json_file, image_root = make_tiny_dataset(tmp_path_factory.mktemp("names"), num_videos=1, num_frames=1)
    name = dataset_name(json_file)
    return ["--register-ytvis", name, json_file, image_root], ["DATASETS.TEST", f'("{name}",)']


def _run(capsys, *argv, weights, opts=()):
    rc = demo.main(["--config-file", CONFIG, *argv, "--opts", *FAST_OPTS, "MODEL.WEIGHTS", weights, *opts])
    return rc, capsys.readouterr()


def _load_png_masks(folder):
    meta = json.load(open(os.path.join(folder, "tracks.json")))
    maps = [read_mask_png(os.path.join(folder, f)) for f in meta["frames"]]
    return meta, maps


def test_output_masks_decode_to_the_json_masks(tmp_path, capsys, png_frames, weights):
    masks_dir, js = str(tmp_path / "masks"), str(tmp_path / "res.json")
    rc, cap = _run(capsys, "--input", png_frames, "--output-json", js, "--output-masks", masks_dir,
                   "--confidence-threshold", "0", weights=weights)
    assert rc == 0, cap.err
    meta, maps = _load_png_masks(masks_dir)
    assert meta["frames"] == sorted(os.listdir(png_frames)) and len(maps) == N
    results = json.load(open(js))
    assert results and len(meta["tracks"]) == len(results)
    # every JSON entry's masks are exactly one track's PNG pixels (value = track id + 1), frame by frame
    unmatched = {int(k): v for k, v in meta["tracks"].items()}
    for r in results:
        decoded = [np.zeros((H, W), bool) if s is None else
                   mask_util.decode({"size": s["size"], "counts": s["counts"].encode()}).astype(bool)
                   for s in r["segmentations"]]
        hits = [tid for tid, info in unmatched.items()
                if all(np.array_equal(maps[t] == info["value"], decoded[t]) for t in range(N))]
        assert len(hits) == 1, "one PNG track per JSON entry"
        info = unmatched.pop(hits[0])
        assert info["category_id"] == r["category_id"] and abs(info["score"] - r["score"]) < 1e-6
    assert not unmatched
    values = set(np.unique(np.stack(maps)).tolist()) - {0}
    assert values <= {v["value"] for v in meta["tracks"].values()}
    assert [f for f in os.listdir(tmp_path) if f.startswith(".")] == []


def test_classes_filter_everywhere(tmp_path, capsys, png_frames, weights, named):
    reg, test_opts = named
    js = str(tmp_path / "all.json")
    rc, cap = _run(capsys, "--input", png_frames, "--output-json", js, "--confidence-threshold", "0", weights=weights)
    assert rc == 0, cap.err
    classes = ["circle", "square", "triangle", "star", "ring"]  # synthetic config's dataset (ids 1..5)
    present = {r["category_id"] for r in json.load(open(js))}
    keep = classes[min(present) - 1]
    out, js2, masks = str(tmp_path / "vis"), str(tmp_path / "f.json"), str(tmp_path / "m")
    rc, cap = _run(capsys, "--input", png_frames, "--output", out, "--output-json", js2, "--output-masks", masks,
                   "--confidence-threshold", "0", "--classes", keep, *reg, weights=weights, opts=test_opts)
    assert rc == 0, cap.err
    res = json.load(open(js2))
    assert res and {r["category_id"] for r in res} == {min(present)}
    meta, _ = _load_png_masks(masks)
    assert {v["class"] for v in meta["tracks"].values()} == {keep}
    absent = [c for i, c in enumerate(classes) if i + 1 not in present]
    if absent:  # a class never predicted: nothing drawn, the frames come out unchanged (PNG, lossless)
        out2 = str(tmp_path / "vis2")
        rc, cap = _run(capsys, "--input", png_frames, "--output", out2, "--confidence-threshold", "0",
                       "--classes", absent[0], *reg, weights=weights, opts=test_opts)
        assert rc == 0, cap.err
        for f in os.listdir(png_frames):
            assert np.array_equal(cv2.imread(os.path.join(out2, f)), cv2.imread(os.path.join(png_frames, f)))
    rc, cap = _run(capsys, "--input", png_frames, "--output", str(tmp_path / "v3"), "--classes", "unicorn", *reg,
                   weights=weights, opts=test_opts)
    lines = [ln for ln in cap.err.splitlines() if ln.strip()]
    assert rc == 2 and len(lines) == 1 and "unknown class 'unicorn'" in lines[0]
    assert not os.path.exists(str(tmp_path / "v3"))


def test_display_flags_reach_the_demo_frames(tmp_path, capsys, png_frames, weights):
    """--alpha 0 --no-boxes --no-labels draws nothing; adding --bw-background greys exactly the pixels outside the
    masks (taken from --output-masks)."""
    plain = str(tmp_path / "plain")
    rc, cap = _run(capsys, "--input", png_frames, "--output", plain, "--confidence-threshold", "0", "--alpha", "0",
                   "--no-boxes", "--no-labels", weights=weights)
    assert rc == 0, cap.err
    for f in os.listdir(png_frames):
        assert np.array_equal(cv2.imread(os.path.join(plain, f)), cv2.imread(os.path.join(png_frames, f)))
    bw, masks = str(tmp_path / "bw"), str(tmp_path / "masks")
    rc, cap = _run(capsys, "--input", png_frames, "--output", bw, "--output-masks", masks, "--confidence-threshold",
                   "0", "--alpha", "0", "--no-boxes", "--no-labels", "--bw-background", weights=weights)
    assert rc == 0, cap.err
    _, maps = _load_png_masks(masks)
    assert any((m > 0).any() for m in maps)
    for t, f in enumerate(sorted(os.listdir(png_frames))):
        src, out = cv2.imread(os.path.join(png_frames, f)), cv2.imread(os.path.join(bw, f))
        fg = maps[t] > 0
        assert np.array_equal(out[fg], src[fg])
        assert (out[~fg][:, 0] == out[~fg][:, 1]).all() and (out[~fg][:, 1] == out[~fg][:, 2]).all()
    rc, cap = _run(capsys, "--input", png_frames, "--output", str(tmp_path / "x"), "--alpha", "2", weights=weights)
    assert rc == 2 and "--alpha" in cap.err


# ------------------------------------------------------------------------------------ webcam
def test_webcam_path_with_a_fake_camera(tmp_path, capsys, monkeypatch, weights):
    """--webcam opens camera 0 with VideoFileSource / cv2.VideoCapture; the fake camera is a video file opened
    by that same class. The stream has no length (len 0, like a camera) and ends when the file does."""
    import stmask_d2.utils.video as video_mod

    path = str(tmp_path / "camera.avi")
    wr = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (W, H))
    assert wr.isOpened()
    for t in range(N):
        wr.write(_frame(t))
    wr.release()
    real = cv2.VideoCapture
    opened = []

    def fake_capture(src, *a):
        opened.append(src)
        return real(path) if src == 0 else real(src, *a)

    monkeypatch.setattr(video_mod.cv2, "VideoCapture", fake_capture)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    out, js, masks = str(tmp_path / "cam.mp4"), str(tmp_path / "cam.json"), str(tmp_path / "cam_masks")
    rc, cap = _run(capsys, "--webcam", "--output", out, "--output-json", js, "--output-masks", masks,
                   "--confidence-threshold", "0", "--no-boxes", weights=weights)
    assert rc == 0, cap.err
    assert opened and all(s == 0 for s in opened)  # the camera index went through the capture class
    assert len(video_mod.VideoFileSource(0)) == 0  # a camera stream: no length
    frames, _ = _read_video(out)
    assert len(frames) == N and frames[0].shape == (H, W, 3)
    assert all(len(r["segmentations"]) == N for r in json.load(open(js)))
    assert len(json.load(open(os.path.join(masks, "tracks.json")))["frames"]) == N


def test_indexed_mask_writer_8_and_16_bit(tmp_path):
    from PIL import Image

    from stmask_d2.utils.track_outputs import IndexedMaskWriter

    inst = _instances()
    frames = [inst, inst[:1], inst[:0]]
    frames[0].track_ids = torch.tensor([4, 400])  # 401 does not fit in 8 bits: that frame is a 16-bit PNG
    w = IndexedMaskWriter(str(tmp_path / "m"), names=["a.jpg", "b.jpg", "c.jpg"])
    for t, f in enumerate(frames):
        w.write(t, f)
    tracks = [{"track_id": 4, "score": 0.9, "category_id": 0, "segmentations": [1, 1, None]},
              {"track_id": 400, "score": 0.6, "category_id": 1, "segmentations": [1, None, None]}]
    w.commit(tracks, ["cat", "dog"])
    assert sorted(os.listdir(tmp_path)) == ["m"]  # no temporary left
    meta = json.load(open(tmp_path / "m" / "tracks.json"))
    assert meta["frames"] == ["a.png", "b.png", "c.png"]
    assert meta["tracks"]["400"] == {"value": 401, "class": "dog", "category_id": 2, "score": 0.6, "num_frames": 1}
    m0, m1, m2 = (read_mask_png(str(tmp_path / "m" / n)) for n in meta["frames"])
    assert np.array_equal(m0 == 5, inst.pred_masks[0].numpy()) and np.array_equal(m0 == 401, inst.pred_masks[1].numpy())
    assert np.array_equal(m1 == 5, inst.pred_masks[0].numpy()) and m1.max() == 5 and m2.max() == 0
    assert Image.open(tmp_path / "m" / "b.png").mode == "P"
    overlap = _instances()
    overlap.pred_masks[1] |= overlap.pred_masks[0]
    w2 = IndexedMaskWriter(str(tmp_path / "m2"))
    with pytest.raises(ValueError, match="disjoint"):
        w2.write(0, overlap)
    w2.abort()
    assert sorted(os.listdir(tmp_path)) == ["m"]
