"""Every yaml in configs/ loads, builds its real model (no size reduction) and runs one training step (forward +
backward on a frame pair) and one video inference (2 frames, tracker included) on a tiny 64x96 input.

The full forward of all configs takes minutes on 2 cores, so the default run does it for a representative subset
(one config per distinct architecture family: every Table 1/2/4/5 mechanism, the 6 / 9 anchor rows, R50 / R101,
COCO, OVIS / YTVIS 2021, synthetic); the rest of the configs run under the ``slow`` marker
(``pytest -m slow tests/test_configs.py``). Every config is *built* in the default run.
"""
import glob
import os

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from detectron2.structures import BitMasks, Boxes, Instances

from stmask_d2.config import add_stmask_config

from _tiny_setup import one_thread  # noqa: F401

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(
    os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "configs", "**", "*.yaml"), recursive=True)
)
# run in the default suite; every other config runs under `-m slow`
REPRESENTATIVE = {
    "configs/ablations/table1_fca_3x3_3x2_2x3.yaml",  # even FCA kernels
    "configs/ablations/table2_fcb_ali_class_mask_track.yaml",  # FCB(ali) on every calibrated branch
    "configs/ablations/table4_1_baseline.yaml",  # Yolact ratio anchors, no TF (frame-level tracker)
    "configs/ablations/table4_3_fca_fcb_ada_TF.yaml",  # FCA + FCB(ada) on 3 branches + TF
    "configs/ablations/table5_fcb_ada_TF.yaml",  # FCB on 3 anchors per location + TF
    "configs/ablations/table5_fcb_ali.yaml",  # FCB(ali) on ratio anchors
    "configs/ablations/supp_table1_R50_DCN_9anchors.yaml",  # 9 anchors per location
    "configs/coco/yolactpp_R101_DCN_FCA_FCB_ada.yaml",  # COCO, 80 classes, R101-DCN
    "configs/youtubevis_2021/STMask_R50_DCN_ali_TF.yaml",
    "configs/synthetic/STMask_R18_synthetic_TF.yaml",
}
HW = (64, 96)


def load(path):
    cfg = get_cfg()
    add_stmask_config(cfg)
    cfg.merge_from_file(os.path.join(ROOT, path))
    return cfg


def tiny_cfg(path):
    cfg = load(path)
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "", "INPUT.MIN_SIZE_TEST", HW[0],
                         "INPUT.MAX_SIZE_TEST", HW[1]])
    return cfg


def _instances(num_classes, shift):
    inst = Instances(HW)
    boxes = torch.tensor([[8.0 + shift, 8.0, 40.0 + shift, 48.0], [50.0, 10.0 + shift, 90.0, 40.0 + shift]])
    masks = torch.zeros(2, *HW, dtype=torch.bool)
    for i, (x1, y1, x2, y2) in enumerate(boxes.int().tolist()):
        masks[i, y1:y2, x1:x2] = True
    inst.gt_boxes = Boxes(boxes)
    inst.gt_classes = torch.tensor([0, num_classes - 1])
    inst.gt_masks = BitMasks(masks)
    inst.gt_ids = torch.tensor([1, 2])
    return inst


def _train_step(cfg):
    """Build the model of ``cfg`` (seed 0) and run one training forward on a seeded 64x96 frame pair; returns
    (model, frames, losses)."""
    torch.manual_seed(0)
    model = build_model(cfg)
    model.train()
    g = torch.Generator().manual_seed(0)
    frames = [torch.randint(0, 256, (3, *HW), generator=g, dtype=torch.uint8) for _ in range(2)]
    c = cfg.MODEL.STMASK.NUM_CLASSES
    losses = model([{"image": frames, "instances": [_instances(c, 0), _instances(c, 4)]}])
    return model, frames, losses


def run_config(path):
    """Build the model of ``path``; one training step on a 64x96 frame pair; one 2-frame video inference."""
    cfg = tiny_cfg(path)
    model, frames, losses = _train_step(cfg)
    total = sum(losses.values())
    assert torch.isfinite(total), {k: float(v) for k, v in losses.items()}
    total.backward()
    if cfg.MODEL.STMASK.TF.ENABLED:
        assert "loss_boxshift" in losses
    model.eval()
    video = {"frames": [f.permute(1, 2, 0).numpy() for f in frames], "height": HW[0], "width": HW[1],
             "video_id": 1, "length": 2}
    with torch.no_grad():
        (out,) = model([video])
    assert out["length"] == 2 and isinstance(out["tracks"], list)
    return losses, out


def test_configs_found():
    assert len(CONFIGS) > 50
    assert REPRESENTATIVE <= set(CONFIGS), sorted(REPRESENTATIVE - set(CONFIGS))


@pytest.mark.parametrize("path", CONFIGS)
def test_config_builds(path):
    cfg = tiny_cfg(path)
    assert cfg.MODEL.META_ARCHITECTURE == "STMask"
    model = build_model(cfg)
    assert (model.tf_head is not None) == cfg.MODEL.STMASK.TF.ENABLED


@pytest.mark.parametrize("path", sorted(REPRESENTATIVE))
def test_config_trains_and_infers(path):
    run_config(path)


@pytest.mark.slow
@pytest.mark.parametrize("path", sorted(set(CONFIGS) - REPRESENTATIVE))
def test_config_trains_and_infers_all(path):
    run_config(path)


@pytest.mark.parametrize("feature_grad", [True, False])
def test_tf_feature_grad_decides_whether_tf_losses_reach_the_backbone(feature_grad):
    """MODEL.STMASK.TF.FEATURE_GRAD True (released): L_Bshift / L_Mshift reach the backbone and the head's upfeature
    conv; False: only TemporalNet gets their gradients."""
    cfg = tiny_cfg("configs/synthetic/STMask_R18_synthetic_TF.yaml")
    cfg.MODEL.STMASK.TF.FEATURE_GRAD = feature_grad
    model, _, losses = _train_step(cfg)
    assert float(losses["loss_boxshift"].detach()) > 0
    (losses["loss_boxshift"] + losses["loss_maskshift"]).backward()
    backbone = [p.grad for p in model.backbone.parameters() if p.requires_grad]
    reached = any(gr is not None and bool(gr.abs().sum() > 0) for gr in backbone)
    assert reached == feature_grad
    assert any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in model.tf_head.parameters())
