"""The prediction head on all FPN levels packed into one map == level by level (forward and backward)."""
import pytest
import torch

from stmask_d2.layers import cpu_deform_conv_impl
from stmask_d2.layers.deform_conv import deform_conv2d_gathered, force_sampled_deform_conv
from stmask_d2.modeling.heads.level_packing import LevelPacking, level_packing
from stmask_d2.modeling.heads.prediction_head import STMaskPredictionHead

SIZES = [(16, 28), (8, 14), (4, 7), (2, 4), (1, 2)]
SIZES_ODD = [(9, 13), (5, 7), (3, 4), (2, 2), (1, 1)]


def _rects(p):
    return [(y, x, y + h, x + w) for (y, x), (h, w) in zip(p.origins, p.sizes)]


@pytest.mark.parametrize("sizes", [SIZES, SIZES_ODD, [(45, 80), (23, 40), (12, 20), (6, 10), (3, 5)],
                                   [(2, 40), (30, 3), (7, 7)]])
@pytest.mark.parametrize("gap", [0, 1, 2, 3])
def test_layout_separates_levels_by_the_gap(sizes, gap):
    p = LevelPacking(sizes, gap)
    rects = _rects(p)
    for i, a in enumerate(rects):
        assert a[2] <= p.height and a[3] <= p.width and a[0] >= 0 and a[1] >= 0
        for b in rects[i + 1:]:  # grown by the gap, a level meets no other level
            assert not (a[0] < b[2] + gap and b[0] < a[2] + gap and a[1] < b[3] + gap and b[1] < a[3] + gap)
    mask = p.mask(torch.zeros(1))
    assert mask.shape == (1, 1, p.height, p.width)
    assert int(mask.sum()) == sum(h * w for h, w in sizes)


def test_main_job_layout_is_the_spiral():
    p = LevelPacking(SIZES, 2)
    assert p.origins == [(0, 0), (0, 30), (10, 30), (10, 39), (14, 39)]
    assert (p.height, p.width) == (16, 44)


def test_pack_unpack_roundtrip_bounds_and_cache():
    p = level_packing(SIZES_ODD, 2)
    assert level_packing(SIZES_ODD, 2) is p and level_packing(SIZES_ODD, 1) is not p
    feats = [torch.randn(2, 3, h, w) for h, w in SIZES_ODD]
    packed = p.pack(feats)
    for f, u in zip(feats, p.unpack(packed)):
        assert torch.equal(f, u)
    assert float(packed.abs().sum()) == pytest.approx(sum(float(f.abs().sum()) for f in feats), rel=1e-6)
    y_lo, y_hi, x_lo, x_hi = p.bounds("cpu", (1, 2))
    for (y, x), (h, w) in zip(p.origins, p.sizes):
        assert torch.all(y_lo[y:y + h, x:x + w] == y + 1) and torch.all(y_hi[y:y + h, x:x + w] == y + h + 1)
        assert torch.all(x_lo[y:y + h, x:x + w] == x + 2) and torch.all(x_hi[y:y + h, x:x + w] == x + w + 2)
    gap_cells = p.mask(torch.zeros(1))[0, 0] == 0
    assert torch.all(y_lo[gap_cells] == y_hi[gap_cells])  # empty: a gap location samples nothing
    cl = [f.contiguous(memory_format=torch.channels_last) for f in feats]
    assert p.pack(cl).is_contiguous(memory_format=torch.channels_last)


def test_deform_conv_bounds_equal_separate_maps():
    """Two maps packed side by side with a gap: with per-location bounds each half is the conv of its own map,
    whatever the offsets (taps far into the other map read zero)."""
    torch.manual_seed(0)
    a, b = torch.randn(2, 4, 5, 6), torch.randn(2, 4, 5, 3)
    p = LevelPacking([(5, 6), (5, 3)], 1)
    x = p.pack([a, b])
    w = torch.randn(7, 4, 3, 3)
    off = torch.randn(2, 18, *x.shape[-2:]) * 4
    out = deform_conv2d_gathered(x, off, w, padding=(1, 1), bounds=p.bounds("cpu"))
    oa, ob = p.unpack(off)
    ref_a = deform_conv2d_gathered(a, oa.contiguous(), w, padding=(1, 1))
    ref_b = deform_conv2d_gathered(b, ob.contiguous(), w, padding=(1, 1))
    ua, ub = p.unpack(out)
    torch.testing.assert_close(ua, ref_a, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ub, ref_b, rtol=1e-5, atol=1e-5)
    full = tuple(t for t in (torch.zeros(5, 10, dtype=torch.long), torch.full((5, 10), 5),
                             torch.zeros(5, 10, dtype=torch.long), torch.full((5, 10), 10)))
    torch.testing.assert_close(deform_conv2d_gathered(x, off, w, padding=(1, 1), bounds=full),
                               deform_conv2d_gathered(x, off, w, padding=(1, 1)))


def _head(**kw):
    args = dict(in_channels=8, num_classes=3, conv_dim=8, num_tower_convs=2, mask_dim=4, track_dim=6)
    args.update(kw)
    torch.manual_seed(0)
    return STMaskPredictionHead(**args)


