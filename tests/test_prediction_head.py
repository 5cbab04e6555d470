"""STMask prediction head: FCA anchor order, grouped == separate, receptive fields, centerness order, FCB."""
import pytest
import torch
from detectron2.layers import ShapeSpec

from stmask_d2.modeling.heads import build_prediction_head
from stmask_d2.modeling.heads.prediction_head import FCAConvs, STMaskPredictionHead
from _stmask_cfg import base_cfg  # noqa: E402

SIZES_384x640 = [(48, 80), (24, 40), (12, 20), (6, 10), (3, 5)]
KERNELS = [(3, 3), (3, 5), (5, 3)]


def _head(**kw):
    args = dict(in_channels=8, num_classes=3, conv_dim=8, num_tower_convs=1, mask_dim=4, track_dim=6)
    args.update(kw)
    torch.manual_seed(0)
    return STMaskPredictionHead(**args)


def _cfg(**head):
    cfg = base_cfg()
    cfg.MODEL.STMASK.HEAD.CONV_DIM = 16
    cfg.MODEL.STMASK.HEAD.NUM_TOWER_CONVS = 1
    for k, v in head.items():
        setattr(cfg.MODEL.STMASK.HEAD, k, v)
    return cfg


def test_output_shapes_and_anchor_count_384x640():
    cfg = _cfg()
    head = build_prediction_head(cfg, [ShapeSpec(channels=16, stride=s) for s in (8, 16, 32, 64, 128)])
    feats = [torch.randn(1, 16, h, w) for h, w in SIZES_384x640]
    with torch.no_grad():
        out = head(feats)
    A = 15345
    assert out["pred_logits"].shape == (1, A, 41)
    assert out["pred_deltas"].shape == (1, A, 4)
    assert out["pred_coeffs"].shape == (1, A, 32)
    assert out["pred_embeds"].shape == (1, A, 128)
    assert out["pred_centerness"].shape == (1, A)
    assert [tuple(u.shape) for u in out["upfeatures"]] == [(1, 16, h, w) for h, w in SIZES_384x640]
    torch.testing.assert_close(out["pred_embeds"].norm(dim=-1), torch.ones(1, A))
    assert out["pred_centerness"].abs().max() <= 1
    assert all(c.weight.shape[-2:] == k for c, k in zip(head.class_pred.convs, KERNELS))


def test_init_xavier_zero_bias():
    head = _head()
    for name, p in head.named_parameters():
        if name.endswith("bias"):
            assert torch.all(p == 0), name


def test_grouped_equals_separate():
    sep = _head(fca_impl="separate")
    grp = _head(fca_impl="grouped")
    grp.load_state_dict(sep.state_dict())  # identical parameters / names
    feats = [torch.randn(2, 8, h, w) for h, w in [(8, 12), (4, 6), (2, 3)]]
    with torch.no_grad():
        a, b = sep(feats), grp(feats)
    for k in ("pred_logits", "pred_deltas", "pred_coeffs", "pred_embeds", "pred_centerness"):
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("impl", ["separate", "grouped"])
def test_fca_convs_receptive_field(impl):
    torch.manual_seed(0)
    m = FCAConvs(4, 2, KERNELS, impl)
    x = torch.randn(1, 4, 9, 11)
    y0 = m(x)
    x_col = x.clone()
    x_col[0, :, 4, 7] += 10.0  # 2 columns right of (4, 5)
    x_row = x.clone()
    x_row[0, :, 6, 5] += 10.0  # 2 rows below (4, 5)
    d_col = (m(x_col) - y0)[0, :, 4, 5].abs().view(3, 2).sum(1)  # per kernel
    d_row = (m(x_row) - y0)[0, :, 4, 5].abs().view(3, 2).sum(1)
    assert d_col[0] == 0 and d_col[1] > 0 and d_col[2] == 0  # only the 3x5 (3 rows, 5 columns) sees it
    assert d_row[0] == 0 and d_row[1] == 0 and d_row[2] > 0  # only the 5x3 sees it


def test_anchor_order_and_receptive_field_in_head():
    """Anchor (loc, k) of a level sits at index (r * W + c) * 3 + k and is predicted by kernel k."""
    head = _head(num_tower_convs=0)  # only upfeature (3x3) before the FCA convs: reach 1 + (kw - 1) / 2
    h, w = 9, 11
    x = torch.randn(1, 8, h, w)
    x2 = x.clone()
    x2[0, :, 4, 8] += 10.0  # 3 columns right of (4, 5)
    with torch.no_grad():
        d = (head([x2])["pred_logits"] - head([x])["pred_logits"]).abs().sum(-1)[0]
    base = (4 * w + 5) * 3
    assert d[base + 0] == 0 and d[base + 1] > 0 and d[base + 2] == 0


