"""Pair mapper (shared transforms, ids, absent instances, frame sampling), test mapper (lazy) and loaders."""
import json
import os

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from detectron2.data import transforms as T

from stmask_d2.data import (
    YTVISPairDatasetMapper,
    YTVISTestDatasetMapper,
    build_ytvis_test_loader,
    build_ytvis_train_loader,
    get_ytvis_key_frame_dicts,
    load_ytvis_json,
    register_ytvis_instances,
)
from stmask_d2.utils.video import FrameReadError, ImageListSource
from _stmask_cfg import base_cfg  # noqa: E402

H, W, L = 32, 48, 6
RED, GREEN = (255, 0, 0), (0, 255, 0)


def _boxes(t):
    """Instance 101 (red) in frames 0, 1, 2, 4, 5; instance 202 (green) in 0, 1, 2; frame 3 has none."""
    out = {}
    if t != 3:
        out[101] = (4 + 3 * t, 3, 16 + 3 * t, 12)  # x0, y0, x1, y1, asymmetric so a flip shows
    if t <= 2:
        out[202] = (30, 18, 44, 30)
    return out


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    root = tmp_path_factory.mktemp("pair")
    os.makedirs(root / "img" / "v")
    segs = {101: [None] * L, 202: [None] * L}
    for t in range(L):
        img = np.zeros((H, W, 3), np.uint8)
        for iid, (x0, y0, x1, y1) in _boxes(t).items():
            img[y0:y1, x0:x1] = RED if iid == 101 else GREEN
            m = np.zeros((H, W), np.uint8)
            m[y0:y1, x0:x1] = 1
            r = mask_util.encode(np.asfortranarray(m))
            segs[iid][t] = {"size": [H, W], "counts": r["counts"].decode()}
        cv2.imwrite(str(root / "img" / "v" / f"{t:05d}.png"), img[:, :, ::-1])
    data = {
        "videos": [{"id": 1, "height": H, "width": W, "length": L,
                    "file_names": [f"v/{t:05d}.png" for t in range(L)]}],
        "annotations": [{"id": i, "video_id": 1, "category_id": 1 if i == 101 else 2, "iscrowd": 0,
                         "segmentations": segs[i], "bboxes": None, "areas": None} for i in (101, 202)],
        "categories": [{"id": 1, "name": "red"}, {"id": 2, "name": "green"}],
    }
    (root / "a.json").write_text(json.dumps(data))
    register_ytvis_instances("test_mapper_pair", {}, str(root / "a.json"), str(root / "img"))
    return load_ytvis_json(str(root / "a.json"), str(root / "img"))[0]


def _mapper(range_=2, order="sorted", flip=0.5, fmt="RGB"):
    return YTVISPairDatasetMapper(
        augmentations=[T.ResizeShortestEdge([64], 200, "choice"), T.RandomFlip(prob=flip)],
        image_format=fmt, sampling_frame_range=range_, sampling_frame_order=order)


def _iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


def test_same_transform_on_both_frames(video):
    np.random.seed(0)
    flips = set()
    for trial in range(24):
        key = [0, 1, 2, 4, 5][trial % 5]
        out = _mapper()({"video": video, "key_frame": key})
        assert out["video_id"] == 1 and (out["height"], out["width"]) == (H, W)
        assert len(out["image"]) == len(out["instances"]) == 2
        for img, inst, t in zip(out["image"], out["instances"], out["frame_indices"]):
            assert img.dtype == torch.uint8 and tuple(img.shape) == (3, 64, 96)
            assert inst.image_size == (64, 96)
            assert inst.gt_ids.dtype == torch.int64 and inst.gt_classes.dtype == torch.int64
            color = img.permute(1, 2, 0).numpy()
            for k, iid in enumerate(inst.gt_ids.tolist()):
                m = inst.gt_masks.tensor[k].numpy()
                ch = 0 if iid == 101 else 1
                drawn = (color[..., ch] > 128) & (color[..., 1 - ch] < 128)
                assert _iou(m, drawn) > 0.85, (trial, t, iid)
                x0, y0, x1, y1 = inst.gt_boxes.tensor[k].tolist()
                ys, xs = np.nonzero(m)
                assert abs(x0 - xs.min()) <= 1 and abs(x1 - xs.max() - 1) <= 1 and abs(y0 - ys.min()) <= 1
                assert inst.gt_classes[k].item() == (0 if iid == 101 else 1)
            flips.add(bool(color[:, :48, 0].sum() < color[:, 48:, 0].sum()) if 101 in inst.gt_ids.tolist() else None)
    assert {True, False} <= flips  # both flipped and unflipped pairs were seen


