"""ResNet-DCN (per-block DCN placement, Detectron2-compatible names) and Yolact FPN (docs/METHOD.md §1, RC1)."""
import importlib.util
import sys
import types

import pytest
import torch
from detectron2.layers import ShapeSpec

from stmask_d2.modeling.backbone import (
    DeformBottleneckBlock,
    YolactFPN,
    build_stmask_resnet_backbone,
    build_stmask_resnet_fpn_backbone,
)
from _stmask_cfg import base_cfg  # noqa: E402


def _cfg(depth=50, interval=2, **kw):
    cfg = base_cfg()
    cfg.MODEL.RESNETS.DEPTH = depth
    cfg.MODEL.RESNETS.DEFORM_INTERVAL = interval
    if depth in (18, 34):
        cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    for k, v in kw.items():
        setattr(cfg.MODEL.RESNETS, k, v)
    return cfg


def _deform_sets(resnet):
    return {
        name: {i for i, b in enumerate(getattr(resnet, name)) if hasattr(b, "conv2_offset")}
        for name in ("res2", "res3", "res4", "res5")
    }


def test_dcn_placement_r50_interval2():
    r = build_stmask_resnet_backbone(_cfg(50, 2), ShapeSpec(channels=3))
    assert _deform_sets(r) == {"res2": set(), "res3": {0, 2}, "res4": {0, 2, 4}, "res5": {0, 2}}


def test_dcn_placement_r101_interval3():
    r = build_stmask_resnet_backbone(_cfg(101, 3), ShapeSpec(channels=3))  # built, never run
    assert _deform_sets(r) == {"res2": set(), "res3": {0, 3}, "res4": set(range(0, 23, 3)), "res5": {0}}
    b = r.res4[3]
    assert isinstance(b, DeformBottleneckBlock) and b.conv2_offset.out_channels == 27
    assert b.conv2.stride == (1, 1) and r.res4[0].conv2.stride == (2, 2)  # STRIDE_IN_1X1 False: stride on 3x3
    assert r.res4[0].conv1.stride == (1, 1)
    assert torch.all(b.conv2_offset.weight == 0) and torch.all(b.conv2_offset.bias == 0)
    assert type(b.conv1.norm).__name__ == "FrozenBatchNorm2d"


def _real_detectron2_deform_convs():
    """Detectron2's real (Modulated)DeformConv classes; they construct without _C (only forward needs it)."""
    import detectron2.layers.deform_conv as d2dc

    fake_c = types.ModuleType("detectron2._C")
    saved = sys.modules.get("detectron2._C")
    sys.modules["detectron2._C"] = fake_c
    try:
        spec = importlib.util.spec_from_file_location("detectron2.layers._deform_conv_real", d2dc.__file__)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        if saved is None:
            del sys.modules["detectron2._C"]
        else:
            sys.modules["detectron2._C"] = saved
    return mod.DeformConv, mod.ModulatedDeformConv


@pytest.mark.parametrize("modulated", [True, False])
def test_state_dict_matches_detectron2_deform_block(monkeypatch, modulated):
    import detectron2.modeling.backbone.resnet as d2r

    dc, mdc = _real_detectron2_deform_convs()
    monkeypatch.setattr(d2r, "DeformConv", dc)
    monkeypatch.setattr(d2r, "ModulatedDeformConv", mdc)
    kw = dict(bottleneck_channels=16, stride=2, norm="FrozenBN", deform_modulated=modulated)
    theirs = d2r.DeformBottleneckBlock(32, 64, **kw)
    ours = DeformBottleneckBlock(32, 64, **kw)
    sd_t, sd_o = theirs.state_dict(), ours.state_dict()
    assert list(sd_t.keys()) == list(sd_o.keys())
    assert all(sd_t[k].shape == sd_o[k].shape for k in sd_t)
    ours.load_state_dict(sd_t)  # a Detectron2 checkpoint loads strictly


def test_deform_block_function():
    """Modulated block = plain conv math when offsets are 0 and mask 0.5; non-zero offsets change the output."""
    torch.manual_seed(0)
    blk = DeformBottleneckBlock(8, 16, bottleneck_channels=4, stride=2, norm="", deform_modulated=True)
    x = torch.randn(2, 8, 12, 10)
    y = blk(x)
    assert y.shape == (2, 16, 6, 5)
    mid = torch.relu(blk.conv1(x))
    ref = torch.nn.functional.conv2d(mid, blk.conv2.weight, stride=2, padding=1) * 0.5
    ref = blk.conv3(torch.relu(ref)) + blk.shortcut(x)
    torch.testing.assert_close(y, torch.relu(ref), rtol=1e-4, atol=1e-5)
    torch.nn.init.normal_(blk.conv2_offset.weight, std=0.1)
    assert not torch.allclose(blk(x), y)


