"""tools/benchmark.py (library: stmask_d2.engine.benchmark) smoke runs on tiny frames (numbers are printed, never
asserted)."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest

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


@pytest.mark.slow
def test_benchmark_one_run_prints_stages_flops_mask_rcnn_variants_and_long_video():
    """One launch of the tool covers every report (each launch costs the imports, the calibration and two model
    builds): stage table, FPS, memory, FLOPs, the Mask R-CNN ratio, --compare and --long-video."""
    out = _run("--frames", "1", "--warmup", "0", "--long-video", "3", "--compare",
               "nofold,channels_last,dcn_grid_sample", "--rounds", "1", *TINY)
    assert re.search(r"^calibration: torchvision ResNet-18 fp32 forward, batch 8, 224x224, 2 threads: \d+\.\d+ s",
                     out, re.M), out
    assert "inference options: FOLD_BN True" in out
    for stage in ["backbone+FPN", "head", "NMS+masks", "TF", "tracker", "paste+RLE", "total"]:
        assert re.search(rf"^{re.escape(stage)}\s+\d+\.\d+\s+\d+\.\d+%$", out, re.M), (stage, out)
    assert re.search(r"STMask end-to-end: \d+\.\d+ FPS", out), out
    assert re.search(r"peak RSS: \d+ MiB", out), out
    assert re.search(r"\d+\.\d+ GFLOPs/frame", out), out
    assert "detections/frame:" in out and "after      3 frames" in out
    assert re.search(r"Mask R-CNN R50-FPN .*: \d+\.\d+ ms/frame, \d+\.\d+ FPS, \d+\.\d+ detections/frame", out), out
    assert re.search(r"ratio STMask / Mask R-CNN time per frame: \d+\.\d+", out), out
    for v in ("nofold", "channels_last", "dcn_grid_sample"):
        assert re.search(rf"^{v}\s+\d+\.\d+\s+\d+\.\d+\s+\d+\.\d+$", out, re.M), out


def test_benchmark_user_errors_are_one_line(tmp_path, capsys):
    from stmask_d2.engine.benchmark import main
    from stmask_d2.utils.errors import run_cli

    assert run_cli(main, ["--config-file", str(tmp_path / "nope.yaml"), "--device", "cpu", "--no-calibration"],
                   prog="benchmark.py") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("benchmark.py: error: Config file")
    assert run_cli(main, ["--config-file", CONFIG, "--device", "cpu", "--no-calibration", "--compare", "warp"],
                   prog="benchmark.py") == 2
    assert "--compare: unknown variant(s) ['warp']" in capsys.readouterr().err.strip().splitlines()[-1]


def test_synthetic_video_is_streamed_and_deterministic():
    from stmask_d2.engine import benchmark

    gen = benchmark.synthetic_video(3, 36, 64, seed=1)
    assert not isinstance(gen, (list, tuple))  # a generator: one frame at a time
    a = list(gen)
    b = list(benchmark.synthetic_video(3, 36, 64, seed=1))
    assert len(a) == 3 and a[0].shape == (36, 64, 3) and a[0].dtype == np.uint8
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], a[2])  # objects move


def test_benchmark_network_forward_on_a_config(capsys):
    """tools/benchmark_network_forward.py (in-process): per-part times of the config's frame network."""
    from stmask_d2.engine.benchmark_network import main

    assert main(["--config-file", CONFIG, "--size", "40x72", "--iters", "1"]) == 0
    out = capsys.readouterr().out
    assert "input 1x3x64x96" in out  # padded to the size divisibility (32)
    for part in (r"backbone\+FPN", r"protonet", r"head \(separate\)", r"head \(grouped \)",
                 r"total \((separate|grouped)\)"):
        assert re.search(rf"^  {part}\s+\d+\.\d+ ms", out, re.M), (part, out)
    assert main(["--config-file", CONFIG, "--size", "40by72"]) == 2
    assert "--size '40by72'" in capsys.readouterr().err


def test_benchmark_train_step_compares_settings_in_one_run(capsys):
    """tools/benchmark_train_step.py (in-process): the configured step and a combined variant, same batches."""
    from stmask_d2.engine.benchmark_train import main

    from stmask_d2.layers import cpu_deform_conv_impl, cpu_max_pool_impl, cpu_roi_align_impl

    assert main(["--config-file", CONFIG, "--steps", "1", "--warmup", "0", "--rounds", "1", "--threads", "0",
                 "--no-calibration", "--compare",
                 "adamw_unfused+dcn_grid_sample,fp32,head_per_level+roi_align_torchvision+max_pool_torch"]) == 0
    out = capsys.readouterr().out
    assert "optimizer ADAMW (ADAMW_FUSED True), AMP False" in out
    rows = {m.group(1): (float(m.group(2)), float(m.group(3))) for m in
            re.finditer(r"^(\S+)\s+(\d+\.\d+)\s+\d+\.\d+\s+\d+\.\d+\s+(-?\d+\.\d+|nan)$", out, re.M)}
    assert set(rows) == {"configured", "adamw_unfused+dcn_grid_sample", "fp32",
                         "head_per_level+roi_align_torchvision+max_pool_torch"}, out
    assert rows["fp32"][1] == rows["configured"][1]  # the same step on the same batches and weights
    # level by level + torchvision's RoIAlign + F.max_pool2d: the same function, so the same first loss (4 decimals)
    assert abs(rows["head_per_level+roi_align_torchvision+max_pool_torch"][1] - rows["configured"][1]) <= 2e-4
    assert cpu_deform_conv_impl() == "gather" and cpu_roi_align_impl() == "separable"  # restored
    assert cpu_max_pool_impl() == "channels_last"
    assert main(["--compare", "warp", "--no-calibration"]) == 2
    assert "--compare: unknown variant(s) ['warp']" in capsys.readouterr().err


def test_benchmark_train_step_against_another_checkout(capsys, tmp_path):
    """--against: another checkout's step (here this one's, in a subprocess) joins the turns and gets a row with
    the same first loss as the configured step (same config, weights and data); a folder that is no checkout
    gives one line and exit code 2."""
    from stmask_d2.engine.benchmark_train import main
    from stmask_d2.engine.setup import REPO_ROOT

    assert main(["--config-file", CONFIG, "--steps", "1", "--warmup", "0", "--rounds", "1", "--threads", "0",
                 "--no-calibration", "--compare", "", "--against", REPO_ROOT]) == 0
    out = capsys.readouterr().out
    rows = {m.group(1): float(m.group(2)) for m in
            re.finditer(r"^(configured|against \S+)\s+\d+\.\d+\s+\d+\.\d+\s+\d+\.\d+\s+(-?\d+\.\d+)$",
                        out, re.M)}
    assert len(rows) == 2, out
    assert abs(rows.pop("configured") - rows.popitem()[1]) <= 2e-4
    assert main(["--no-calibration", "--against", str(tmp_path)]) == 2
    assert "not a stmask_d2 checkout" in capsys.readouterr().err
