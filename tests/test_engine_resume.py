"""Resume after SIGKILL (issue 6.1): a run killed once a checkpoint exists and restarted with --resume ends at the
same iteration with the same weights as an uninterrupted run; metrics.json continues; files are written atomically."""
import json
import os
import signal
import subprocess
import time

import pytest
import torch

from _tiny_setup import (ROOT, TINY_OPTS, dataset_name, dataset_opts, register_args,
                         run_train_net, subprocess_env, train_net_cmd)

MAX_ITER = 12
PERIOD = 3


def _args(data, out_dir, *extra):
    json_file, image_root = data
    return [*extra, *register_args(dataset_name(json_file), json_file, image_root), "--config-file",
            os.path.join(ROOT, "configs/synthetic/STMask_R18_synthetic_TF.yaml"), *TINY_OPTS,
            *dataset_opts(dataset_name(json_file)), "SOLVER.MAX_ITER", str(MAX_ITER),
            "SOLVER.CHECKPOINT_PERIOD", str(PERIOD), "OUTPUT_DIR", str(out_dir)]


def _iterations(metrics_json):
    with open(metrics_json) as f:
        return [json.loads(line)["iteration"] for line in f if line.strip()]


def _model(path):
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted_run(tiny_data, tmp_path):
    out = tmp_path / "killed"
    proc = subprocess.Popen(train_net_cmd(*_args(tiny_data, out)), cwd=ROOT, env=subprocess_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    target = out / f"model_{2 * PERIOD - 1:07d}.pth"  # the second checkpoint (iteration 5)
    deadline = time.time() + 180
    try:
        while not target.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        tag_file = out / "last_checkpoint"  # the tag is updated just after the checkpoint's rename
        while target.exists() and proc.poll() is None and time.time() < deadline and not (
                tag_file.exists() and tag_file.read_text() == target.name):
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert target.exists(), "the first run ended or timed out before its second checkpoint"
    assert not (out / "model_final.pth").exists(), "the run finished before it could be killed"
    tag = (out / "last_checkpoint").read_text()
    ckpt_iter = int(tag[len("model_"):-len(".pth")])
    assert ckpt_iter >= 2 * PERIOD - 1
    before = _iterations(out / "metrics.json")
    assert before and before == sorted(before)

    r = run_train_net(*_args(tiny_data, out, "--resume"))
    assert r.returncode == 0, r.stderr[-3000:]
    log = (out / "log.txt").read_text()
    assert f"Loading from {out / tag}" in log
    assert f"Starting training from iteration {ckpt_iter + 1}" in log
    assert (out / "model_final.pth").exists()
    after = _iterations(out / "metrics.json")
    # records continue from the checkpoint: strictly increasing, none lost before it, ending at MAX_ITER - 1
    assert after == sorted(set(after)) and after[-1] == MAX_ITER - 1
    assert [i for i in after if i <= ckpt_iter] == [i for i in before if i <= ckpt_iter]
    assert any(i > ckpt_iter for i in after)
    assert not [p for p in os.listdir(out) if p.endswith(".tmp")]

    # the same run without interruption: bit-identical final weights (iteration, optimizer, scheduler, data order
    # and RNG were all restored)
    ref = tmp_path / "uninterrupted"
    r = run_train_net(*_args(tiny_data, ref))
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = _model(out / "model_final.pth"), _model(ref / "model_final.pth")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    ck = torch.load(out / "model_final.pth", map_location="cpu", weights_only=True)
    t = ck["trainer"]
    assert ck["iteration"] == MAX_ITER - 1 and "optimizer" in t["_trainer"] and "LRScheduler" in t["hooks"]
    assert {"python", "numpy", "torch"} <= set(t["rng"])


@pytest.mark.slow
def test_truncated_checkpoint_and_stale_tag(tiny_data, tmp_path):
    """A tag that points at a missing file is an error, not a silent fresh start (issue 11); a truncated checkpoint
    is a one-line error that leaves the folder as it was."""
    from stmask_d2.engine import AtomicDetectionCheckpointer
    from stmask_d2.engine.errors import CheckpointError, MissingWeightsError

    model = torch.nn.Linear(3, 2)
    ck = AtomicDetectionCheckpointer(model, save_dir=str(tmp_path))
    ck.save("model_0000001")
    assert ck.has_checkpoint()
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000001.pth"]  # no temporary file left
    (tmp_path / "last_checkpoint").write_text("model_0000009.pth")
    with pytest.raises(MissingWeightsError, match="model_0000009.pth"):
        ck.resume_or_load("", resume=True)
    data = (tmp_path / "model_0000001.pth").read_bytes()
    (tmp_path / "model_0000002.pth").write_bytes(data[: len(data) // 2])
    (tmp_path / "last_checkpoint").write_text("model_0000002.pth")
    with pytest.raises(CheckpointError, match="model_0000002.pth"):
        ck.resume_or_load("", resume=True)
    assert (tmp_path / "model_0000001.pth").read_bytes() == data

    out = tmp_path / "out"
    out.mkdir()
    (out / "model_0000002.pth").write_bytes(data[: len(data) // 2])
    (out / "last_checkpoint").write_text("model_0000002.pth")
    r = run_train_net(*_args(tiny_data, out, "--resume"))
    assert r.returncode == 2, r.stderr[-3000:]
    lines = r.stderr.strip().splitlines()
    assert lines[-1].startswith("train_net.py: error: --resume: checkpoint") and "truncated" in lines[-1], \
        r.stderr[-2000:]
    assert "--start-over" in lines[-1]
    assert "Traceback" not in r.stderr
    assert (out / "model_0000002.pth").stat().st_size == len(data) // 2
