import math

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.structures import BitMasks, Boxes, Instances

from stmask_d2.config import add_stmask_config
from stmask_d2.modeling.heads import build_temporal_fusion_head
from stmask_d2.modeling.heads.temporal_fusion import TemporalFusionHead
from stmask_d2.modeling.tf_loss import temporal_fusion_losses


def _small_head(**kw):
    args = dict(feature_dim=8, patch_size=3, roi_size=7, conv_dims=[16, 16, 32], mask_dim=4, stride=16)
    args.update(kw)
    return TemporalFusionHead(**args)


def test_default_config_shapes_633_channels():
    cfg = get_cfg()
    add_stmask_config(cfg)
    head = build_temporal_fusion_head(cfg, ShapeSpec(channels=256, stride=16))
    assert isinstance(head, TemporalFusionHead) and head.stride == 16 and head.in_channels == 633
    g = torch.Generator().manual_seed(0)
    p4 = [torch.randn(1, 256, 24, 40, generator=g) for _ in range(2)]
    up = [torch.rand(1, 256, 24, 40, generator=g) for _ in range(2)]
    fused = head.fuse(p4[0], p4[1], up[0], up[1])
    assert fused.shape == (1, 633, 24, 40) and (fused >= 0).all()
    with torch.no_grad():
        d, dc = head(fused, [torch.tensor([[10.0, 20.0, 200.0, 300.0], [0, 0, 640, 384], [5, 5, 6, 6]])])
    assert d.shape == (3, 4) and dc.shape == (3, 32)
    assert torch.isfinite(d).all() and torch.isfinite(dc).all()


def test_batched_pairs_and_empty_rois():
    head = _small_head()
    fused = torch.rand(2, head.in_channels, 6, 8)
    d, dc = head(fused, [torch.tensor([[0.0, 0, 32, 32]]), torch.zeros(0, 4)])
    assert d.shape == (1, 4) and dc.shape == (1, 4)
    d, dc = head(fused, [torch.zeros(0, 4), torch.zeros(0, 4)])
    assert d.shape == (0, 4) and dc.shape == (0, 4)


@pytest.mark.parametrize("count", [1, 5, 16, 21])
def test_roi_batch_padding_gives_the_same_outputs_and_gradients(count):
    """TemporalNet on RoIs padded to a multiple of 16 (the default, CPU) equals it without padding, in outputs and
    in the gradients of the fused map and of every parameter; the padding is off when traced."""
    g = torch.Generator().manual_seed(count)
    heads = [_small_head(roi_batch_multiple=16), _small_head(roi_batch_multiple=0)]
    heads[1].load_state_dict(heads[0].state_dict())
    fused = torch.rand(2, heads[0].in_channels, 6, 8, generator=g, dtype=torch.float64)
    boxes = [torch.rand(count, 4, generator=g, dtype=torch.float64) * 96 for _ in range(2)]
    results = []
    for head in heads:
        head.double()
        f = fused.clone().requires_grad_()
        d, dc = head(f, boxes)
        (d.sum() * 2 + (dc * dc).sum()).backward()
        results.append([d.detach(), dc.detach(), f.grad] + [p.grad for p in head.parameters()])
    assert heads[0]._roi_padding(torch.zeros(2 * count, 1)) == -2 * count % 16
    assert results[0][0].shape == (2 * count, 4)
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    calls = []
    heads[0].convs.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    torch.jit.trace(heads[0], (fused, [b.detach() for b in boxes]), check_trace=False)
    assert calls == [2 * count]  # not padded under tracing (the exported graph takes any RoI count)


