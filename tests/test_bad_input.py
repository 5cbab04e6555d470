"""Bad input (issue 6.5): user errors of train_net.py are one line on stderr with exit code 2 and no traceback,
nothing written before is lost; internal errors keep their traceback; the evaluator CLI rejects malformed results
with one line; inputs that can be handled (grayscale / RGBA frames, odd sizes, 1-frame videos, videos without
detections) are handled. Data-layer parsing errors are tested in test_data_ytvis.py / test_video_sources.py."""
import copy
import json
import os

import cv2
import numpy as np
import pytest
import torch
from detectron2.modeling import build_model

from _tiny_setup import one_thread  # noqa: F401  (autouse)
from _tiny_setup import (CONFIG, TINY_OPTS, dataset_name, dataset_opts, make_tiny_dataset, register_args,
                         tiny_cfg)





@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("bad_input_data"), num_videos=2, num_frames=3)


@pytest.fixture(scope="module")
def train_net():
    from stmask_d2.engine import train_net

    return train_net


@pytest.fixture(scope="module")
def model(tiny_data):
    cfg = tiny_cfg(*tiny_data)
    torch.manual_seed(0)
    m = build_model(cfg)
    m.eval()
    return m


def _cli(train_net, capsys, argv):
    with pytest.raises(SystemExit) as e:
        train_net.cli(argv)
    err = capsys.readouterr().err
    return e.value.code, err


def _argv(data, out_dir, *extra, opts=()):
    name = dataset_name(data[0])
    return [*register_args(name, *data), "--config-file", CONFIG, *extra, *TINY_OPTS, *dataset_opts(name, name),
            "OUTPUT_DIR", str(out_dir), *opts]


def _one_line_error(code, err, *words):
    assert code == 2, err
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("train_net.py: error:")]
    assert len(lines) == 1, err
    # in-process runs: loggers set up by an earlier test may write to a stream capsys has closed ("--- Logging
    # error ---" + its traceback); no other traceback is allowed
    assert err.count("Traceback") == err.count("--- Logging error ---"), err
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def _snapshot(folder):
    return {p: open(os.path.join(folder, p), "rb").read() for p in sorted(os.listdir(folder))
            if os.path.isfile(os.path.join(folder, p))}


def _assert_kept(folder, before):
    """Every file that was there is still there, byte for byte (new logs / config dumps are allowed)."""
    after = _snapshot(folder)
    assert {k: after.get(k) for k in before} == before


@pytest.fixture
def previous_output(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "model_0000009.pth").write_bytes(b"previous checkpoint")
    (out / "last_checkpoint").write_text("model_0000009.pth")
    (out / "metrics.json").write_text('{"iteration": 9}\n')
    return out


@pytest.mark.parametrize("opts, words", [
    (["MODEL.STMASK.TRACKR.PRUNE_AFTER", "3"], ["MODEL.STMASK.TRACKR.PRUNE_AFTER", "Non-existent"]),
    (["SOLVER.MAX_ITER", "many"], ["SOLVER.MAX_ITER", "many"]),
    (["SOLVER.MAX_ITER"], ["odd length"]),
    (["DATASETS.TRAIN", '("not_registered_anywhere",)'], ["not_registered_anywhere", "not registered"]),
])
def test_config_errors_one_line(train_net, capsys, tiny_data, previous_output, opts, words):
    before = _snapshot(previous_output)
    _one_line_error(*_cli(train_net, capsys, _argv(tiny_data, previous_output, opts=opts)), *words)
    _assert_kept(previous_output, before)


