"""Bad-input matrix of issue 11: one case per item. Every case runs an entry point (train_net.py's ``cli``, the
demo's ``main`` or the evaluator CLI's ``main``, in-process) on one bad input and asserts exit code 2, exactly one
message line, no traceback and no file created or changed anywhere under the case's folder (data, weights and
OUTPUT_DIR included). ``test_matrix_messages`` prints every case with its message (``pytest -s``).

Cases that need a real process (SIGTERM) or a training run (bad frames met by the data loader) are separate
tests below the matrix."""
import json
import os
import pickle
import signal
import socket
import subprocess
import time

import cv2
import numpy as np
import pytest
import torch

from _tiny_setup import one_thread  # noqa: F401  (autouse)
from _tiny_setup import (CONFIG, PY, ROOT, TINY_OPTS, dataset_name, dataset_opts, make_tiny_dataset, register_args,
                         subprocess_env)

MESSAGES = {}


@pytest.fixture(scope="module")
def entry_points():
    from stmask_d2.engine import demo, train_net
    from stmask_d2.evaluation.__main__ import main as eval_main

    return {"train": train_net, "demo": demo, "eval": eval_main}


@pytest.fixture(scope="module")
def tiny_model_pth(tmp_path_factory):
    """A valid .pth of the tiny synthetic model (state dict)."""
    from detectron2.modeling import build_model

    from _tiny_setup import tiny_cfg

    d = tmp_path_factory.mktemp("matrix_weights")
    data = make_tiny_dataset(d / "data", num_videos=1, num_frames=2)
    torch.manual_seed(0)
    model = build_model(tiny_cfg(*data))
    path = d / "model.pth"
    torch.save({"model": model.state_dict()}, path)
    return path


