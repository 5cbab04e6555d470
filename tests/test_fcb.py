import pytest
import torch
import torch.nn.functional as F

from stmask_d2.layers import aligned_offsets
from stmask_d2.modeling.heads.fcb import FCB


@pytest.mark.parametrize("mode", ["ada", "ali"])
@pytest.mark.parametrize("kernel", [(3, 3), (3, 5), (5, 3)])
def test_shape_preserved(kernel, mode):
    torch.manual_seed(0)
    m = FCB(8, 5, kernel, mode)
    x = torch.randn(2, 8, 6, 9)
    d = torch.randn(2, 4, 6, 9)
    out = m(x, d)
    assert out.shape == (2, 5, 6, 9)
    assert m.dcn.padding == ((kernel[0] - 1) // 2, (kernel[1] - 1) // 2)
    assert m.dcn.bias is None and m.conv.bias is not None and m.conv.kernel_size == kernel
    assert torch.all(m.conv.bias == 0)


@pytest.mark.parametrize("mode", ["ada", "ali"])
def test_offsets_detached(mode):
    torch.manual_seed(0)
    m = FCB(4, 3, (3, 5), mode)
    x = torch.randn(1, 4, 5, 7, requires_grad=True)
    d = torch.randn(1, 4, 5, 7, requires_grad=True)
    m(x, d).sum().backward()
    assert d.grad is None
    assert x.grad is not None and x.grad.abs().sum() > 0
    if mode == "ada":
        assert m.offset_conv.weight.grad is not None and m.offset_conv.weight.grad.abs().sum() > 0


def test_ada_vs_ali_offsets():
    torch.manual_seed(0)
    ada, ali = FCB(4, 3, (5, 3), "ada"), FCB(4, 3, (5, 3), "ali")
    assert ada.offset_conv.weight.shape == (30, 4, 1, 1) and ada.offset_conv.bias is None
    assert ali.offset_conv is None
    assert sum(p.numel() for p in ada.parameters()) - sum(p.numel() for p in ali.parameters()) == 120
    d = torch.randn(2, 4, 3, 4)
    assert torch.allclose(ali.offsets(d), aligned_offsets(d, (5, 3)))
    assert torch.allclose(ada.offsets(d), F.conv2d(d, ada.offset_conv.weight))


@pytest.mark.parametrize("mode", ["ada", "ali"])
@pytest.mark.parametrize("kernel", [(3, 3), (3, 5), (5, 3)])
def test_zero_offsets_equal_plain_conv(kernel, mode):
    torch.manual_seed(1)
    m = FCB(6, 4, kernel, mode).double()
    x = torch.randn(1, 6, 7, 8, dtype=torch.float64)
    d = torch.zeros(1, 4, 7, 8, dtype=torch.float64)
    pad = ((kernel[0] - 1) // 2, (kernel[1] - 1) // 2)
    ref = m.conv(F.relu(F.conv2d(x, m.dcn.weight, padding=pad)))
    assert torch.allclose(m(x, d), ref, atol=1e-10)


def test_from_config():
    from detectron2.config import get_cfg

    from stmask_d2.config import add_stmask_config

    cfg = get_cfg()
    add_stmask_config(cfg)
    cfg.MODEL.STMASK.FCB.MODE = "ali"
    m = FCB(cfg, 8, 41, (3, 5))
    assert m.mode == "ali" and m.kernel_size == (3, 5) and m.conv.out_channels == 41
    with pytest.raises(AssertionError):
        FCB(8, 4, (3, 3), "none")


def test_registry_builds_fcb_through_from_config():
    """FCB is registered (FCB_REGISTRY, MODEL.STMASK.FCB.NAME) and the head builds its FCBs with build_fcb."""
    from detectron2.layers import ShapeSpec

    from _stmask_cfg import base_cfg
    from stmask_d2.modeling.heads import FCB_REGISTRY, build_fcb, build_prediction_head

    cfg = base_cfg()
    cfg.MODEL.STMASK.FCB.MODE = "ada"
    assert cfg.MODEL.STMASK.FCB.NAME == "FCB" and FCB_REGISTRY.get("FCB") is FCB
    m = build_fcb(cfg, 8, 5, (5, 3), anchor_cells=(5.0, 3.0))
    assert isinstance(m, FCB) and m.mode == "ada" and m.kernel_size == (5, 3) and m.anchor_cells == (5.0, 3.0)

    calls = []

    class CountingFCB(FCB):
        @classmethod
        def from_config(cls, cfg, *args, **kwargs):
            calls.append(args)
            return super().from_config(cfg, *args, **kwargs)

    FCB_REGISTRY._obj_map["_TestCountingFCB"] = CountingFCB
    try:
        cfg.MODEL.STMASK.FCB.NAME = "_TestCountingFCB"
        cfg.MODEL.STMASK.FCB.BRANCHES = ["class", "track"]
        cfg.MODEL.STMASK.HEAD.CONV_DIM = 8
        head = build_prediction_head(cfg, [ShapeSpec(channels=8, stride=s) for s in (8, 16)])
    finally:
        del FCB_REGISTRY._obj_map["_TestCountingFCB"]
    assert len(calls) == 6  # 3 kernels x (class, track), one anchor each
    assert all(type(m) is CountingFCB for m in list(head.class_pred) + list(head.track_pred))
