"""demo/demo.py on tiny synthetic inputs (CPU, random weights): outputs and one-line user errors."""
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from _tiny_setup import subprocess_env
from stmask_d2.engine import demo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs/synthetic/STMask_R18_synthetic_TF.yaml")
DEMO = os.path.join(ROOT, "demo/demo.py")
H, W, N = 96, 160, 4
# tiny network input, few candidates: the tests check plumbing, not accuracy
FAST_OPTS = ["MODEL.DEVICE", "cpu", "INPUT.MIN_SIZE_TEST", "96", "INPUT.MAX_SIZE_TEST", "160",
             "MODEL.STMASK.TEST.NMS_TOP_K", "8"]




@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    import stmask_d2
    stmask_d2.register_all()  # the model parts and the builtin dataset splits
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model

    from stmask_d2.config import add_stmask_config

    cfg = get_cfg()
    add_stmask_config(cfg)
    cfg.merge_from_file(CONFIG)
    cfg.MODEL.DEVICE = "cpu"
    torch.manual_seed(0)
    path = str(tmp_path_factory.mktemp("weights") / "model.pth")
    torch.save({"model": build_model(cfg).state_dict()}, path)
    return path


def _frame(t):
    f = np.full((H, W, 3), 50, np.uint8)
    cv2.circle(f, (30 + 12 * t, 48), 18, (0, 200, 255), -1)
    cv2.rectangle(f, (100, 10 + 5 * t), (140, 40 + 5 * t), (255, 60, 0), -1)
    return f


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("video") / "in.mp4")
    w = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (W, H))
    if not w.isOpened():
        pytest.skip("OpenCV cannot write mp4v here")
    for t in range(N):
        w.write(_frame(t))
    w.release()
    return path


@pytest.fixture(scope="module")
def frames_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("frames")
    for t in range(N):  # natural order: 2 before 10
        cv2.imwrite(str(d / f"{t * 4}.jpg"), _frame(t))
    return str(d)


def _run(capsys, *argv, weights=None, opts=()):
    args = ["--config-file", CONFIG, *argv, "--opts", *FAST_OPTS, *opts]
    if weights:
        args += ["MODEL.WEIGHTS", weights]
    rc = demo.main(args)
    return rc, capsys.readouterr()


def _read_video(path):
    cap = cv2.VideoCapture(path)
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    fps = cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    return frames, fps


def _check_json(path, length):
    with open(path) as f:
        results = json.load(f)
    assert isinstance(results, list) and results, "random weights with threshold 0 must give some tracks"
    for r in results:
        assert set(r) == {"video_id", "score", "category_id", "segmentations"}
        assert r["video_id"] == 1 and 0.0 <= r["score"] <= 1.0
        assert 1 <= r["category_id"] <= 5  # no dataset mapping: contiguous + 1
        assert len(r["segmentations"]) == length
        assert any(s is not None for s in r["segmentations"])
        for s in r["segmentations"]:
            assert s is None or (s["size"] == [H, W] and isinstance(s["counts"], str))
    return results


def _no_temporaries(folder):
    return [f for f in os.listdir(folder) if f.startswith(".")]


def test_demo_video_to_mp4_and_json(tmp_path, capsys, video, weights):
    out, js = str(tmp_path / "out.mp4"), str(tmp_path / "res.json")
    rc, cap = _run(capsys, "--video-input", video, "--output", out, "--output-json", js,
                   "--confidence-threshold", "0", weights=weights)
    assert rc == 0, cap.err
    frames, fps = _read_video(out)
    assert len(frames) == N and frames[0].shape == (H, W, 3)
    assert abs(fps - 10.0) < 0.5
    _check_json(js, N)
    assert "FPS" in cap.out
    assert _no_temporaries(tmp_path) == []


