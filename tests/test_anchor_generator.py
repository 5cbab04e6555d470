import math

import pytest
import torch

from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_anchor_generator

from stmask_d2.modeling.anchor_generator import FCAAnchorGenerator
from _stmask_cfg import base_cfg  # noqa: E402

STRIDES = [8, 16, 32, 64, 128]
LEVEL_HW = [(48, 80), (24, 40), (12, 20), (6, 10), (3, 5)]  # RC1, 384x640 input


def _features(hw_list=LEVEL_HW):
    return [torch.zeros(1, 1, h, w) for h, w in hw_list]


def _wh(boxes):
    t = boxes.tensor
    return torch.stack([t[:, 2] - t[:, 0], t[:, 3] - t[:, 1]], 1)


def test_rc1_counts():
    ag = FCAAnchorGenerator(strides=STRIDES)
    anchors = ag(_features())
    counts = [len(a) for a in anchors]
    assert counts == [11520, 2880, 720, 180, 45]
    assert sum(counts) == 15345
    assert ag.num_cell_anchors == [3] * 5 and ag.num_anchors == [3] * 5
    assert ag.box_dim == 4 and ag.strides == STRIDES and ag.offset == 0.5
    assert ag.kernel_shapes == [(3, 3), (3, 5), (5, 3)] and ag.num_scales == 1


def test_kernel_anchor_sizes_and_centres():
    ag = FCAAnchorGenerator(strides=STRIDES)
    anchors = ag(_features())
    for s, a in zip(STRIDES, anchors):
        wh = _wh(a).view(-1, 3, 2)
        # (w, h): 3x3 cells, 3h x 5w, 5h x 3w
        expected = torch.tensor([[3 * s, 3 * s], [5 * s, 3 * s], [3 * s, 5 * s]], dtype=torch.float32)
        assert torch.allclose(wh, expected.expand_as(wh))
    # P3: 24x24, 24h x 40w, 40h x 24w; P7: 384x384, 384h x 640w, 640h x 384w
    assert _wh(anchors[0])[:3].tolist() == [[24, 24], [40, 24], [24, 40]]
    assert _wh(anchors[4])[:3].tolist() == [[384, 384], [640, 384], [384, 640]]
    c = anchors[0].get_centers().view(48, 80, 3, 2)
    assert torch.allclose(c[0, 0], torch.tensor([[4.0, 4.0]] * 3))
    assert torch.allclose(c[2, 5, 1], torch.tensor([5.5 * 8, 2.5 * 8]))  # (x, y)


def test_order_contract_matches_default_layout():
    """Index inside a level: (row * W + col) * A + a, a = shape * num_scales + scale."""
    scales = [1.0, 2 ** (1 / 3), 2 ** (2 / 3)]
    ag = FCAAnchorGenerator(strides=[16], scales=scales, kernel_shapes=[[3, 3], [3, 5]])
    assert ag.num_cell_anchors == [6] and ag.num_scales == 3
    (a,) = ag([torch.zeros(1, 1, 4, 7)])
    t = a.tensor.view(4, 7, 6, 4)
    row, col = 2, 5
    for shape_i, (kh, kw) in enumerate([(3, 3), (3, 5)]):
        for scale_i, sc in enumerate(scales):
            box = t[row, col, shape_i * 3 + scale_i]
            cx, cy = (col + 0.5) * 16, (row + 0.5) * 16
            w, h = kw * 16 * sc, kh * 16 * sc
            assert torch.allclose(box, torch.tensor([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]), atol=1e-4)
    assert torch.equal(a.tensor[(row * 7 + col) * 6 + 4], t[row, col, 4])


def test_nine_anchors_with_scales():
    ag = FCAAnchorGenerator(strides=STRIDES, scales=[1.0, 2 ** (1 / 3), 2 ** (2 / 3)])
    assert ag.num_cell_anchors == [9] * 5
    assert sum(len(a) for a in ag(_features())) == 15345 * 3


def test_ratio_mode():
    ag = FCAAnchorGenerator(strides=[8, 16], mode="ratio", aspect_ratios=[[1.0, 0.5, 2.0]], base_cells=3)
    assert ag.kernel_shapes == [(3, 3)] * 3
    a = ag([torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 1, 1)])
    wh = _wh(a[1])
    r = math.sqrt(2)
    expected = torch.tensor([[48, 48], [48 / r, 48 * r], [48 * r, 48 / r]])
    assert torch.allclose(wh, expected, atol=1e-4)
    assert torch.allclose(_wh(a[0])[:3], expected / 2, atol=1e-4)


def test_from_config_and_buffers():
    cfg = base_cfg()
    cfg.MODEL.ANCHOR_GENERATOR.SCALES = [1.0, 2.0]
    ag = build_anchor_generator(cfg, [ShapeSpec(stride=s) for s in STRIDES])
    assert isinstance(ag, FCAAnchorGenerator) and ag.num_cell_anchors == [6] * 5
    assert len(list(ag.buffers())) == 5
    assert ag.state_dict() == {} or all("cell_anchors" not in k for k in ag.state_dict())


def test_vanilla_config_defaults():
    cfg = get_cfg()  # no STMask keys
    cfg.MODEL.ANCHOR_GENERATOR.NAME = "FCAAnchorGenerator"
    ag = build_anchor_generator(cfg, [ShapeSpec(stride=s) for s in STRIDES])
    assert ag.mode == "kernel" and ag.num_cell_anchors == [3] * 5
    assert ag.offset == cfg.MODEL.ANCHOR_GENERATOR.OFFSET


def test_retinanet_train_step_with_fca_anchors():
    from detectron2.modeling import build_model
    from detectron2.structures import Boxes, Instances
    from detectron2.utils.events import EventStorage

    cfg = get_cfg()
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.META_ARCHITECTURE = "RetinaNet"
    cfg.MODEL.BACKBONE.NAME = "build_retinanet_resnet_fpn_backbone"
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    cfg.MODEL.RESNETS.DEPTH = 18
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res3", "res4", "res5"]
    cfg.MODEL.FPN.IN_FEATURES = ["res3", "res4", "res5"]
    cfg.MODEL.FPN.OUT_CHANNELS = 32
    cfg.MODEL.RETINANET.NUM_CLASSES = 3
    cfg.MODEL.RETINANET.NUM_CONVS = 1
    cfg.MODEL.ANCHOR_GENERATOR.NAME = "FCAAnchorGenerator"
    cfg.INPUT.MIN_SIZE_TRAIN = (64,)
    cfg.INPUT.MAX_SIZE_TRAIN = 96
    torch.manual_seed(0)
    model = build_model(cfg)
    assert isinstance(model.anchor_generator, FCAAnchorGenerator)
    model.train()
    inst = Instances((64, 96))
    inst.gt_boxes = Boxes(torch.tensor([[10.0, 12.0, 50.0, 40.0]]))
    inst.gt_classes = torch.tensor([1])
    batch = [{"image": torch.randint(0, 255, (3, 64, 96), dtype=torch.uint8), "instances": inst}]
    with EventStorage():
        losses = model(batch)
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