# ---------------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------------
class _Exploit:
    """A pickle whose loading would run ``os.system`` (creates a marker file)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _tree(folder):
    out = {}
    for root, dirs, files in os.walk(folder):
        for d in dirs:
            out[os.path.relpath(os.path.join(root, d), folder) + "/"] = None
        for f in files:
            p = os.path.join(root, f)
            out[os.path.relpath(p, folder)] = open(p, "rb").read()
    return out


def _train_argv(data, out_dir, *extra, opts=()):
    name = dataset_name(data[0])
    return [*register_args(name, *data), "--config-file", CONFIG, *extra, *TINY_OPTS, *dataset_opts(name),
            "OUTPUT_DIR", str(out_dir), *opts]


def _write_json(path, data):
    with open(path, "w") as f:
        json.dump(data, f)


def _edit_json(data, fn):
    d = json.load(open(data[0]))
    fn(d)
    _write_json(data[0], d)


def _frame_path(data, video=0, t=0):
    d = json.load(open(data[0]))
    return os.path.join(data[1], d["videos"][video]["file_names"][t])


def _previous_run(out, final=True):
    out.mkdir(parents=True, exist_ok=True)
    (out / "model_0000009.pth").write_bytes(b"PK\x03\x04 previous checkpoint")
    if final:
        (out / "model_final.pth").write_bytes(b"PK\x03\x04 trained model")
    (out / "last_checkpoint").write_text("model_final.pth" if final else "model_0000009.pth")
    (out / "metrics.json").write_text('{"iteration": 9}\n')


# ---------------------------------------------------------------------------------------------------------------
# the cases: fn(tmp_path, ctx) -> (entry point, argv, words expected in the message)
# ---------------------------------------------------------------------------------------------------------------
def _data(tmp, **kw):
    return make_tiny_dataset(tmp / "data", num_videos=2, num_frames=3, **kw)


def c_unsafe_pkl(tmp, ctx):
    data = _data(tmp)
    w = tmp / "evil.pkl"
    w.write_bytes(pickle.dumps({"model": {"x": _Exploit(tmp / "PWNED")}, "__author__": "x"}, protocol=2))
    return "train", _train_argv(data, tmp / "out", "--eval-only", opts=["MODEL.WEIGHTS", str(w)]), \
        ["evil.pkl", "refused", "posix.system"]


def c_unsafe_pkl_demo(tmp, ctx):
    frames = _frames(tmp / "frames", 64, 96, 2)
    w = tmp / "evil.pkl"
    w.write_bytes(pickle.dumps({"model": {"x": _Exploit(tmp / "PWNED")}, "__author__": "x"}, protocol=2))
    return "demo", _demo_argv(frames, tmp / "out.json", opts=["MODEL.WEIGHTS", str(w)]), ["evil.pkl", "refused"]


def c_pth_with_code(tmp, ctx):
    data = _data(tmp)
    w = tmp / "objects.pth"
    torch.save({"model": {"x": _Exploit(tmp / "PWNED")}}, w)
    return "train", _train_argv(data, tmp / "out", "--eval-only", opts=["MODEL.WEIGHTS", str(w)]), \
        ["objects.pth", "refused", "posix.system", "other than tensors"]


def c_empty_pth(tmp, ctx):
    data = _data(tmp)
    w = tmp / "empty.pth"
    w.write_bytes(b"")
    return "train", _train_argv(data, tmp / "out", "--eval-only", opts=["MODEL.WEIGHTS", str(w)]), \
        ["empty.pth", "empty"]


def c_truncated_pth(tmp, ctx):
    data = _data(tmp)
    w = tmp / "cut.pth"
    raw = ctx["pth"].read_bytes()
    w.write_bytes(raw[: len(raw) // 2])
    return "train", _train_argv(data, tmp / "out", "--eval-only", opts=["MODEL.WEIGHTS", str(w)]), \
        ["cut.pth", "truncated"]


def c_resume_tag_missing_file(tmp, ctx):
    data = _data(tmp)
    _previous_run(tmp / "out")
    (tmp / "out" / "last_checkpoint").write_text("model_0000099.pth")
    return "train", _train_argv(data, tmp / "out", "--resume"), ["model_0000099.pth", "does not exist", "--start-over"]


def c_resume_tag_empty(tmp, ctx):
    data = _data(tmp)
    _previous_run(tmp / "out")
    (tmp / "out" / "last_checkpoint").write_text("")
    return "train", _train_argv(data, tmp / "out", "--resume"), ["last_checkpoint", "empty", "--start-over"]


def c_resume_no_tag(tmp, ctx):
    data = _data(tmp)
    _previous_run(tmp / "out")
    (tmp / "out" / "last_checkpoint").unlink()
    return "train", _train_argv(data, tmp / "out", "--resume"), ["no 'last_checkpoint'", "--start-over"]


def c_resume_unreadable(tmp, ctx):
    data = _data(tmp)
    _previous_run(tmp / "out")  # model_final.pth is not a real zip
    return "train", _train_argv(data, tmp / "out", "--resume"), ["model_final.pth", "cannot be read", "--start-over"]


def c_new_run_over_final_model(tmp, ctx):
    data = _data(tmp)
    _previous_run(tmp / "out")
    return "train", _train_argv(data, tmp / "out"), ["already holds a trained model", "--resume", "--start-over"]


def c_new_run_over_checkpoints(tmp, ctx):
    data = _data(tmp)
    _previous_run(tmp / "out", final=False)
    return "train", _train_argv(data, tmp / "out"), ["already holds checkpoints", "--start-over"]


def _cfg_case(key, value, *words):
    def case(tmp, ctx):
        data = _data(tmp)
        return "train", _train_argv(data, tmp / "out", opts=[key, value]), [key, "out of range", *words]

    case.__name__ = f"c_cfg_{key}"
    return case


def c_ddp_port_in_use(tmp, ctx):
    data = _data(tmp)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    ctx["cleanup"].append(sock.close)
    port = sock.getsockname()[1]
    return "train", ["--num-gpus", "2", "--dist-url", f"tcp://127.0.0.1:{port}",
                     *_train_argv(data, tmp / "out", opts=["SOLVER.IMS_PER_BATCH", "2"])], \
        [str(port), "already in use", "--dist-url auto"]


def c_missing_frame_file(tmp, ctx):
    data = _data(tmp)
    path = _frame_path(data, 1, 2)
    os.remove(path)
    return "train", _train_argv(data, tmp / "out"), ["video id 2", "frame 2", path, "does not exist",
                                                     "DATASETS.CHECK_FILES"]


def c_zero_byte_jpeg(tmp, ctx):
    data = _data(tmp)
    path = _frame_path(data, 0, 1)
    open(path, "wb").close()
    return "train", _train_argv(data, tmp / "out"), ["video id 1", "frame 1", "empty"]


def c_mixed_frame_sizes(tmp, ctx):
    data = _data(tmp)
    cv2.imwrite(_frame_path(data, 0, 0), np.zeros((60, 90, 3), np.uint8))
    return "train", _train_argv(data, tmp / "out"), ["video id 1", "frame 0", "90x60", "96x64"]


def c_rle_longer_than_mask(tmp, ctx):
    data = _data(tmp)
    _edit_json(data, lambda d: d["annotations"][0]["segmentations"][0]["counts"].append(500))
    return "train", _train_argv(data, tmp / "out"), ["annotation id 1", "frame 0", "RLE counts cover", "6144"]


def c_compressed_rle_too_long(tmp, ctx):
    from pycocotools import mask as mask_util

    data = _data(tmp)
    big = mask_util.encode(np.asfortranarray(np.ones((64, 200), np.uint8)))["counts"].decode()
    _edit_json(data, lambda d: d["annotations"][0]["segmentations"].__setitem__(0, {"size": [64, 96], "counts": big}))
    return "train", _train_argv(data, tmp / "out"), ["annotation id 1", "frame 0", "12800"]


def c_bboxes_string(tmp, ctx):
    data = _data(tmp)
    _edit_json(data, lambda d: d["annotations"][0].update(bboxes="1,2,3,4"))
    return "train", _train_argv(data, tmp / "out"), ["annotation id 1", '"bboxes" must be a list']


def c_bboxes_number(tmp, ctx):
    data = _data(tmp)
    _edit_json(data, lambda d: d["annotations"][0].update(bboxes=7))
    return "train", _train_argv(data, tmp / "out"), ["annotation id 1", '"bboxes" must be a list']


def c_bbox_entry_string(tmp, ctx):
    data = _data(tmp)
    _edit_json(data, lambda d: d["annotations"][0]["bboxes"].__setitem__(1, "abcd"))
    return "train", _train_argv(data, tmp / "out"), ["annotation id 1", "frame 1", "bbox must be"]


def c_annotation_id_list(tmp, ctx):
    data = _data(tmp)
    _edit_json(data, lambda d: d["annotations"][0].update(id=[1]))
    return "train", _train_argv(data, tmp / "out"), ["annotation", '"id" must be an integer']


def c_video_id_list(tmp, ctx):
    data = _data(tmp)
    _edit_json(data, lambda d: d["videos"][0].update(id=[1]))
    return "train", _train_argv(data, tmp / "out"), ['"id" must be an integer']


def c_height_not_integer(tmp, ctx):
    data = _data(tmp)
    _edit_json(data, lambda d: d["videos"][1].update(height="64px"))
    return "train", _train_argv(data, tmp / "out"), [data[0], "video id 2", '"height" must be a positive integer']


def c_json_not_utf8(tmp, ctx):
    data = _data(tmp)
    raw = open(data[0], "rb").read().replace(b'"video_0000/', b'"vid\xe9o_0000/', 1)
    open(data[0], "wb").write(raw)
    return "train", _train_argv(data, tmp / "out"), [data[0], "not UTF-8", "0xe9"]


def c_frame_over_pixel_limit_train(tmp, ctx):
    data = _data(tmp)
    return "train", _train_argv(data, tmp / "out", opts=["INPUT.MAX_FRAME_PIXELS", "1000"]), \
        ["96x64", "INPUT.MAX_FRAME_PIXELS = 1000"]


# ---- demo ----
def _frames(folder, h, w, n):
    os.makedirs(folder, exist_ok=True)
    for i in range(n):
        cv2.imwrite(os.path.join(folder, f"{i:03d}.png"), np.full((h, w, 3), (40 * i) % 256, np.uint8))
    return str(folder)


def _demo_argv(frames, out_json, *extra, opts=()):
    return ["--config-file", CONFIG, "--input", frames, "--output-json", str(out_json), *extra,
            "--opts", "MODEL.DEVICE", "cpu", "INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "96", *opts]


def c_demo_frame_over_pixel_limit(tmp, ctx):
    frames = _frames(tmp / "frames", 64, 96, 2)
    return "demo", _demo_argv(frames, tmp / "out.json", opts=["INPUT.MAX_FRAME_PIXELS", "5000"]), \
        ["96x64", "INPUT.MAX_FRAME_PIXELS = 5000"]


def c_demo_1x1_frames_video(tmp, ctx):
    frames = _frames(tmp / "frames", 1, 1, 2)
    return "demo", ["--config-file", CONFIG, "--input", frames, "--output", str(tmp / "out.mp4"),
                    "--opts", "MODEL.DEVICE", "cpu"], ["1x1 pixels", "too small", "folder"]


def c_demo_config_out_of_range(tmp, ctx):
    frames = _frames(tmp / "frames", 64, 96, 2)
    return "demo", _demo_argv(frames, tmp / "out.json", opts=["MODEL.STMASK.TEST.MASK_THRESH", "1.5"]), \
        ["MODEL.STMASK.TEST.MASK_THRESH", "out of range", "[0, 1)"]


def c_demo_truncated_pth(tmp, ctx):
    frames = _frames(tmp / "frames", 64, 96, 2)
    w = tmp / "cut.pth"
    raw = ctx["pth"].read_bytes()
    w.write_bytes(raw[: len(raw) // 3])
    return "demo", _demo_argv(frames, tmp / "out.json", opts=["MODEL.WEIGHTS", str(w)]), ["cut.pth", "truncated"]


# ---- evaluator CLI ----
def c_eval_gt_not_utf8(tmp, ctx):
    data = _data(tmp)
    raw = open(data[0], "rb").read().replace(b'"video_0000/', b'"vid\xe9o_0000/', 1)
    open(data[0], "wb").write(raw)
    res = tmp / "res.json"
    res.write_text("[]")
    return "eval", ["--gt", data[0], "--results", str(res)], [data[0], "not UTF-8", "0xe9"]


CASES = [
    c_unsafe_pkl, c_unsafe_pkl_demo, c_pth_with_code, c_empty_pth, c_truncated_pth,
    c_resume_tag_missing_file, c_resume_tag_empty, c_resume_no_tag, c_resume_unreadable,
    c_new_run_over_final_model, c_new_run_over_checkpoints,
    _cfg_case("SOLVER.IMS_PER_BATCH", "0", "integer >= 1"),
    _cfg_case("SOLVER.MAX_ITER", "0", "integer >= 1"),
    _cfg_case("SOLVER.BASE_LR", "-0.01", "> 0"),
    _cfg_case("SOLVER.CHECKPOINT_PERIOD", "0", "integer >= 1"),
    _cfg_case("DATALOADER.NUM_WORKERS", "-1", ">= 0"),
    _cfg_case("INPUT.MIN_SIZE_TRAIN", "(0,)", "each element"),
    _cfg_case("MODEL.STMASK.TEST.NMS_THRESH", "1.5", "[0, 1]"),
    _cfg_case("MODEL.STMASK.TEST.SCORE_THRESH", "-0.1", "[0, 1)"),
    _cfg_case("MODEL.STMASK.MATCHER.IOU_THRESHOLDS", "[0.4, 1.5]", "[0, 1]"),
    _cfg_case("MODEL.ANCHOR_GENERATOR.KERNEL_SHAPES", "[[3, 0]]", "integer >= 1"),
    _cfg_case("MODEL.ANCHOR_GENERATOR.SCALES", "[0.0]", "> 0"),
    _cfg_case("INPUT.MAX_FRAME_PIXELS", "-5", ">= 0"),
    c_ddp_port_in_use,
    c_missing_frame_file, c_zero_byte_jpeg, c_mixed_frame_sizes, c_rle_longer_than_mask, c_compressed_rle_too_long,
    c_bboxes_string, c_bboxes_number, c_bbox_entry_string, c_annotation_id_list, c_video_id_list,
    c_height_not_integer, c_json_not_utf8, c_frame_over_pixel_limit_train,
    c_demo_frame_over_pixel_limit, c_demo_1x1_frames_video, c_demo_config_out_of_range, c_demo_truncated_pth,
    c_eval_gt_not_utf8,
]


def _run(entry_points, capsys, entry, argv):
    capsys.readouterr()
    if entry == "train":
        with pytest.raises(SystemExit) as e:
            entry_points["train"].cli(argv)
        code = e.value.code
    elif entry == "demo":
        code = entry_points["demo"].main(argv)
    else:
        code = entry_points["eval"](argv)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


_PREFIX = {"train": "train_net.py: error:", "demo": "demo.py: error:", "eval": "error:"}


@pytest.mark.parametrize("case", CASES, ids=[c.__name__[2:] for c in CASES])
def test_bad_input_matrix(entry_points, tiny_model_pth, capsys, tmp_path, case):
    ctx = {"pth": tiny_model_pth, "cleanup": []}
    try:
        entry, argv, words = case(tmp_path, ctx)
        before = _tree(tmp_path)
        code, out, err = _run(entry_points, capsys, entry, argv)
    finally:
        for fn in ctx["cleanup"]:
            fn()
    assert code == 2, (code, err[-3000:])
    lines = [ln for ln in err.splitlines() if ln.startswith(_PREFIX[entry])]
    assert len(lines) == 1, err[-3000:]
    # loggers set up by an earlier in-process test may write to a closed capture stream ("--- Logging error ---"
    # with its own traceback); no other traceback is allowed
    assert err.count("Traceback") == err.count("--- Logging error ---"), err[-3000:]
    assert "weights_only=False" not in err and "weights_only" not in lines[0]
    for w in words:
        assert w in lines[0], (w, lines[0])
    assert _tree(tmp_path) == before, "a file was created or changed"
    assert not (tmp_path / "PWNED").exists(), "the pickle's code ran"
    MESSAGES[case.__name__[2:]] = lines[0]


# ---------------------------------------------------------------------------------------------------------------
# beyond the matrix
# ---------------------------------------------------------------------------------------------------------------
def test_model_zoo_pkl_of_arrays_loads(tiny_model_pth, tmp_path):
    """A Detectron2 model-zoo style .pkl of numpy arrays (and a Caffe2 'blobs' one) loads through the restricted
    unpickler, with the same weights."""
    from stmask_d2.engine import AtomicDetectionCheckpointer

    sd = torch.load(tiny_model_pth, weights_only=True)["model"]
    arrays = {k: v.numpy() for k, v in sd.items()}
    model = torch.nn.Module()
    for name, arr in [("zoo.pkl", {"model": arrays, "__author__": "test", "matching_heuristics": False}),
                      ("caffe2.pkl", {"blobs": dict(arrays)})]:
        (tmp_path / name).write_bytes(pickle.dumps(arr, protocol=2))
        ck = AtomicDetectionCheckpointer(model)
        loaded = ck._load_file(str(tmp_path / name))
        assert set(loaded["model"]) == set(arrays)
        k = next(iter(arrays))
        assert np.array_equal(np.asarray(loaded["model"][k]), arrays[k])


def test_hota_is_minus_one_without_videos(tmp_path):
    from stmask_d2.evaluation.hota import compute_hota

    gt = {"videos": [], "categories": [{"id": 1, "name": "a"}], "annotations": []}
    assert dict(compute_hota(gt, [])) == {"HOTA": -1.0, "DetA": -1.0, "AssA": -1.0}


def test_polygons_and_short_rles_are_counted_in_the_log(tmp_path, caplog):
    from stmask_d2.data import load_ytvis_json

    data = _data(tmp_path)
    d = json.load(open(data[0]))
    d["annotations"][0]["segmentations"][0] = [[1, 2, 3, 4]]  # 2 points
    counts = d["annotations"][1]["segmentations"][0]["counts"]
    d["annotations"][1]["segmentations"][0]["counts"] = counts[:-1]  # short by the last run
    _write_json(data[0], d)
    with caplog.at_level("WARNING"):
        load_ytvis_json(data[0], data[1])
    assert "dropped 1 polygons with fewer than 3 points" in caplog.text
    assert "1 RLE masks have counts covering fewer pixels" in caplog.text


def test_bad_frame_in_loader_one_line_then_skip_and_count(entry_points, capsys, tmp_path):
    """DATASETS.CHECK_FILES False: a zero-byte frame is met by the data loader: one line naming dataset, video id,
    frame index, file and fix, no checkpoint written; with DATALOADER.SKIP_BAD_FRAMES True the run completes and
    the skipped frames are counted in the log."""
    data = make_tiny_dataset(tmp_path / "data", num_videos=2, num_frames=3)
    bad = _frame_path(data, 0, 1)
    open(bad, "wb").close()
    out = tmp_path / "out"
    opts = ["DATASETS.CHECK_FILES", "False", "SOLVER.MAX_ITER", "3", "SOLVER.CHECKPOINT_PERIOD", "100"]
    with pytest.raises(SystemExit) as e:
        entry_points["train"].cli(_train_argv(data, out, opts=opts))
    err = capsys.readouterr().err
    assert e.value.code == 2, err[-3000:]
    lines = [ln for ln in err.splitlines() if ln.startswith("train_net.py: error:")]
    assert len(lines) == 1, err[-3000:]
    for w in (f"dataset '{dataset_name(data[0])}'", "video id 1", "frame 1", bad, "DATALOADER.SKIP_BAD_FRAMES"):
        assert w in lines[0], (w, lines[0])
    assert err.count("Traceback") == err.count("--- Logging error ---"), err[-3000:]
    assert not [p for p in os.listdir(out) if p.endswith(".pth") or p == "last_checkpoint"]
    MESSAGES["loader_bad_frame"] = lines[0]

    out = tmp_path / "out2"  # a new folder: Detectron2 caches its log file handlers by path
    entry_points["train"].cli(_train_argv(data, out, opts=opts + ["DATALOADER.SKIP_BAD_FRAMES", "True"]))
    assert (out / "model_final.pth").exists()
    log = (out / "log.txt").read_text() + capsys.readouterr().err
    assert "Skipped a bad training frame" in log and "1 skipped so far" in log, log[-3000:]


def test_stale_temporaries_are_removed(tmp_path):
    """A temporary of a process that no longer exists (a killed run) is removed by the next writer; one of a
    running process is kept."""
    from stmask_d2.utils.io import atomic_write, remove_stale_temporaries, temp_prefix

    p = subprocess.Popen([PY, "-c", "pass"])
    p.wait()
    dead = temp_prefix(tmp_path / "results.json").replace(f"-{os.getpid()}-", f"-{p.pid}-")
    (tmp_path / (dead + "abcd1234.tmp")).write_text("half")
    (tmp_path / (dead + "dir12345")).mkdir()
    mine = temp_prefix(tmp_path / "other.json") + "zzzz9999.tmp"
    (tmp_path / mine).write_text("in progress")
    assert sorted(remove_stale_temporaries(tmp_path)) == [dead + "abcd1234.tmp", dead + "dir12345"]
    assert sorted(os.listdir(tmp_path)) == [mine]
    atomic_write(str(tmp_path / "results.json"), lambda f: f.write(b"{}"))
    assert sorted(os.listdir(tmp_path)) == [mine, "results.json"]


def test_sigterm_removes_demo_temporaries(tmp_path):
    """SIGTERM while the demo writes: exit 143, no temporary and no output left."""
    frames = _frames(tmp_path / "frames", 64, 96, 400)
    out = tmp_path / "out"
    out.mkdir()
    cmd = [PY, os.path.join(ROOT, "demo", "demo.py"), *_demo_argv(frames, out / "res.json", "--output",
                                                                   str(out / "vis"))]
    p = subprocess.Popen(cmd, cwd=ROOT, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and p.poll() is None:
            tmp_dirs = [n for n in os.listdir(out) if n.startswith(".vis.stmask-")]
            if tmp_dirs and os.listdir(out / tmp_dirs[0]):
                break  # frames are being written
            time.sleep(0.05)
        assert p.poll() is None, p.stderr.read().decode()[-2000:]
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 143, err.decode()[-2000:]
    assert os.listdir(out) == [], os.listdir(out)
    assert "Traceback" not in err.decode()


def test_mapper_reports_a_later_frame_of_another_size(tmp_path):
    """Only each video's first frame is checked at start-up; a later frame of another size is reported by the
    training mapper in one line (or skipped and counted)."""
    from stmask_d2.data import BadFrameError, YTVISPairDatasetMapper, load_ytvis_json

    from _tiny_setup import tiny_cfg

    data = make_tiny_dataset(tmp_path / "data", num_videos=1, num_frames=3)
    path = _frame_path(data, 0, 2)
    cv2.imwrite(path, np.zeros((60, 90, 3), np.uint8))
    video = load_ytvis_json(*data)[0]
    video["dataset_name"] = "my_set"
    cfg = tiny_cfg(*data)
    mapper = YTVISPairDatasetMapper(cfg, is_train=True)
    with pytest.raises(BadFrameError) as e:
        for _ in range(20):  # the reference frame is random: frame 2 is drawn as key or reference
            mapper({"video": video, "key_frame": 2})
    msg = str(e.value)
    assert "\n" not in msg
    for w in ("dataset 'my_set'", "video id 1", "frame 2", path, "90x60", "96x64", "DATALOADER.SKIP_BAD_FRAMES"):
        assert w in msg, (w, msg)
    cfg.DATALOADER.SKIP_BAD_FRAMES = True
    mapper = YTVISPairDatasetMapper(cfg, is_train=True)
    assert mapper({"video": video, "key_frame": 2}) is None and mapper.num_skipped == 1


class _RaisingDataset(torch.utils.data.Dataset):
    def __len__(self):
        return 2

    def __getitem__(self, i):
        from stmask_d2.data import BadFrameError

        raise BadFrameError("dataset 'x', video id 3, frame 1, file 'a.jpg': the file does not exist; fix it.")


def test_error_from_a_dataloader_worker_is_one_line():
    """torch re-raises a worker's exception with the worker's traceback in its message; the reported line is the
    original message only, and it is still a user error."""
    from stmask_d2.engine.errors import is_user_error, one_line

    loader = torch.utils.data.DataLoader(_RaisingDataset(), num_workers=1, batch_size=None)
    with pytest.raises(Exception) as e:
        next(iter(loader))
    assert "Original Traceback" in str(e.value)
    assert is_user_error(e.value)
    assert one_line(e.value) == "dataset 'x', video id 3, frame 1, file 'a.jpg': the file does not exist; fix it."


def test_matrix_messages():
    """Prints the message of every case (``pytest -s``); the last test of this file."""
    for name, line in MESSAGES.items():
        print(f"{name}: {line}")