def _run(head, feats, pack, dense=True):
    head.pack_levels = pack
    for f in feats:
        f.grad = None
    head.zero_grad()
    out = head(feats, dense_branches=dense)
    keys = [k for k in ("pred_logits", "pred_deltas", "pred_coeffs", "pred_embeds", "pred_centerness") if k in out]
    g = torch.Generator().manual_seed(1)
    loss = sum((out[k] * torch.randn(out[k].shape, generator=g)).sum() for k in keys)
    loss = loss + sum((u * torch.randn(u.shape, generator=g)).sum() for u in out["upfeatures"])
    loss.backward()
    grads = {n: p.grad.clone() for n, p in head.named_parameters() if p.grad is not None}
    return {k: out[k].detach() for k in keys}, [f.grad.clone() for f in feats], grads


CASES = {
    "fca": dict(),
    "fca_grouped_no_centerness": dict(fca_impl="grouped", use_centerness=False),
    "fcb_ada_class": dict(fcb_mode="ada", fcb_branches=["class"]),
    "fcb_ali_all": dict(fcb_mode="ali", fcb_branches=["class", "mask", "track"]),
    "fcb_ada_even_kernels": dict(fcb_mode="ada", fcb_branches=["class", "mask"], kernel_shapes=[(2, 3), (3, 2),
                                                                                                  (2, 2)]),
    "centerness_order_bug_two_anchors": dict(centerness_order_bug=True, anchors_per_kernel=2, fcb_mode="ada",
                                             fcb_branches=["track"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_packed_head_equals_level_by_level(case):
    head = _head(**CASES[case])
    torch.manual_seed(2)
    feats = [torch.randn(2, 8, h, w, requires_grad=True) for h, w in SIZES_ODD]
    assert head._level_packing(feats) is not None
    out_l, gin_l, gp_l = _run(head, feats, pack=False)
    out_p, gin_p, gp_p = _run(head, feats, pack=True)
    assert set(out_l) == set(out_p) and set(gp_l) == set(gp_p)
    for k in out_l:
        torch.testing.assert_close(out_p[k], out_l[k], rtol=1e-5, atol=1e-5, msg=k)
    for a, b in zip(gin_p, gin_l):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    for k in gp_l:
        torch.testing.assert_close(gp_p[k], gp_l[k], rtol=1e-4, atol=1e-4, msg=k)


def test_packed_head_lazy_branches_and_channels_last():
    head = _head()
    head.eval()
    feats = [torch.randn(1, 8, h, w).contiguous(memory_format=torch.channels_last) for h, w in SIZES]
    with torch.no_grad():
        head.pack_levels = False
        ref = head(feats, dense_branches=False)
        head.pack_levels = True
        out = head(feats, dense_branches=False)
    assert "pred_coeffs" not in out
    for k in ("pred_logits", "pred_deltas", "pred_centerness"):
        torch.testing.assert_close(out[k], ref[k], rtol=1e-5, atol=1e-5)
    for u, r in zip(out["upfeatures"], ref["upfeatures"]):
        torch.testing.assert_close(u, r, rtol=1e-5, atol=1e-5)


def test_packing_only_where_it_keeps_the_function():
    head = _head(fcb_mode="ada")
    feats = [torch.randn(1, 8, h, w) for h, w in SIZES]
    assert head._level_packing(feats) is not None
    assert head._level_packing(feats[:1]) is None  # one level: nothing to pack
    with force_sampled_deform_conv():  # export form of the deformable conv: no per-location bounds
        assert head._level_packing(feats) is None
    prev = cpu_deform_conv_impl("torchvision")
    try:
        assert head._level_packing(feats) is None
    finally:
        cpu_deform_conv_impl(prev)
    head.pack_levels = False
    assert head._level_packing(feats) is None
    assert _head()._level_packing(feats) is not None  # no deformable conv: always packable on CPU


def test_custom_fcb_without_packing_runs_level_by_level():
    class PlainFCB(torch.nn.Module):  # a registry FCB of a user: no packs_levels
        def __init__(self, cin, cout, kernel_size, anchor_cells=None):
            super().__init__()
            self.conv = torch.nn.Conv2d(cin, cout, 3, padding=1)

        def forward(self, x, deltas):
            return self.conv(x) + deltas.sum(1, keepdim=True)

    head = _head(fcb_mode="ada", fcb_builder=PlainFCB)
    feats = [torch.randn(1, 8, h, w) for h, w in SIZES]
    assert head._level_packing(feats) is None
    assert head(feats)["pred_logits"].shape[1] == sum(h * w for h, w in SIZES) * 3


def test_layout_cached_in_inference_mode_serves_a_later_training_step():
    """The packing's masks / bounds are cached across calls: built under torch.inference_mode (evaluation), they
    must still be usable when a later training step saves them for backward."""
    head = _head(fcb_mode="ada")
    sizes = [(7, 9), (4, 5), (2, 3)]  # a layout no other test uses: built first here, in inference mode
    with torch.inference_mode():
        head([torch.randn(1, 8, h, w) for h, w in sizes])
    feats = [torch.randn(1, 8, h, w, requires_grad=True) for h, w in sizes]
    out = head(feats)
    (out["pred_logits"].sum() + out["pred_coeffs"].sum()).backward()
    assert all(f.grad is not None for f in feats)