def test_config_file_typo_and_missing_file(train_net, capsys, tiny_data, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(f'_BASE_: "{CONFIG}"\nSOLVER:\n  BASE_LRR: 0.1\n')
    argv = _argv(tiny_data, tmp_path / "o")
    argv[argv.index(CONFIG)] = str(bad)
    _one_line_error(*_cli(train_net, capsys, argv), "SOLVER.BASE_LRR", str(bad))
    argv[argv.index(str(bad))] = str(tmp_path / "nope.yaml")
    _one_line_error(*_cli(train_net, capsys, argv), "nope.yaml", "does not exist")


def test_unwritable_output_dir(train_net, capsys, tiny_data, tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("keep me")
    _one_line_error(*_cli(train_net, capsys, _argv(tiny_data, a_file / "out")), "OUTPUT_DIR", "cannot be written")
    assert a_file.read_text() == "keep me"
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        try:
            _one_line_error(*_cli(train_net, capsys, _argv(tiny_data, ro / "out")), "OUTPUT_DIR")
        finally:
            ro.chmod(0o700)
    _one_line_error(*_cli(train_net, capsys, _argv(tiny_data, "/proc/self/stmask_out")), "OUTPUT_DIR")


def test_missing_and_corrupt_weights_eval_only(train_net, capsys, tiny_data, previous_output):
    before = _snapshot(previous_output)
    missing = str(previous_output / "missing.pth")
    _one_line_error(*_cli(train_net, capsys, _argv(tiny_data, previous_output, "--eval-only",
                                                   opts=["MODEL.WEIGHTS", missing])), "missing.pth", "does not exist")
    corrupt = str(previous_output / "model_0000009.pth")
    _one_line_error(*_cli(train_net, capsys, _argv(tiny_data, previous_output, "--eval-only",
                                                   opts=["MODEL.WEIGHTS", corrupt])), "model_0000009.pth",
                    "truncated or not a checkpoint")
    # --resume from a corrupt last checkpoint: same one-line error, files untouched
    _one_line_error(*_cli(train_net, capsys, _argv(tiny_data, previous_output, "--resume")), "model_0000009.pth")
    _assert_kept(previous_output, before)


def test_malformed_annotations_one_line(train_net, capsys, tiny_data, tmp_path):
    json_file, image_root = tiny_data
    data = json.load(open(json_file))
    data["annotations"][0]["category_id"] = 99
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    line = _one_line_error(*_cli(train_net, capsys, _argv((str(bad), image_root), tmp_path / "o")),
                           "unknown category_id 99", str(bad))
    assert len(line) < 600


def test_debug_env_and_internal_errors_keep_traceback(train_net, tiny_data, tmp_path, monkeypatch):
    monkeypatch.setenv("STMASK_DEBUG", "1")
    from stmask_d2.engine.errors import ConfigError

    with pytest.raises(ConfigError):
        train_net.cli(_argv(tiny_data, tmp_path / "o", opts=["MODEL.NOPE", "1"]))
    monkeypatch.delenv("STMASK_DEBUG")

    def boom(*a, **k):  # an internal bug that happens to be a ValueError / KeyError is not a user error
        raise KeyError("internal bug")

    monkeypatch.setattr(train_net.STMaskTrainer, "build_model", classmethod(boom))
    with pytest.raises(KeyError, match="internal bug"):
        train_net.cli(_argv(tiny_data, tmp_path / "o2", "--eval-only"))


# ---- evaluator CLI (python -m stmask_d2.evaluation) -------------------------------------------------------------
def _eval_cli(capsys, gt, results, tmp_path):
    from stmask_d2.evaluation.__main__ import main

    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    code = main(["--gt", gt, "--results", str(path)])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def _valid_results(gt):
    data = json.load(open(gt))
    by_video = {}
    for a in data["annotations"]:
        by_video.setdefault(a["video_id"], a)
    out = []
    for v in data["videos"]:
        a = by_video[v["id"]]
        segs = [s if s is None or isinstance(s.get("counts"), str) else None for s in a["segmentations"]]
        out.append({"video_id": v["id"], "category_id": a["category_id"], "score": 0.9, "segmentations": segs})
    return out


def test_evaluator_cli_malformed_results(capsys, tiny_data, tmp_path):
    gt = tiny_data[0]
    good = _valid_results(gt)
    code, out, err = _eval_cli(capsys, gt, good, tmp_path)
    assert code == 0 and len(out.strip().splitlines()) == 1, err
    from pycocotools import mask as mask_util

    rle = mask_util.encode(np.asfortranarray(np.ones((10, 10), np.uint8)))
    rle["counts"] = rle["counts"].decode()
    cases = {
        "wrong length": lambda r: r[0].update(segmentations=r[0]["segmentations"][:-1]),
        "wrong RLE size": lambda r: r[0]["segmentations"].__setitem__(0, rle),
        "unknown video id": lambda r: r[0].update(video_id=12345),
        "missing key": lambda r: r[0].pop("score"),
    }
    for what, edit in cases.items():
        res = copy.deepcopy(good)
        edit(res)
        code, out, err = _eval_cli(capsys, gt, res, tmp_path)
        assert code == 2 and out == "", (what, out, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in err, (what, err)


# ---- inputs that are handled ------------------------------------------------------------------------------------
def _video(frames, vid=1):
    h, w = frames[0].shape[:2]
    return {"video_id": vid, "height": h, "width": w, "length": len(frames), "frames": frames}


@pytest.mark.parametrize("n, hw", [(1, (64, 96)), (3, (70, 101)), (2, (33, 47))])
def test_inference_odd_sizes_and_one_frame(model, n, hw):
    rng = np.random.RandomState(0)
    frames = [rng.randint(0, 256, (*hw, 3), dtype=np.uint8) for _ in range(n)]
    out = model.inference_video(_video(frames))
    assert out["length"] == n
    for t in out["tracks"]:
        assert len(t["segmentations"]) == n
        for s in t["segmentations"]:
            assert s is None or list(s["size"]) == list(hw)


def test_video_without_detections(model, monkeypatch):
    monkeypatch.setattr(model, "score_thresh", 1.1)
    frames = [np.zeros((64, 96, 3), np.uint8)] * 3
    out = model.inference_video(_video(frames))
    assert out == {"video_id": 1, "length": 3, "tracks": []}


def test_mixed_frame_sizes_clear_error(model):
    frames = [np.zeros((64, 96, 3), np.uint8), np.zeros((60, 96, 3), np.uint8)]
    with pytest.raises(ValueError, match="Frame 1 has size"):
        model.inference_video(_video(frames))


def test_grayscale_and_rgba_frames_load_as_three_channels(model, tmp_path):
    from stmask_d2.utils.video import ImageListSource

    paths = []
    gray = (np.arange(64 * 96).reshape(64, 96) % 251).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "0.jpg"), gray)  # grayscale JPEG
    cv2.imwrite(str(tmp_path / "1.png"), np.dstack([gray] * 3 + [np.full_like(gray, 128)]))  # RGBA PNG
    cv2.imwrite(str(tmp_path / "2.png"), gray)  # grayscale PNG
    cv2.imwrite(str(tmp_path / "3.jpg"), np.dstack([gray] * 3))  # colour JPEG
    paths = [str(tmp_path / p) for p in ("0.jpg", "1.png", "2.png", "3.jpg")]
    src = ImageListSource(paths, "RGB")
    for t in range(len(src)):
        assert src[t].shape == (64, 96, 3) and src[t].dtype == np.uint8, paths[t]
    out = model.inference_video({"video_id": 5, "height": 64, "width": 96, "length": 4, "frames": src})
    assert out["length"] == 4