def test_centerness_order_correct_vs_bug():
    good = _head()
    bug = _head(centerness_order_bug=True)
    bug.load_state_dict(good.state_dict())
    sizes = [(5, 7), (3, 4)]
    feats = [torch.randn(1, 8, hh, ww) for hh, ww in sizes]
    with torch.no_grad():
        cg, cb = good(feats)["pred_centerness"][0], bug(feats)["pred_centerness"][0]
        # reference: channel 4 of kernel g's box conv (layout per anchor: tx, ty, tw, th, ctr) at each location
        start = 0
        for x, (hh, ww) in zip(feats, sizes):
            box = good.box_pred(good.box_tower(good.upfeature(x)))[0]  # (3 * 5, H, W)
            ref = torch.tanh(box.view(3, 5, hh, ww)[:, 4])  # (G, H, W)
            n = hh * ww * 3
            torch.testing.assert_close(cg[start:start + n], ref.permute(1, 2, 0).reshape(-1))  # (loc, k)
            torch.testing.assert_close(cb[start:start + n], ref.reshape(-1))  # released: kernel-major
            torch.testing.assert_close(good(feats)["pred_deltas"][0, start:start + n],
                                       box.view(3, 5, hh, ww)[:, :4].permute(2, 3, 0, 1).reshape(-1, 4))
            start += n
        assert not torch.allclose(cg, cb)


def test_baseline_without_fca():
    cfg = _cfg(USE_FCA=False)
    head = build_prediction_head(cfg, [ShapeSpec(channels=16)] * 2)
    assert head.kernel_shapes == [(3, 3)] and head.anchors_per_kernel == 3
    assert len(head.box_pred.convs) == 1 and head.box_pred.convs[0].out_channels == 15
    with torch.no_grad():
        out = head([torch.randn(1, 16, 6, 8), torch.randn(1, 16, 3, 4)])
    assert out["pred_logits"].shape == (1, (48 + 12) * 3, 41)
    assert out["pred_centerness"].shape == (1, 180)


def test_ratio_mode_and_focal():
    cfg = _cfg()
    cfg.MODEL.ANCHOR_GENERATOR.MODE = "ratio"
    cfg.MODEL.ANCHOR_GENERATOR.SCALES = [1.0, 2.0]
    cfg.MODEL.STMASK.LOSS.CLASS_TYPE = "focal"
    head = build_prediction_head(cfg, [ShapeSpec(channels=16)])
    assert head.kernel_shapes == [(3, 3)] and head.num_anchors == 6
    with torch.no_grad():
        out = head([torch.randn(1, 16, 4, 5)])
    assert out["pred_logits"].shape == (1, 120, 40)


def test_no_centerness():
    head = _head(use_centerness=False)
    out = head([torch.randn(1, 8, 4, 5)])
    assert "pred_centerness" not in out and out["pred_deltas"].shape == (1, 60, 4)


@pytest.mark.parametrize("mode", ["ada", "ali"])
def test_fcb_path(mode):
    from stmask_d2.modeling.heads.fcb import FCB

    head = _head(fcb_mode=mode, fcb_branches=["class", "mask", "track"], fca_impl="grouped")
    assert all(isinstance(m, FCB) and m.kernel_size == k for m, k in zip(head.class_pred, KERNELS))
    feats = [torch.randn(1, 8, 6, 7), torch.randn(1, 8, 3, 4)]
    out = head(feats)
    A = (42 + 12) * 3
    assert out["pred_logits"].shape == (1, A, 4) and out["pred_coeffs"].shape == (1, A, 4)
    (out["pred_logits"].sum() + out["pred_coeffs"].sum() + out["pred_embeds"].sum()).backward()
    # the box deltas that drive FCB are detached: no gradient reaches the box branch from the other branches
    assert all(c.weight.grad is None for c in head.box_pred.convs)
    assert head.class_pred[1].conv.weight.grad is not None


def test_fcb_from_config_and_several_anchors_per_kernel():
    cfg = _cfg()
    cfg.MODEL.STMASK.FCB.MODE = "ada"
    head = build_prediction_head(cfg, [ShapeSpec(channels=16)])
    assert isinstance(head.class_pred, torch.nn.ModuleList) and isinstance(head.coeff_pred, FCAConvs)
    cfg.MODEL.ANCHOR_GENERATOR.SCALES = [1.0, 2.0]  # two anchors per kernel: one FCB per anchor
    head = build_prediction_head(cfg, [ShapeSpec(channels=16)])
    assert len(head.class_pred) == 6 and [m.kernel_size for m in head.class_pred] == [k for k in KERNELS for _ in "ab"]