def test_ids_shared_absent_and_sorted(video):
    np.random.seed(1)
    seen_refs = set()
    for _ in range(40):
        out = _mapper()({"video": video, "key_frame": 2})
        i, j = out["frame_indices"]
        assert i <= j and 2 in (i, j)
        ref = j if i == 2 else i
        seen_refs.add(ref)
        ids = [inst.gt_ids.tolist() for inst in out["instances"]]
        for t, frame_ids in zip((i, j), ids):
            assert sorted(frame_ids) == sorted(_boxes(t))  # absent instances are not in the frame
        assert out["file_names"] == [video["file_names"][i], video["file_names"][j]]
    assert seen_refs == {0, 1, 4}  # |d| in 1..2, frame 3 has no instance


def test_random_order_and_range(video):
    np.random.seed(2)
    firsts = set()
    for _ in range(30):
        out = _mapper(range_=2, order="random")({"video": video, "key_frame": 4})
        assert out["frame_indices"][0] == 4 and out["frame_indices"][1] in (2, 5)
        firsts.add(out["frame_indices"][1])
    assert firsts == {2, 5}
    out = _mapper(range_=1)({"video": video, "key_frame": 4})
    assert out["frame_indices"] == [4, 5]
    out = _mapper(range_=0)({"video": video, "key_frame": 4})
    assert out["frame_indices"] == [4, 4]  # no candidate: the key frame itself
    assert torch.equal(out["image"][0], out["image"][1])


def test_bgr_format(video):
    np.random.seed(3)
    rgb = _mapper(flip=0.0)({"video": video, "key_frame": 0})["image"][0]
    np.random.seed(3)
    bgr = _mapper(flip=0.0, fmt="BGR")({"video": video, "key_frame": 0})["image"][0]
    assert torch.equal(rgb, bgr.flip(0))


def _cfg():
    cfg = base_cfg()
    cfg.INPUT.MIN_SIZE_TRAIN = (64,)
    cfg.INPUT.MAX_SIZE_TRAIN = 200
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.SOLVER.IMS_PER_BATCH = 2
    return cfg


def test_from_config_and_train_loader(video):
    cfg = _cfg()
    mapper = YTVISPairDatasetMapper(cfg, is_train=True)
    assert mapper.sampling_frame_range == cfg.INPUT.SAMPLING_FRAME_RANGE
    samples = get_ytvis_key_frame_dicts(["test_mapper_pair"])
    assert [s["key_frame"] for s in samples] == [0, 1, 2, 4, 5]
    cfg.DATASETS.TRAIN = ("test_mapper_pair",)
    batch = next(iter(build_ytvis_train_loader(cfg)))
    assert len(batch) == 2 and all(len(b["image"]) == 2 for b in batch)


def test_key_frames_need_annotations(tmp_path):
    d = {"videos": [{"id": 1, "height": 4, "width": 4, "length": 1, "file_names": ["a.jpg"]}],
         "categories": [{"id": 1, "name": "x"}]}
    (tmp_path / "t.json").write_text(json.dumps(d))
    register_ytvis_instances("test_mapper_noann", {}, str(tmp_path / "t.json"), str(tmp_path))
    with pytest.raises(ValueError, match="no annotations"):
        get_ytvis_key_frame_dicts(["test_mapper_noann"])


def test_test_mapper_is_lazy(video, monkeypatch):
    calls = []
    monkeypatch.setattr("detectron2.data.detection_utils.read_image", lambda *a, **k: calls.append(a))
    v = dict(video, file_names=video["file_names"][:-1] + ["/nonexistent/x.png"])
    out = YTVISTestDatasetMapper(image_format="BGR")(v)
    assert calls == []  # nothing read by the mapper
    assert set(out) >= {"video_id", "height", "width", "length", "frames"} and len(out["frames"]) == L
    monkeypatch.undo()
    frame = out["frames"][0]
    assert frame.shape == (H, W, 3) and frame.dtype == np.uint8 and frame[5, 6, 2] == 255  # BGR red
    with pytest.raises(FrameReadError, match="nonexistent"):
        out["frames"][L - 1]


def test_test_loader(video):
    cfg = _cfg()
    batches = list(build_ytvis_test_loader(cfg, "test_mapper_pair"))
    assert len(batches) == 1 and len(batches[0]) == 1
    b = batches[0][0]
    assert isinstance(b["frames"], ImageListSource) and b["length"] == L