def test_decode_eqs_11_to_13():
    head = _small_head()
    boxes = torch.tensor([[10.0, 20.0, 50.0, 100.0]])  # cx 30, cy 60, w 40, h 80
    deltas = torch.tensor([[1.0, -2.0, math.log(2) / 0.2, 0.0]])
    coeffs = torch.tensor([[0.5, -1.0, 2.0, 0.0]])
    dC = torch.tensor([[1.0, 1.0, -1.0, 0.3]])
    new_boxes, new_coeffs = head.propagate(boxes, coeffs, deltas, dC)
    # cx' = 30 + 0.1*1*40 = 34, cy' = 60 + 0.1*(-2)*80 = 44, w' = 40*2 = 80, h' = 80
    assert torch.allclose(new_boxes, torch.tensor([[34 - 40.0, 44 - 40.0, 34 + 40.0, 44 + 40.0]]), atol=1e-4)
    # eq. 13: added to the raw (pre-tanh) coefficients
    assert torch.equal(new_coeffs, coeffs + dC)
    assert not torch.allclose(torch.tanh(new_coeffs), torch.tanh(coeffs) + torch.tanh(dC))


def test_roi_align_sees_the_box_region():
    head = _small_head()
    fused = torch.zeros(1, head.in_channels, 12, 16)
    fused[:, :, 2:4, 3:5] = 1.0  # cells rows 2-3, cols 3-4 = pixels x 48..80, y 32..64 at stride 16
    with torch.no_grad():
        d_in, c_in = head(fused, [torch.tensor([[50.0, 34.0, 78.0, 62.0]])])
        d_out, c_out = head(fused, [torch.tensor([[160.0, 96.0, 220.0, 150.0]])])
    # zero features and zero biases give exactly zero outputs outside; the box region gives non-zero ones
    assert d_out.abs().max() == 0 and c_out.abs().max() == 0
    assert d_in.abs().max() > 0 and c_in.abs().max() > 0
    # a box given in normalised coordinates (the released RoI bug) would see only the corner: here zeros
    with torch.no_grad():
        d_bug, _ = head(fused, [torch.tensor([[50 / 256, 34 / 192, 78 / 256, 62 / 192]])])
    assert d_bug.abs().max() == 0


def _toy_pair(ids_cur=(7,), hw=(64, 64)):
    H, W = hw

    def inst(boxes, ids):
        i = Instances((H, W))
        b = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
        i.gt_boxes = Boxes(b)
        m = torch.zeros(len(b), H, W, dtype=torch.bool)
        for n, (x1, y1, x2, y2) in enumerate(b.long().tolist()):
            m[n, y1:y2, x1:x2] = True
        i.gt_masks = BitMasks(m)
        i.gt_ids = torch.tensor(ids, dtype=torch.long)
        i.gt_classes = torch.zeros(len(b), dtype=torch.long)
        return i

    prev = inst([[8, 8, 40, 40], [44, 44, 60, 60]], [7, 9])
    cur_boxes = {7: [12, 10, 44, 42], 9: [40, 40, 58, 58], 3: [0, 0, 10, 10]}
    cur = inst([cur_boxes[i] for i in ids_cur], list(ids_cur))
    # 6 anchors: 0,1,3 positive on GT 0 (id 7); 4 positive on GT 1 (id 9); 2 negative; 5 neutral
    gt_idx = torch.tensor([0, 0, 0, 0, 1, 0])
    labels = torch.tensor([1, 1, 0, 1, 1, -1])
    g = torch.Generator().manual_seed(1)
    pred_boxes = torch.tensor([[8, 8, 40, 40]] * 4 + [[44, 44, 60, 60]] * 2, dtype=torch.float32)
    pred_boxes = pred_boxes + torch.randn(6, 4, generator=g)
    pred_coeffs = torch.randn(6, 4, generator=g)
    protos = torch.rand(2, 4, 16, 16, generator=g)
    matches = [(gt_idx, labels), (torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long))]
    return [prev, cur], matches, [pred_boxes, torch.zeros(0, 4)], [pred_coeffs, torch.zeros(0, 4)], protos


