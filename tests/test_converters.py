"""stmask_d2.data.convert: COCO-video (CVAT), MOTS, DAVIS and per-instance PNG sources -> YouTube-VIS JSON.

Round trip on generated samples (every converted mask equals the source mask, IoU 1.0; track identities and
classes kept), 10 training iterations on each output through ``--register-ytvis``, and one-line errors (exit 2,
nothing written) naming the file and line / frame for malformed sources."""
import json
import os
import shutil

import numpy as np
import pycocotools.mask as mask_util
import pytest

from _converter_samples import make_samples
from _tiny_setup import CONFIG, TINY_OPTS, dataset_name, one_thread  # noqa: F401

from stmask_d2.data.convert import main as convert_main

FORMATS = ["coco-video", "mots", "davis", "instance-pngs"]


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    root = tmp_path_factory.mktemp("convert")
    s = make_samples(root)
    for fmt, d in s.items():
        d["output"] = str(root / f"{fmt}.json")
        assert convert_main(d["argv"] + ["--output", d["output"]]) == 0
    return s


def _decode(seg, h, w):
    return mask_util.decode({"size": seg["size"], "counts": seg["counts"].encode()}).astype(bool)


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_masks_and_track_ids(samples, fmt):
    d = samples[fmt]
    out = json.load(open(d["output"]))
    videos = {v["id"]: v for v in out["videos"]}
    cats = {c["id"]: c["name"] for c in out["categories"]}
    seen = {}
    for a in out["annotations"]:
        v = videos[a["video_id"]]
        assert len(a["segmentations"]) == v["length"] == len(v["file_names"]) == len(a["bboxes"])
        vname = v["file_names"][0].split("/")[0]
        key = (vname, a["track_id"])
        assert key not in seen, "one annotation per source track"
        seen[key] = a
        assert cats[a["category_id"]] == d["classes"][key]
        src = d["masks"][key]
        for t, seg in enumerate(a["segmentations"]):
            if t not in src:
                assert seg is None
                continue
            m = _decode(seg, v["height"], v["width"])
            inter, union = np.logical_and(m, src[t]).sum(), np.logical_or(m, src[t]).sum()
            assert inter / union == 1.0 and np.array_equal(m, src[t])
            x, y, w, h = a["bboxes"][t]
            ys, xs = np.nonzero(src[t])
            assert (x, y, x + w, y + h) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    assert set(seen) == set(d["masks"]), "every source track converted"
    assert sorted(a["id"] for a in out["annotations"]) == list(range(1, len(seen) + 1))
    # file names resolve under the image root, and the loader accepts the file
    for v in out["videos"]:
        assert all(os.path.isfile(os.path.join(d["image_root"], f)) for f in v["file_names"])
    from stmask_d2.data import load_ytvis_json

    dicts = load_ytvis_json(d["output"], d["image_root"])
    assert sum(len(f) for v in dicts for f in v["annotations"]) == sum(len(m) for m in d["masks"].values())


class _Args:
    def __init__(self, opts, register):
        self.config_file = CONFIG
        self.opts = opts
        self.eval_only = False
        self.resume = False
        self.register_ytvis = register


def test_ten_training_iterations_on_each_converted_dataset(samples, tmp_path):
    """10 iterations of the tiny synthetic config on each converted file, registered with --register-ytvis."""
    from stmask_d2.engine import train_net

    for fmt in FORMATS:
        d = samples[fmt]
        name = dataset_name(d["output"])
        out = str(tmp_path / fmt)
        opts = TINY_OPTS + ["DATASETS.TRAIN", f'("{name}",)', "DATASETS.TEST", "()", "SOLVER.MAX_ITER", "10",
                            "SOLVER.CHECKPOINT_PERIOD", "1000", "OUTPUT_DIR", out]
        train_net.main(_Args(opts, [[name, d["output"], d["image_root"]]]))
        records = [json.loads(line) for line in open(os.path.join(out, "metrics.json"))]
        iters = [r["iteration"] for r in records if "total_loss" in r]
        assert iters and iters[-1] == 9, (fmt, iters)
        assert all(np.isfinite(r["total_loss"]) for r in records if "total_loss" in r)


