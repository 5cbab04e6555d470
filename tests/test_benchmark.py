"""tools/benchmark.py (library: stmask_d2.engine.benchmark) smoke runs on tiny frames (numbers are printed, never
asserted)."""
import os
import re
import subprocess
import sys

import numpy as np

from _tiny_setup import subprocess_env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "tools/benchmark.py")
CONFIG = os.path.join(ROOT, "configs/synthetic/STMask_R18_synthetic_TF.yaml")
TINY = ["--height", "64", "--width", "96", "--opts", "INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "96"]


def _run(*args):
    p = subprocess.run([sys.executable, BENCH, "--config-file", CONFIG, "--device", "cpu", *args],
                       cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    return p.stdout


def test_benchmark_prints_stage_table_fps_memory_flops():
    out = _run("--frames", "3", "--warmup", "1", "--skip-maskrcnn", "--long-video", "3", *TINY)
    for stage in ["backbone+FPN", "head", "NMS+masks", "TF", "tracker", "paste+RLE", "total"]:
        assert re.search(rf"^{re.escape(stage)}\s+\d+\.\d+\s+\d+\.\d+%$", out, re.M), (stage, out)
    assert re.search(r"STMask end-to-end: \d+\.\d+ FPS", out), out
    assert re.search(r"peak RSS: \d+ MiB", out), out
    assert re.search(r"\d+\.\d+ GFLOPs/frame", out), out
    assert "detections/frame:" in out and "after      3 frames" in out
    assert "Mask R-CNN" not in out


def test_benchmark_with_mask_rcnn_prints_ratio():
    out = _run("--frames", "1", "--warmup", "0", "--skip-flops", *TINY)
    assert re.search(r"Mask R-CNN R50-FPN .*: \d+\.\d+ ms/frame, \d+\.\d+ FPS", out), out
    assert re.search(r"ratio STMask / Mask R-CNN time per frame: \d+\.\d+", out), out


def test_benchmark_user_error_is_one_line(tmp_path):
    p = subprocess.run([sys.executable, BENCH, "--config-file", str(tmp_path / "nope.yaml"), "--device", "cpu"],
                       cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert p.returncode == 2
    assert p.stderr.strip().splitlines()[-1].startswith("benchmark.py: error: Config file")


def test_synthetic_video_is_streamed_and_deterministic():
    from stmask_d2.engine import benchmark

    gen = benchmark.synthetic_video(3, 36, 64, seed=1)
    assert not isinstance(gen, (list, tuple))  # a generator: one frame at a time
    a = list(gen)
    b = list(benchmark.synthetic_video(3, 36, 64, seed=1))
    assert len(a) == 3 and a[0].shape == (36, 64, 3) and a[0].dtype == np.uint8
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], a[2])  # objects move


def test_benchmark_calibration_and_variants_in_one_run():
    out = _run("--frames", "1", "--warmup", "0", "--skip-maskrcnn", "--skip-flops", "--compare",
               "nofold,channels_last", "--rounds", "1", *TINY)
    assert re.search(r"^calibration: torchvision ResNet-18 fp32 forward, batch 8, 224x224, 2 threads: \d+\.\d+ s",
                     out, re.M), out
    assert "inference options: FOLD_BN True" in out
    for v in ("nofold", "channels_last"):
        assert re.search(rf"^{v}\s+\d+\.\d+\s+\d+\.\d+\s+\d+\.\d+$", out, re.M), out


def test_benchmark_unknown_variant_is_one_line():
    p = subprocess.run([sys.executable, BENCH, "--config-file", CONFIG, "--device", "cpu", "--no-calibration",
                        "--compare", "warp"], cwd=ROOT, env=subprocess_env(), capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 2 and "--compare: unknown variant(s) ['warp']" in p.stderr.strip().splitlines()[-1]
