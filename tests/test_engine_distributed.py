"""Multi-process (issue 6.2): ``train_net.py --num-gpus 2 MODEL.DEVICE cpu`` trains with DDP over gloo, and
--eval-only with 2 processes gathers exactly the results of 1 process on the same weights."""
import json
import os

import pytest
import torch

from _tiny_setup import (CONFIG, TINY_OPTS, dataset_name, dataset_opts, register_args,
                         run_train_net)


def _args(data, out_dir, flags=(), opts=()):
    json_file, image_root = data
    name = dataset_name(json_file)
    return [*register_args(name, json_file, image_root), "--config-file", CONFIG, "--dist-url", "auto", *flags,
            *TINY_OPTS, *dataset_opts(name, name), "OUTPUT_DIR", str(out_dir), *opts]


def _results(out_dir, data):
    with open(os.path.join(out_dir, "inference", dataset_name(data[0]), "results.json")) as f:
        res = json.load(f)
    return sorted(res, key=lambda r: (r["video_id"], -r["score"], r["category_id"], json.dumps(r["segmentations"])))


@pytest.mark.slow
def test_two_process_training_and_gathered_evaluation(tiny_data, tmp_path):
    out2 = tmp_path / "train2"
    r = run_train_net(*_args(tiny_data, out2, ["--num-gpus", "2"], ["SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "3",
                                                                     "SOLVER.CHECKPOINT_PERIOD", "100"]), timeout=300)
    assert r.returncode == 0, r.stderr[-4000:]
    assert (out2 / "model_final.pth").exists() and (out2 / "log.txt.rank1").exists()
    assert "Starting training from iteration 0" in (out2 / "log.txt").read_text()
    ck = torch.load(out2 / "model_final.pth", map_location="cpu", weights_only=True)
    assert ck["iteration"] == 2
    assert all(torch.isfinite(v).all() for v in ck["model"].values() if v.is_floating_point())
    assert not any(k.startswith("module.") for k in ck["model"])  # saved without the DDP wrapper

    # evaluation of these weights with 1 and 2 processes: identical gathered results
    weights = str(out2 / "model_final.pth")
    res = {}
    for n in (1, 2):
        out = tmp_path / f"eval{n}"
        r = run_train_net(*_args(tiny_data, out, ["--eval-only", "--num-gpus", str(n)], ["MODEL.WEIGHTS", weights]),
                          timeout=300)
        assert r.returncode == 0, r.stderr[-4000:]
        assert "Skip loading parameter" not in (out / "log.txt").read_text()
        res[n] = _results(out, tiny_data)
    assert len(res[1]) > 0
    assert {r["video_id"] for r in res[1]} == {1, 2, 3, 4}
    assert res[1] == res[2]
    assert res[2] == _results(out2, tiny_data)  # the evaluation at the end of the 2-process training run