# ----------------------------------------------------------------------------------------------- malformed input
def _break_coco(d, tmp):
    data = json.load(open(d["source"]))
    del data["annotations"][3]["attributes"]["track_id"]
    img = {im["id"]: im["file_name"] for im in data["images"]}[data["annotations"][3]["image_id"]]
    path = str(tmp / "bad_coco.json")
    json.dump(data, open(path, "w"))
    return ["coco-video", path, "--image-root", d["image_root"]], [path, "annotations[3]", img, "track id"]


def _break_mots(d, tmp):
    folder = tmp / "mots_bad"
    shutil.copytree(d["source"], folder)
    txt = sorted(os.listdir(folder))[0]
    lines = open(folder / txt).read().splitlines()
    parts = lines[2].split()
    parts[5] = parts[5][:-3]  # truncated RLE
    lines[2] = " ".join(parts)
    open(folder / txt, "w").write("\n".join(lines) + "\n")
    argv = list(d["argv"])
    argv[1] = str(folder)
    return argv, [str(folder / txt), "line 3", "RLE"]


def _break_davis(d, tmp):
    ann = tmp / "davis_bad"
    shutil.copytree(d["source"], ann)
    seq = sorted(os.listdir(ann))[0]
    png = ann / seq / sorted(os.listdir(ann / seq))[2]
    from PIL import Image

    Image.fromarray(np.zeros((64, 96, 3), np.uint8)).save(png)  # RGB, not indexed
    argv = ["davis", "--annotations", str(ann), "--image-root", d["image_root"]]
    return argv, [str(png), "not indexed"]


def _break_instance_pngs(d, tmp):
    root = tmp / "inst_bad"
    shutil.copytree(d["source"], root)
    vid = sorted(os.listdir(root))[0]
    trk = sorted(os.listdir(root / vid))[0]
    f = root / vid / trk / "00099.png"
    import cv2

    cv2.imwrite(str(f), np.zeros((64, 96), np.uint8))
    return ["instance-pngs", "--masks", str(root), "--image-root", d["image_root"]], [str(f), "00099"]


def _mots_bad_line(d, tmp):
    folder = tmp / "mots_fields"
    shutil.copytree(d["source"], folder)
    txt = sorted(os.listdir(folder))[1]
    lines = open(folder / txt).read().splitlines()
    lines[0] = lines[0].rsplit(" ", 1)[0]  # 5 fields
    open(folder / txt, "w").write("\n".join(lines) + "\n")
    argv = list(d["argv"])
    argv[1] = str(folder)
    return argv, [str(folder / txt), "line 1", "6 fields"]


def _mots_unknown_class(d, tmp):
    argv = [a for a in d["argv"] if "=" not in a]
    argv = argv[:argv.index("--classes")] + ["--classes", "99=thing"]
    return argv, ["line 1", "--classes"]


BAD = {"coco-video": _break_coco, "mots": _break_mots, "davis": _break_davis, "instance-pngs": _break_instance_pngs,
       "mots-fields": _mots_bad_line, "mots-class": _mots_unknown_class}


@pytest.mark.parametrize("case", sorted(BAD))
def test_malformed_source_one_line_exit_2(samples, tmp_path, capsys, case):
    d = samples[case.split("-")[0] if case.startswith("mots") else case]
    argv, needles = BAD[case](d, tmp_path)
    out = tmp_path / "out" / "x.json"
    os.makedirs(out.parent)
    capsys.readouterr()
    rc = convert_main(argv + ["--output", str(out)])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip() and "it/s]" not in ln and "|" not in ln]
    assert rc == 2
    assert len(lines) == 1 and lines[0].startswith("convert: error: "), err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    assert os.listdir(out.parent) == []  # nothing written, no temporary left


def test_missing_source_exit_2(tmp_path, capsys):
    rc = convert_main(["davis", "--annotations", str(tmp_path / "nope"), "--image-root", str(tmp_path),
                       "--output", str(tmp_path / "o.json")])
    assert rc == 2 and "nope" in capsys.readouterr().err
    assert not (tmp_path / "o.json").exists()


