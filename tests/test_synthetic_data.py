"""stmask_d2.data.synthetic (CLI datasets/make_synthetic_vis.py): deterministic, default output pinned, has
occlusion and disappearance, loads with load_ytvis_json; the temporal-fusion knobs."""
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import pycocotools.mask as mask_util

from _tiny_setup import subprocess_env
from stmask_d2.data import load_ytvis_json
from stmask_d2.data import synthetic as gen

SMALL = dict(num_videos=8, num_frames=6, height=96, width=160, seed=3)


def _digest(folder):
    h = hashlib.sha256()
    for root, _, files in sorted(os.walk(folder)):
        for f in sorted(files):
            h.update(f.encode())
            h.update(Path(root, f).read_bytes())
    return h.hexdigest()


def test_deterministic_and_seed_dependent(tmp_path):
    t0 = time.perf_counter()
    a = gen.make_synthetic_vis(str(tmp_path / "a"), **SMALL)
    print(f"synthetic test-size set (8 videos x 6 frames x 96x160): {time.perf_counter() - t0:.3f}s")
    gen.make_synthetic_vis(str(tmp_path / "b"), **SMALL)
    gen.make_synthetic_vis(str(tmp_path / "c"), **dict(SMALL, seed=4))
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")
    assert a == str(tmp_path / "a" / "train.json")


def test_content_occlusion_disappearance_and_loading(tmp_path):
    path = gen.make_synthetic_vis(str(tmp_path), num_categories=4, **SMALL)
    data = json.loads(Path(path).read_text())
    stats = data["info"]["stats"]
    assert stats["occluded_masks"] > 0 and stats["null_frames"] > 0 and stats["instances"] > 8
    assert {c["id"] for c in data["categories"]} == {1, 2, 3, 4}
    v0 = data["videos"][0]
    assert v0["length"] == 6 and len(v0["file_names"]) == 6 and v0["file_names"][0] == "video_0000/00000.jpg"
    assert (tmp_path / "JPEGImages" / v0["file_names"][5]).is_file()
    for a in data["annotations"]:
        assert len(a["segmentations"]) == len(a["bboxes"]) == len(a["areas"]) == 6
        for s, b, ar in zip(a["segmentations"], a["bboxes"], a["areas"]):
            assert (s is None) == (b is None) == (ar is None)
            if s is not None:
                assert isinstance(s["counts"], list)  # uncompressed by default, like YTVIS train
                rle = mask_util.frPyObjects(s, 96, 160)
                assert mask_util.area(rle) == ar and np.allclose(mask_util.toBbox(rle), b)
    # visible masks of one frame never overlap (occluded parts removed from lower objects)
    for v in data["videos"]:
        anns = [a for a in data["annotations"] if a["video_id"] == v["id"]]
        for t in range(6):
            ms = [mask_util.decode(mask_util.frPyObjects(a["segmentations"][t], 96, 160))
                  for a in anns if a["segmentations"][t] is not None]
            if ms:
                assert np.stack(ms).sum(0).max() <= 1
    vids = load_ytvis_json(path, str(tmp_path / "JPEGImages"))
    assert len(vids) == 8 and sum(len(f) for v in vids for f in v["annotations"]) == stats["masks"]


def test_compressed_rle_and_cli(tmp_path):
    cli = Path(__file__).resolve().parents[1] / "datasets" / "make_synthetic_vis.py"
    subprocess.run([sys.executable, str(cli), "--out", str(tmp_path), "--videos", "2", "--frames", "3", "--height",
                    "40", "--width", "64", "--compressed-rle", "--seed", "1", "--blur-prob", "1.0", "--instances",
                    "2"], check=True, capture_output=True, cwd="/", env=subprocess_env())
    data = json.loads((tmp_path / "train.json").read_text())
    assert data["info"]["stats"]["blurred_frames"] == 6
    segs = [s for a in data["annotations"] for s in a["segmentations"] if s is not None]
    assert segs and all(isinstance(s["counts"], str) for s in segs)
    assert load_ytvis_json(str(tmp_path / "train.json"), str(tmp_path / "JPEGImages"))


def test_uncompressed_rle_roundtrip():
    rng = np.random.RandomState(0)
    for first in (0, 1):
        m = rng.rand(7, 5) > 0.5
        m[0, 0] = bool(first)
        r = gen.uncompressed_rle(m)
        assert (mask_util.decode(mask_util.frPyObjects(r, 7, 5)) == m).all()


# sha256 of the generator's output (every file name and byte, walked in sorted order) computed with the generator as
# it was before the temporal-fusion knobs existed: the default output must never change (the main job's figures
# depend on it).
PINNED = {
    "small": (dict(num_videos=8, num_frames=6, height=96, width=160, seed=3),
              "0f89a22af7df8c4ff16bb4225e9888237d8a49f0f03509204efdf0c377984434"),
    "compressed": (dict(num_videos=3, num_frames=5, height=64, width=96, seed=0, compressed_rle=True),
                   "d935f2c05fc7d0373d3292f5b2dd95e3eaed3089a83bca94628d2adb5c3cbb07"),
}


def _pinned_digest(folder):
    h = hashlib.sha256()
    for root, dirs, files in sorted(os.walk(folder)):
        dirs.sort()
        for f in sorted(files):
            h.update(os.path.relpath(os.path.join(root, f), folder).encode())
            h.update(Path(root, f).read_bytes())
    return h.hexdigest()


@pytest.mark.parametrize("name", sorted(PINNED))
def test_default_output_unchanged(tmp_path, name):
    kw, digest = PINNED[name]
    gen.make_synthetic_vis(str(tmp_path), **kw)
    assert _pinned_digest(tmp_path) == digest


def test_knobs_deterministic_and_effective(tmp_path):
    base = dict(num_videos=6, num_frames=5, height=64, width=96, seed=2)
    hard = dict(base, motion_scale=3.0, object_blur=0.6, occluders=2)
    a = json.loads(Path(gen.make_synthetic_vis(str(tmp_path / "a"), **hard)).read_text())
    gen.make_synthetic_vis(str(tmp_path / "b"), **hard)
    assert _pinned_digest(tmp_path / "a") == _pinned_digest(tmp_path / "b")
    d = json.loads(Path(gen.make_synthetic_vis(str(tmp_path / "d"), **base)).read_text())
    m = json.loads(Path(gen.make_synthetic_vis(str(tmp_path / "m"), **dict(base, motion_scale=3.0))).read_text())
    # same objects (categories, count), 3x the motion; occluders hide more
    assert [x["category_id"] for x in m["annotations"]] == [x["category_id"] for x in d["annotations"]]
    assert m["info"]["stats"]["median_motion_px"] > 2.5 * 0.02 * 64
    assert a["info"]["knobs"] == {"motion_scale": 3.0, "object_blur": 0.6, "occluders": 2, "occluder_size": 0.3}
    occ = json.loads(Path(gen.make_synthetic_vis(str(tmp_path / "o"), **dict(base, occluders=3))).read_text())
    assert occ["info"]["stats"]["occluded_masks"] > d["info"]["stats"]["occluded_masks"]
    with pytest.raises(ValueError, match="occluder_size"):
        gen.make_synthetic_vis(str(tmp_path / "x"), **dict(base, occluders=-1))