def test_rc1_level_sizes_384x640_and_backward():
    cfg = _cfg(18, 1, DEFORM_ON_PER_STAGE=[False, True, True, True])  # R18 with deformable basic blocks
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    cfg.MODEL.RESNETS.NORM = "BN"
    m = build_stmask_resnet_fpn_backbone(cfg, ShapeSpec(channels=3))
    assert isinstance(m, YolactFPN) and m.size_divisibility == 32
    assert m.padding_constraints == {"size_divisibility": 32}
    out = m(torch.randn(1, 3, 384, 640))
    sizes = {k: tuple(v.shape[-2:]) for k, v in out.items()}
    assert sizes == {"p3": (48, 80), "p4": (24, 40), "p5": (12, 20), "p6": (6, 10), "p7": (3, 5)}
    shapes = m.output_shape()
    assert {k: s.stride for k, s in shapes.items()} == {"p3": 8, "p4": 16, "p5": 32, "p6": 64, "p7": 128}
    assert all(s.channels == 256 and v.shape[1] == 256 for s, v in zip(shapes.values(), out.values()))
    sum(v.sum() for v in out.values()).backward()
    assert m.bottom_up.res3[0].conv2_offset.weight.grad is not None
    assert m.bottom_up.res3[0].conv2.weight.grad.abs().sum() > 0


def test_fpn_semantics():
    torch.manual_seed(0)
    cfg = _cfg(50, 2)
    m = build_stmask_resnet_fpn_backbone(cfg, ShapeSpec(channels=3)).eval()
    # FREEZE_AT 0 (released): the stem trains; FrozenBN everywhere (no BN parameters)
    assert all(p.requires_grad for p in m.bottom_up.stem.parameters())
    assert torch.all(m.pred_layers[0].bias == 0) and torch.all(m.lat_layers[0].bias == 0)
    with torch.no_grad():
        for conv in m.downsample_layers:
            conv.bias.fill_(-0.05)
        x = torch.randn(1, 3, 64, 96)
        out = m(x)
        assert all((out[k] >= 0).all() for k in ("p3", "p4", "p5"))  # ReLU on P3-P5
        assert (out["p6"] < 0).any() and (out["p7"] < 0).any()  # no ReLU on P6 / P7
        torch.testing.assert_close(out["p6"], m.downsample_layers[0](out["p5"]))  # P6 from P5's output
        torch.testing.assert_close(out["p7"], m.downsample_layers[1](out["p6"]))  # no ReLU between P6 and P7
        # top-down: bilinear to the exact lateral size (non-divisible: 64x96 -> res5 2x3, res4 4x6)
        c = m.bottom_up(x)
        lat5 = m.lat_layers[0](c["res5"])
        lat4 = m.lat_layers[1](c["res4"]) + torch.nn.functional.interpolate(
            lat5, size=c["res4"].shape[-2:], mode="bilinear", align_corners=False
        )
        torch.testing.assert_close(out["p4"], torch.relu(m.pred_layers[1](lat4)))


def test_r18_at_half_width_builds_and_runs():
    """Basic-block ResNets take any RES2_OUT_CHANNELS (Detectron2 insists on 64): the main job's R-18 at width 32."""
    cfg = _cfg(18, 2, NORM="GN", STEM_OUT_CHANNELS=32, DEFORM_ON_PER_STAGE=[False, False, False, True])
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 32
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res3", "res4", "res5"]
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    r = build_stmask_resnet_backbone(cfg, ShapeSpec(channels=3))
    out = r(torch.randn(2, 3, 64, 96))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "res3": (2, 64, 8, 12), "res4": (2, 128, 4, 6), "res5": (2, 256, 2, 3)}
    assert r.stem.conv1.out_channels == 32 and r.res2[0].conv1.out_channels == 32
    assert {k: s.channels for k, s in r.output_shape().items()} == {"res3": 64, "res4": 128, "res5": 256}
    assert _deform_sets(r)["res5"] == {0}
