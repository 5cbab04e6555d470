"""Shared helpers of the reliability tests: a tiny synthetic YouTube-VIS dataset, the tiny synthetic config and
``train_net.py`` run in a subprocess (CPU only, small inputs)."""
import argparse
import os
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs", "synthetic", "STMask_R18_synthetic_TF.yaml")
PY = sys.executable

TINY_OPTS = [
    "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", "96",
    "INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "96",
    "SOLVER.IMS_PER_BATCH", "1", "DATALOADER.NUM_WORKERS", "0",
    "MODEL.DEVICE", "cpu", "TEST.EVAL_PERIOD", "0", "SOLVER.WARMUP_ITERS", "2",
]


def make_tiny_dataset(out_dir, num_videos=4, num_frames=4, **kw):
    """The synthetic generator's dataset, 64x96 frames; returns (json_file, image_root)."""
    from stmask_d2.data.synthetic import make_synthetic_vis

    json_file = make_synthetic_vis(str(out_dir), num_videos=num_videos, num_frames=num_frames, height=64, width=96,
                                   **kw)
    return json_file, os.path.join(str(out_dir), "JPEGImages")


def register_args(name, json_file, image_root):
    return ["--register-ytvis", name, json_file, image_root]


def dataset_opts(train_name, test_name=None):
    test = f'("{test_name}",)' if test_name else "()"
    return ["DATASETS.TRAIN", f'("{train_name}",)', "DATASETS.TEST", test]


def subprocess_env():
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"  # the machine's cores are shared; 2-process runs would oversubscribe them
    env["MKL_NUM_THREADS"] = "1"
    env.pop("STMASK_DEBUG", None)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


def train_net_cmd(*args):
    return [PY, os.path.join(ROOT, "train_net.py"), *args]


def run_train_net(*args, timeout=240, env=None):
    return subprocess.run(train_net_cmd(*args), cwd=ROOT, env=env or subprocess_env(), capture_output=True,
                          text=True, timeout=timeout)


def dataset_name(json_file):
    """A dataset name unique to ``json_file`` (re-registering a name with another file is an error)."""
    import hashlib

    return "tiny_" + hashlib.md5(os.path.abspath(json_file).encode()).hexdigest()[:10]


def tiny_cfg(json_file, image_root, output_dir="", extra_opts=(), train=True):
    """The tiny config in-process (datasets registered, not frozen), for in-process models / trainers."""
    from stmask_d2.engine.trainer import build_cfg

    name = dataset_name(json_file)
    args = argparse.Namespace(
        config_file=CONFIG,
        opts=TINY_OPTS + dataset_opts(name) + ["DATASETS.TEST", "()", "OUTPUT_DIR", str(output_dir)]
        + list(extra_opts),
        register_ytvis=[[name, json_file, image_root]],
        eval_only=not train,
    )
    return build_cfg(args, freeze=False, check=False)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Module-scoped autouse fixture (import it into a test module): one torch thread for tiny tensors."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: more threads only spin on a shared machine
    yield
    torch.set_num_threads(n)