def test_tf_loss_zero_safe_without_shared_identity():
    head = _small_head()
    gts, matches, pb, pc, protos = _toy_pair(ids_cur=(3,))
    fused = torch.rand(1, head.in_channels, 4, 4, requires_grad=True)
    losses = temporal_fusion_losses(head, fused, [(0, 1)], matches, gts, pb, pc, protos)
    total = sum(losses.values())
    assert total.item() == 0 and total.requires_grad
    total.backward()
    assert fused.grad is not None and head.fc.weight.grad is not None


def test_tf_loss_uses_only_identities_present_in_frame_t():
    head = _small_head()
    gts, matches, pb, pc, protos = _toy_pair(ids_cur=(7,))
    fused = torch.rand(1, head.in_channels, 4, 4)
    with torch.no_grad():
        a = temporal_fusion_losses(head, fused, [(0, 1)], matches, gts, pb, pc, protos)
        # the anchor on id 9 (absent in frame t) does not matter: turning it negative changes nothing
        m2 = [(matches[0][0], torch.tensor([1, 1, 0, 1, 0, -1])), matches[1]]
        b = temporal_fusion_losses(head, fused, [(0, 1)], m2, gts, pb, pc, protos)
    for k in a:
        assert torch.isfinite(a[k]) and a[k] > 0
        assert torch.allclose(a[k], b[k])


def test_tf_loss_batched_over_pairs_is_the_mean_of_single_pairs():
    # three frames, pairs (0, 1), (1, 2), (2, 0) and (1, 0): RoIs in several pairs (one with none, frame 2 has no
    # positives); the losses of all pairs at once are the mean of each pair's own, values and gradients
    torch.manual_seed(0)
    head = _small_head()
    gts, matches, pb, pc, protos = _toy_pair(ids_cur=(7, 9))
    gts = [gts[0], gts[1], gts[0]]
    g = torch.Generator().manual_seed(4)
    matches = [matches[0], (torch.tensor([0, 1, 1, 0, 1, 0]), torch.tensor([1, 1, 1, 0, 0, 1])), matches[1]]
    pb = [pb[0], pb[0].flip(0) + torch.randn(6, 4, generator=g), pb[1]]
    pc = [pc[0], torch.randn(6, 4, generator=g), pc[1]]
    protos = torch.rand(3, 4, 16, 16, generator=g)
    pairs = [(0, 1), (1, 2), (2, 0), (1, 0)]
    fused = torch.rand(len(pairs), head.in_channels, 4, 4)
    together = temporal_fusion_losses(head, fused, pairs, matches, gts, pb, pc, protos)
    total = sum(together.values())
    grads = torch.autograd.grad(total, list(head.parameters()))
    singles = [temporal_fusion_losses(head, fused[b:b + 1], [p], matches, gts, pb, pc, list(protos))
               for b, p in enumerate(pairs)]
    assert singles[2]["loss_boxshift"].item() == 0  # frame 2 has no positives
    for key in together:
        assert together[key].item() > 0
        expected = sum(s[key] for s in singles) / len(pairs)
        assert together[key].item() == pytest.approx(expected.item(), rel=1e-5)
    ref = torch.autograd.grad(sum(sum(s.values()) for s in singles) / len(pairs), list(head.parameters()))
    for a, b in zip(grads, ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_tf_loss_decreases_with_sgd():
    torch.manual_seed(0)
    head = _small_head()
    gts, matches, pb, pc, protos = _toy_pair(ids_cur=(7, 9))
    fused = torch.rand(1, head.in_channels, 4, 4)
    opt = torch.optim.SGD(head.parameters(), lr=0.01, momentum=0.9)
    values = []
    for _ in range(8):
        losses = temporal_fusion_losses(head, fused, [(0, 1)], matches, gts, pb, pc, protos)
        total = losses["loss_boxshift"] + losses["loss_maskshift"]
        assert torch.isfinite(total)
        values.append(total.item())
        opt.zero_grad()
        total.backward()
        opt.step()
    assert values[-1] < 0.8 * values[0], values
