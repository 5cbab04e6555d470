"""tools/export_model.py: the exported frame network (ONNX in onnxruntime, TorchScript) computes the eager outputs
(1e-4 of each output's scale) and gives the same tracks on a synthetic video under the Python tracker;
demo --exported runs; an operator that cannot be exported is named in one line."""
import copy
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from _tiny_setup import one_thread  # noqa: F401  (autouse)

pytest.importorskip("onnxruntime")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs", "synthetic", "STMask_R18_synthetic_TF.yaml")
OPTS = ["INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "96", "MODEL.STMASK.TEST.SCORE_THRESH", "0.0",
        "MODEL.STMASK.TEST.NMS_TOP_K", "60", "MODEL.STMASK.TEST.MAX_DETECTIONS", "8"]
H, W = 64, 96


@pytest.fixture(scope="module")
def model():
    from stmask_d2.engine import export_model
    torch.manual_seed(0)
    _, m = export_model.build_model(CONFIG, OPTS)
    with torch.no_grad():  # non-zero biases and offsets: exercise borders and deformable sampling
        for name, p in m.named_parameters():
            if name.endswith("bias") or "offset" in name:
                p.normal_(0, 0.1)
    return m


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    from stmask_d2.export import export_model

    d = tmp_path_factory.mktemp("export")
    onnx_files = export_model(model, str(d / "m.onnx"), "onnx", H, W)
    ts_files = export_model(model, str(d / "m.pt"), "torchscript", H, W)
    return onnx_files, ts_files


def _frames(n):
    from stmask_d2.data.synthetic import synthetic_video

    return list(synthetic_video(n, H, W, seed=3))


def _assert_close(a, b):
    scale = max(1.0, b.abs().max().item())
    assert (a - b).abs().max().item() <= 1e-4 * scale, ((a - b).abs().max().item(), scale)


@pytest.mark.parametrize("kind", ["onnx", "torchscript"])
def test_exported_outputs_equal_eager(model, exported, kind):
    from stmask_d2.export import ExportedNetwork, FrameNetwork, TFNetwork

    files = exported[0] if kind == "onnx" else exported[1]
    assert files[0].endswith(".onnx" if kind == "onnx" else ".pt")
    if kind == "onnx":
        assert files[1].endswith(".tf.onnx") and os.path.isfile(files[1])
    net = ExportedNetwork(files[0])
    assert net.kind == kind and net.input_size == (H, W) and net.has_tf
    frame = _frames(1)[0]
    images = model.preprocess([model._frame_tensor(frame, model.test_resize.get_transform(frame))]).tensor
    assert tuple(images.shape[-2:]) == (H, W)
    with torch.inference_mode():
        ref = dict(zip(FrameNetwork(model).output_names, FrameNetwork(model)(images)))
    got = net.run(images)
    assert set(got) == set(ref)
    for k in ref:
        assert got[k].shape == ref[k].shape, k
        _assert_close(got[k], ref[k])
    for m in (1, 5):  # the TF graph takes any number of boxes
        boxes = torch.rand(m, 4) * torch.tensor([W, H, W, H])
        args = (ref["tf_map"], ref["tf_map"].roll(1, -1), ref["tf_up"], ref["tf_up"].roll(2, -2), boxes)
        with torch.inference_mode():
            rd, rc = TFNetwork(model.tf_head)(*args)
        d, c = net.run_tf(*args)
        _assert_close(d, rd)
        _assert_close(c, rc)
    with pytest.raises(ValueError, match="exported for one 64x96 input"):
        net.run(torch.zeros(1, 3, 96, 96))


@pytest.mark.parametrize("kind", ["onnx", "torchscript"])
def test_exported_same_tracks_on_synthetic_video(model, exported, kind):
    from stmask_d2.export import ExportedNetwork, attach_exported

    frames = _frames(5)
    ref = list(model.track_frames(frames, H, W))
    files = exported[0] if kind == "onnx" else exported[1]
    ex = attach_exported(copy.deepcopy(model), ExportedNetwork(files[0]))
    out = list(ex.track_frames(frames, H, W))
    assert sum(len(r) for r in ref) > 0
    for a, b in zip(out, ref):
        assert len(a) == len(b)
        assert torch.equal(a.track_ids, b.track_ids) and torch.equal(a.pred_classes, b.pred_classes)
        torch.testing.assert_close(a.scores, b.scores, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(a.pred_boxes.tensor, b.pred_boxes.tensor, rtol=1e-4, atol=1e-3)
        assert (a.pred_masks != b.pred_masks).float().mean().item() <= 1e-3


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return env


def test_demo_runs_exported_onnx(exported, tmp_path):
    import cv2

    frames_dir = tmp_path / "frames"
    frames_dir.mkdir()
    for t, f in enumerate(_frames(3)):
        cv2.imwrite(str(frames_dir / f"{t:05d}.jpg"), f[:, :, ::-1])
    out_json = tmp_path / "res.json"
    p = subprocess.run([sys.executable, os.path.join(ROOT, "demo", "demo.py"), "--config-file", CONFIG,
                        "--input", str(frames_dir), "--output-json", str(out_json), "--exported", exported[0][0],
                        "--confidence-threshold", "0", "--opts", *OPTS],
                       cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads(out_json.read_text())
    assert res and all(len(r["segmentations"]) == 3 for r in res)


def test_unexportable_operator_is_named_in_one_line(tmp_path):
    out = tmp_path / "g.onnx"
    p = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "export_model.py"), "--config-file", CONFIG,
                        "--format", "onnx", "--output", str(out), "--height", "64", "--width", "96",
                        "--opts", "MODEL.RESNETS.DEFORM_NUM_GROUPS", "2", *OPTS],
                       cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert lines[-1] == ("export_model.py: error: onnx export failed: operator torchvision::deform_conv2d cannot "
                         "be exported to ONNX opset 17."), p.stderr[-2000:]
    assert not p.stdout.strip()
    assert os.listdir(tmp_path) == []  # nothing half-written (the TF graph was exported first)


def test_bad_size_is_one_line(model, tmp_path):
    from stmask_d2.export import ExportError, export_model

    with pytest.raises(ExportError, match="multiples of 32"):
        export_model(model, str(tmp_path / "x.onnx"), "onnx", 60, 96)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("hw", [(1, 5), (4, 1), (1, 1)])
def test_sampled_deform_conv_on_one_pixel_maps_equals_torchvision(hw):
    from torchvision.ops import deform_conv2d

    from stmask_d2.layers.deform_conv import deform_conv2d_sampled

    torch.manual_seed(0)
    x = torch.randn(2, 3, *hw, dtype=torch.float64)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64)
    off = torch.randn(2, 18, *hw, dtype=torch.float64) * 1.5
    mask = torch.rand(2, 9, *hw, dtype=torch.float64)
    ref = deform_conv2d(x, off, w, padding=(1, 1), mask=mask)
    torch.testing.assert_close(deform_conv2d_sampled(x, off, w, padding=(1, 1), mask=mask), ref)
