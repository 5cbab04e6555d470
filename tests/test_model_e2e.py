"""End-to-end on CPU with synthetic data: train a few iterations (frame pairs, TF on), evaluate videos with
train_net's --eval-only path and YTVISEvaluator, evaluate frames with COCOEvaluator, train on single images."""
import json
import os

import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.utils.events import EventStorage

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from stmask_d2.data.split import split_ytvis_json  # noqa: E402
from stmask_d2.data.synthetic import make_synthetic_vis  # noqa: E402

from stmask_d2.data import register_ytvis_frames, register_ytvis_instances  # noqa: E402
from stmask_d2.engine import STMaskTrainer, setup_cfg  # noqa: E402
from stmask_d2.evaluation import evaluate_ytvis  # noqa: E402

CONFIG = os.path.join(ROOT, "configs", "synthetic", "STMask_R18_synthetic_TF.yaml")
TINY = [
    "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", "96", "INPUT.MIN_SIZE_TEST", "64",
    "INPUT.MAX_SIZE_TEST", "96", "SOLVER.IMS_PER_BATCH", "2", "DATALOADER.NUM_WORKERS", "0",
    "MODEL.DEVICE", "cpu", "SOLVER.WARMUP_ITERS", "1",
]


def _register(name, fn, *args):
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    fn(name, *args)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    json_file = make_synthetic_vis(str(root), num_videos=6, num_frames=4, height=64, width=96, seed=3)
    train, valid = split_ytvis_json(json_file, out_dir=str(root), valid_fraction=0.34, seed=0)
    image_root = os.path.join(str(root), "JPEGImages")
    _register("e2e_train", register_ytvis_instances, {}, train, image_root)
    _register("e2e_valid", register_ytvis_instances, {}, valid, image_root)
    _register("e2e_valid_frames", register_ytvis_frames, "e2e_valid")
    return {"root": str(root), "valid_json": valid}


class Args:
    def __init__(self, opts, eval_only=False, resume=False):
        self.config_file = CONFIG
        self.opts = opts
        self.eval_only = eval_only
        self.resume = resume
        self.register_ytvis = []


@pytest.mark.slow
def test_train_then_eval_only(dataset, tmp_path):
    from stmask_d2.engine import train_net

    out = str(tmp_path / "run")
    opts = TINY + ["SOLVER.MAX_ITER", "3", "OUTPUT_DIR", out, "DATASETS.TRAIN", '("e2e_train",)',
                   "DATASETS.TEST", '("e2e_valid",)', "TEST.YTVIS_HOTA", "True"]
    train_net.main(Args(opts))
    weights = os.path.join(out, "model_final.pth")
    assert os.path.isfile(weights)
    metrics = [json.loads(line) for line in open(os.path.join(out, "metrics.json"))]
    losses = [m for m in metrics if "loss_boxshift" in m]
    assert losses and all(torch.isfinite(torch.tensor(m["total_loss"])) for m in losses)

    res = train_net.main(Args(opts + ["MODEL.WEIGHTS", weights], eval_only=True))
    assert set(res["segm"]) >= {"AP", "AP50", "AP75", "AR1", "AR10", "HOTA"}
    results_file = os.path.join(out, "inference", "e2e_valid", "results.json")
    results = json.load(open(results_file))
    gt = json.load(open(dataset["valid_json"]))
    lengths = {v["id"]: v["length"] for v in gt["videos"]}
    sizes = {v["id"]: [v["height"], v["width"]] for v in gt["videos"]}
    for r in results:
        assert len(r["segmentations"]) == lengths[r["video_id"]]
        assert all(s is None or s["size"] == sizes[r["video_id"]] for s in r["segmentations"])
    # the file written by --eval-only is accepted by the evaluator and gives the numbers it reported
    metrics = evaluate_ytvis(dataset["valid_json"], results_file)
    assert 0.0 <= metrics["AP"] <= 1.0
    assert abs(metrics["AP"] * 100 - res["segm"]["AP"]) < 1e-6 or (metrics["AP"] == 0 and res["segm"]["AP"] == 0)
    assert os.path.isfile(os.path.join(out, "inference", "e2e_valid", "results.zip"))


@pytest.mark.slow
def test_frame_level_coco_evaluation(dataset, tmp_path):
    cfg = setup_cfg(Args(TINY + ["OUTPUT_DIR", str(tmp_path), "DATASETS.TEST", '("e2e_valid_frames",)']))
    model = STMaskTrainer.build_model(cfg)
    res = STMaskTrainer.test(cfg, model)
    assert "segm" in res and "bbox" in res


@pytest.mark.slow
def test_single_image_training_batch(dataset, tmp_path):
    """COCO-style batches (one image per sample, no pair) train with the pair-only losses at zero."""
    from detectron2.data import DatasetMapper
    from detectron2.modeling import build_model

    cfg = setup_cfg(Args(TINY + ["OUTPUT_DIR", str(tmp_path), "INPUT.MASK_FORMAT", "bitmask"]))
    model = build_model(cfg)
    model.train()
    frames = DatasetCatalog.get("e2e_valid_frames")
    mapper = DatasetMapper(cfg, is_train=True)
    batch = [mapper(frames[0]), mapper(frames[1])]
    with EventStorage():
        losses = model(batch)
    assert losses["loss_boxshift"].item() == 0.0 and losses["loss_maskshift"].item() == 0.0
    assert float(losses["loss_class"]) > 0
    sum(losses.values()).backward()