def test_motschallenge_layout(samples, tmp_path, capsys):
    """MOTSChallenge: <seq>/gt/gt.txt, frames <seq>/img1/000001.jpg (1-based), class 2 = pedestrian."""
    d = samples["mots"]
    src_txt = os.path.join(d["source"], sorted(os.listdir(d["source"]))[0])
    vname = os.path.splitext(os.path.basename(src_txt))[0]
    seq = tmp_path / "train" / "MOTS20-02"
    (seq / "gt").mkdir(parents=True)
    (seq / "img1").mkdir()
    frames = sorted(os.listdir(os.path.join(d["image_root"], vname)))
    for t, f in enumerate(frames):
        shutil.copy(os.path.join(d["image_root"], vname, f), seq / "img1" / f"{t + 1:06d}.jpg")
    lines = []
    for line in open(src_txt):
        p = line.split()
        if p[2] == "10":
            continue
        lines.append(" ".join([str(int(p[0]) + 1), str(2000 + int(p[1]) % 1000), "2", *p[3:]]))
    # MOTS masks of one frame are disjoint, so mapping every class to pedestrian keeps a valid file
    (seq / "gt" / "gt.txt").write_text("\n".join(lines) + "\n")
    out = str(tmp_path / "mots20.json")
    rc = convert_main(["mots", str(seq / "gt" / "gt.txt"), "--image-root", str(tmp_path / "train"), "--output", out])
    assert rc == 0, capsys.readouterr().err
    data = json.load(open(out))
    assert data["videos"][0]["file_names"][0] == "MOTS20-02/img1/000001.jpg"
    assert len(data["videos"][0]["file_names"]) == len(frames)
    n_src = sum(len(m) for (v, _), m in d["masks"].items() if v == vname)
    assert sum(s is not None for a in data["annotations"] for s in a["segmentations"]) == n_src
    assert {c["name"] for c in data["categories"] if c["id"] in {a["category_id"] for a in data["annotations"]}} \
        == {"pedestrian"}


def test_coco_video_groups_by_video_id_and_orders_by_frame_id(samples, tmp_path):
    """Images carrying video_id / frame_id are grouped and ordered by them, not by their file names."""
    from stmask_d2.data.converters import convert_coco_video

    data = json.load(open(samples["coco-video"]["source"]))
    names = {im["id"]: im["file_name"] for im in data["images"]}
    for im in data["images"]:
        vname, f = im["file_name"].split("/")
        im["video_id"] = vname
        im["frame_id"] = -int(os.path.splitext(f)[0])  # reversed time
    path = str(tmp_path / "with_ids.json")
    json.dump(data, open(path, "w"))
    out = convert_coco_video(path, samples["coco-video"]["image_root"])
    for v in out["videos"]:
        stems = [int(os.path.splitext(f.split("/")[1])[0]) for f in v["file_names"]]
        assert stems == sorted(stems, reverse=True)
    assert len(out["annotations"]) == len(samples["coco-video"]["masks"])
    assert set(names.values()) == {f for v in out["videos"] for f in v["file_names"]}


@pytest.mark.parametrize("path,value,needle", [
    (("images", 0, "id"), [1], "'id' must be an integer or a string"),
    (("images", 0, "file_name"), 7, "'file_name' must be a non-empty string"),
    (("images", 0, "height"), "x", "'height' must be a positive integer"),
    (("images", 0, "width"), -1, "'width' must be a positive integer"),
    (("images", 0, "video_id"), [], "'video_id' must be an integer or a string"),
    (("annotations", 0, "image_id"), {}, "'image_id' must be an integer or a string"),
    (("annotations", 0, "category_id"), None, "'category_id' must be an integer or a string"),
    (("annotations", 0, "track_id"), [3], "the track id must be an integer or a string"),
])
def test_coco_video_fields_of_the_wrong_type_are_conversion_errors(tmp_path, path, value, needle):
    """A field of the wrong type is a one-line ConversionError naming the entry, not a TypeError / OverflowError."""
    from stmask_d2.data.converters import convert_coco_video
    from stmask_d2.data.converters.common import ConversionError

    data = {"images": [{"id": 1, "file_name": "v/0.jpg", "height": 4, "width": 4, "video_id": 1, "frame_id": 0}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[0, 0, 2, 0, 2, 2]],
                             "track_id": 1}],
            "categories": [{"id": 1, "name": "a"}]}
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    src = tmp_path / "coco.json"
    src.write_text(json.dumps(data))
    with pytest.raises(ConversionError, match=needle) as e:
        convert_coco_video(str(src), str(tmp_path), check_images=False)
    assert "\n" not in str(e.value) and str(src) in str(e.value)