def test_demo_folder_to_folder_and_json(tmp_path, capsys, frames_dir, weights):
    out, js = str(tmp_path / "vis"), str(tmp_path / "res.json")
    rc, cap = _run(capsys, "--input", frames_dir, "--output", out, "--output-json", js,
                   "--confidence-threshold", "0", weights=weights)
    assert rc == 0, cap.err
    assert sorted(os.listdir(out)) == sorted(os.listdir(frames_dir))
    for name in os.listdir(out):
        assert cv2.imread(os.path.join(out, name)).shape == (H, W, 3)
    _check_json(js, N)
    assert _no_temporaries(tmp_path) == []


def test_demo_folder_to_mp4_keeps_size_and_fps_flag(tmp_path, capsys, frames_dir, weights):
    out = str(tmp_path / "out.mp4")
    rc, cap = _run(capsys, "--input", os.path.join(frames_dir, "*.jpg"), "--output", out, "--fps", "5",
                   weights=weights)
    assert rc == 0, cap.err
    frames, fps = _read_video(out)
    assert len(frames) == N and frames[0].shape == (H, W, 3) and abs(fps - 5.0) < 0.5


def _bad_cases(tmp, video, frames_dir, weights):
    empty = tmp / "empty"
    empty.mkdir()
    zero = tmp / "zero.mp4"
    zero.write_bytes(b"")
    corrupt = tmp / "corrupt.mp4"
    corrupt.write_bytes(np.random.RandomState(0).bytes(4096))
    a_file = tmp / "a_file"
    a_file.write_text("x")
    bad_w = tmp / "bad.pth"
    with open(weights, "rb") as f:
        bad_w.write_bytes(f.read(1000))  # truncated checkpoint
    ok_out = ["--output", str(tmp / "out.mp4"), "--output-json", str(tmp / "out.json")]
    return {
        "missing video": (["--video-input", str(tmp / "nope.mp4"), *ok_out], weights),
        "missing folder": (["--input", str(tmp / "nope_dir"), *ok_out], weights),
        "empty folder": (["--input", str(empty), *ok_out], weights),
        "zero-byte video": (["--video-input", str(zero), *ok_out], weights),
        "corrupt video": (["--video-input", str(corrupt), *ok_out], weights),
        "unwritable output": (["--video-input", video, "--output", str(a_file / "out.mp4")], weights),
        "output folder missing": (["--input", frames_dir, "--output", str(tmp / "no" / "dir" / "vis")], weights),
        "unwritable json": (["--video-input", video, "--output", str(tmp / "out.mp4"),
                             "--output-json", str(a_file / "r.json")], weights),
        "missing weights": (["--video-input", video, *ok_out], str(tmp / "missing.pth")),
        "corrupt weights": (["--video-input", video, *ok_out], str(bad_w)),
    }


CASES = ["missing video", "missing folder", "empty folder", "zero-byte video", "corrupt video", "unwritable output",
         "output folder missing", "unwritable json", "missing weights", "corrupt weights"]


@pytest.mark.parametrize("case", CASES)
def test_demo_bad_input_one_line_exit_2_nothing_written(tmp_path, capsys, video, frames_dir, weights, case):
    argv, w = _bad_cases(tmp_path, video, frames_dir, weights)[case]
    before = sorted(os.listdir(tmp_path))
    rc, cap = _run(capsys, *argv, weights=w)
    assert rc == 2
    lines = [ln for ln in cap.err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("demo.py: error: "), cap.err
    assert "Traceback" not in cap.err
    assert sorted(os.listdir(tmp_path)) == before  # no output, no temporary left behind


def test_demo_cli_exit_code_and_single_stderr_line(tmp_path):
    p = subprocess.run(
        [sys.executable, DEMO, "--config-file", CONFIG, "--video-input", str(tmp_path / "missing.mp4"),
         "--output", str(tmp_path / "o.mp4"), "--opts", "MODEL.DEVICE", "cpu"],
        cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=300,
    )
    assert p.returncode == 2
    lines = [ln for ln in p.stderr.splitlines() if ln.strip() and "Warning" not in ln and "import " not in ln]
    assert len(lines) == 1 and "missing.mp4" in lines[0], p.stderr
    assert os.listdir(tmp_path) == []
