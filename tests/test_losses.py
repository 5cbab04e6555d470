import math

import pytest
import torch
import torch.nn.functional as F

from detectron2.config import get_cfg
from detectron2.structures import BitMasks, Boxes, Instances

from stmask_d2.config import add_stmask_config
from stmask_d2.modeling.losses import STMaskLosses

C = 40
K = 2
IMG = (64, 320)  # padded input size (H, W); prototypes 16 x 80


def _cfg(**loss):
    cfg = get_cfg()
    add_stmask_config(cfg)
    for k, v in loss.items():
        cfg.MODEL.STMASK.LOSS[k] = v
    return cfg


def _grid_anchors():
    """20 non-overlapping 16x16 anchors: 2 rows x 10 columns, 32 px apart."""
    xs = torch.arange(10, dtype=torch.float32) * 32
    ys = torch.tensor([0.0, 32.0])
    x, y = torch.meshgrid(xs, ys, indexing="xy")
    x, y = x.reshape(-1), y.reshape(-1)
    return Boxes(torch.stack([x, y, x + 16, y + 16], dim=1))


def _instances(boxes, classes=None, ids=None, masks=True, image_size=IMG):
    inst = Instances(image_size)
    boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    inst.gt_boxes = Boxes(boxes)
    inst.gt_classes = torch.as_tensor(classes if classes is not None else [3] * len(boxes), dtype=torch.int64)
    if ids is not None:
        inst.gt_ids = torch.as_tensor(ids, dtype=torch.int64)
    if masks:
        m = torch.zeros(len(boxes), *image_size, dtype=torch.bool)
        for i, b in enumerate(boxes.round().long().tolist()):
            m[i, b[1] + 2 : b[3] - 2, b[0] + 2 : b[2] - 2] = True
        inst.gt_masks = BitMasks(m)
    return inst


def _outputs(n, a, num_logits=C + 1, seed=0, zeros=True):
    g = torch.Generator().manual_seed(seed)

    def t(*shape, scale=0.1):
        x = torch.zeros(*shape) if zeros else torch.randn(*shape, generator=g) * scale
        return x.requires_grad_()

    emb = F.normalize(torch.randn(n, a, 8, generator=g), dim=-1).requires_grad_()
    return {
        "pred_logits": t(n, a, num_logits),
        "pred_deltas": t(n, a, 4),
        "pred_coeffs": t(n, a, K, scale=1.0),
        "pred_embeds": emb,
        "pred_centerness": t(n, a),
    }


def _protos(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, K, IMG[0] // 4, IMG[1] // 4, generator=g).requires_grad_()


def _all_finite(losses):
    return all(torch.isfinite(v).all() for v in losses.values())


def test_rc9_ohem_normalisation():
    anchors = _grid_anchors()
    a = anchors.tensor
    gts = [_instances(a[[0, 5]]), _instances(a[[10]])]
    out = _outputs(2, len(anchors))  # all logits equal -> CE = ln 41
    losses, matches = STMaskLosses(_cfg())(out, anchors, _protos(2), gts, IMG)
    assert [int((m[1] == 1).sum()) for m in matches] == [2, 1]
    assert losses["loss_class"].item() == pytest.approx(22.7457, abs=1e-3)
    assert losses["loss_class"].item() == pytest.approx(6.125 / 4 * 8 * math.log(41) / 2, rel=1e-6)


def test_ohem_mines_over_whole_batch():
    # frame 1 has hard negatives, frame 0 easy ones: the 3 mined negatives all come from frame 1
    anchors = _grid_anchors()
    gts = [_instances(anchors.tensor[[0]]), _instances(torch.zeros(0, 4))]
    out = _outputs(2, len(anchors))
    with torch.no_grad():
        out["pred_logits"][0, :, C] = 10.0  # confident background in frame 0
        out["pred_logits"][1, :, 0] = torch.arange(20.0) / 10  # frame 1: growing foreground scores
    losses, _ = STMaskLosses(_cfg())(out, anchors, _protos(2), gts, IMG)
    ce1 = F.cross_entropy(out["pred_logits"][1], torch.full((20,), C), reduction="none").detach()
    ce_pos = F.cross_entropy(out["pred_logits"][0, :1], torch.tensor([3])).item()
    expected = 6.125 / 4 * (0.5 * ce_pos + 3 / 3 * ce1.topk(3).values.sum().item())
    assert losses["loss_class"].item() == pytest.approx(expected, rel=1e-5)


def test_rc6_diou_and_centerness():
    anchors = Boxes(torch.tensor([[10.0, 10, 30, 30], [40, 40, 60, 60]]))
    gts = [_instances([[20.0, 10, 40, 30]], masks=False, image_size=(64, 64))]
    out = _outputs(1, 2)
    protos = torch.rand(1, K, 16, 16)
    losses, matches = STMaskLosses(_cfg())(out, anchors, protos, gts, (64, 64))
    assert matches[0][1].tolist() == [1, 0]  # IoU 1/3, forced match
    assert losses["loss_box"].item() == pytest.approx(5 * 0.743590, abs=1e-5)
    target = 0.256410
    assert losses["loss_centerness"].item() == pytest.approx(20 * 0.5 * target**2, abs=1e-5)


def test_centerness_target_detached():
    anchors = _grid_anchors()
    gts = [_instances(anchors.tensor[[0, 5]] + torch.tensor([3.0, 1.0, 5.0, 2.0]))]
    out = _outputs(1, len(anchors), zeros=False)
    losses, _ = STMaskLosses(_cfg())(out, anchors, _protos(1), gts, IMG)
    g_deltas, g_ctr = torch.autograd.grad(
        losses["loss_centerness"], [out["pred_deltas"], out["pred_centerness"]], allow_unused=True
    )
    assert g_deltas is None or torch.count_nonzero(g_deltas) == 0
    assert torch.count_nonzero(g_ctr) > 0
    # the box loss does reach the deltas
    (g_box,) = torch.autograd.grad(losses["loss_box"], out["pred_deltas"])
    assert torch.count_nonzero(g_box) > 0


@pytest.mark.parametrize(
    "cos,same,expected",
    [(1.0, True, 0.0), (0.0, False, 0.693147), (0.6, True, 0.223144), (0.6, False, 1.609438)],
)
def test_rc12_track_pair_values(cos, same, expected):
    anchors = _grid_anchors()
    box = anchors.tensor[[0]]
    gts = [_instances(box, ids=[7]), _instances(box, ids=[7 if same else 8])]
    out = _outputs(2, len(anchors))
    e = torch.zeros(2, len(anchors), 8)
    e[0, 0, 0] = 1.0
    e[1, 0, 0], e[1, 0, 1] = cos, math.sqrt(1 - cos**2)
    out["pred_embeds"] = e.requires_grad_()
    losses, _ = STMaskLosses(_cfg())(out, anchors, _protos(2), gts, IMG)
    assert losses["loss_track"].item() == pytest.approx(5 * expected, abs=1e-5)


def test_track_loss_pair_weights():
    # frame 0: two positives of id 1 (w = 1/2 each), frame 1: one positive of id 2 (w = 1)
    anchors = _grid_anchors()
    a = anchors.tensor
    gts = [_instances(a[[0, 1]], ids=[1, 1]), _instances(a[[2]], ids=[2])]
    out = _outputs(2, len(anchors), zeros=False)
    losses, matches = STMaskLosses(_cfg())(out, anchors, _protos(2), gts, IMG)
    e = out["pred_embeds"].detach()
    e0, e1, e2 = e[0, 0], e[0, 1], e[1, 2]
    c = lambda x, y: (1 + x @ y) / 2  # noqa: E731
    num = 0.25 * -math.log(c(e0, e1)) + 0.5 * -math.log(1 - c(e0, e2)) + 0.5 * -math.log(1 - c(e1, e2))
    assert losses["loss_track"].item() == pytest.approx(5 * num / 1.25, rel=1e-5)


def test_track_loss_absent_without_ids():
    anchors = _grid_anchors()
    gts = [_instances(anchors.tensor[[0, 3]])]
    out = _outputs(1, len(anchors), zeros=False)
    losses, _ = STMaskLosses(_cfg())(out, anchors, _protos(1), gts, IMG)
    assert losses["loss_track"].item() == 0.0


@pytest.mark.parametrize("class_type", ["softmax_ohem", "focal"])
@pytest.mark.parametrize("box_type", ["diou", "smooth_l1"])
def test_zero_gt_and_zero_positives_finite(class_type, box_type):
    anchors = _grid_anchors()
    nl = C if class_type == "focal" else C + 1
    cfg = _cfg(CLASS_TYPE=class_type, BOX_TYPE=box_type)
    crit = STMaskLosses(cfg)
    gts = [_instances(torch.zeros(0, 4), ids=[]), _instances(torch.zeros(0, 4), ids=[])]
    out = _outputs(2, len(anchors), num_logits=nl, zeros=False)
    protos = _protos(2)
    losses, matches = crit(out, anchors, protos, gts, IMG)
    assert set(losses) == {"loss_class", "loss_box", "loss_centerness", "loss_mask", "loss_track"}
    assert _all_finite(losses)
    # focal keeps its negatives (normalised by max(|P|, 1)); OHEM mines 3 * 0 negatives
    assert all(v.item() == 0.0 for k, v in losses.items() if k != "loss_class" or class_type != "focal")
    assert all((m[1] == 0).all() for m in matches)
    sum(losses.values()).backward()  # attached to the graph


@pytest.mark.parametrize("class_type", ["softmax_ohem", "focal"])
@pytest.mark.parametrize("box_type", ["diou", "smooth_l1"])
def test_degenerate_and_mixed_frames_finite(class_type, box_type):
    anchors = _grid_anchors()
    nl = C if class_type == "focal" else C + 1
    crit = STMaskLosses(_cfg(CLASS_TYPE=class_type, BOX_TYPE=box_type))
    # frame 0: a zero-area GT and a flipped one; frame 1: no GT
    gts = [_instances([[5.0, 5, 5, 5], [60, 40, 40, 20]], ids=[1, 2]), _instances(torch.zeros(0, 4), ids=[])]
    out = _outputs(2, len(anchors), num_logits=nl, zeros=False)
    with torch.no_grad():
        out["pred_deltas"][0, :, 2:] = -50.0  # decoded boxes collapse to (almost) points
    losses, _ = crit(out, anchors, _protos(2), gts, IMG)
    assert _all_finite(losses)
    sum(losses.values()).backward()
    for v in list(out.values()):
        assert v.grad is None or torch.isfinite(v.grad).all()


def _mask_setup():
    anchors = _grid_anchors()
    gts = [_instances(anchors.tensor[[3]] + torch.tensor([-8.0, 0.0, 8.0, 16.0]))]
    p0 = F.interpolate(gts[0].gt_masks.tensor[:, None].float(), size=(16, 80), mode="area")[0, 0]
    protos = torch.stack([p0, 1 - p0])[None] * 4.0  # prototype 0 = GT, prototype 1 = its complement
    return anchors, gts, protos


def test_mask_loss_decreases_toward_gt():
    anchors, gts, protos = _mask_setup()
    crit = STMaskLosses(_cfg())
    vals = []
    for s in [0.0, 0.3, 1.0, 3.0]:
        out = _outputs(1, len(anchors))
        with torch.no_grad():
            out["pred_coeffs"][0, :, 0] = s
            out["pred_coeffs"][0, :, 1] = -s
        losses, matches = crit(out, anchors, protos, gts, IMG)
        vals.append(losses["loss_mask"].item())
    assert all(x > y for x, y in zip(vals, vals[1:])), vals
    # a gradient step on the coefficients lowers it too
    out = _outputs(1, len(anchors), zeros=False)
    losses, _ = crit(out, anchors, protos, gts, IMG)
    (g,) = torch.autograd.grad(losses["loss_mask"], out["pred_coeffs"])
    with torch.no_grad():
        out["pred_coeffs"] -= 0.5 * g
    assert crit(out, anchors, protos, gts, IMG)[0]["loss_mask"].item() < losses["loss_mask"].item()


def test_mask_loss_value_and_normalisation():
    # one positive whose predicted box is the anchor (deltas 0): crop = 1.2x anchor, area in proto pixels
    anchors, gts, protos = _mask_setup()
    out = _outputs(1, len(anchors))
    losses, matches = STMaskLosses(_cfg())(out, anchors, protos, gts, IMG)
    pos = (matches[0][1] == 1).nonzero()[:, 0].tolist()
    assert len(pos) == 1
    box = anchors.tensor[pos[0]]
    ctr, half = (box[:2] + box[2:]) / 2, 0.6 * (box[2:] - box[:2])
    big = torch.cat([ctr - half, ctr + half]).clamp(min=0) / 4  # clamped to the image (y1 = -1.6 here)
    gt = F.interpolate(gts[0].gt_masks.tensor[:, None].float(), size=(16, 80), mode="area")[0, 0]
    bce = F.binary_cross_entropy(torch.full_like(gt, 0.5), gt, reduction="none")  # coeffs 0 -> sigmoid(0)
    cols, rows = torch.arange(80.0), torch.arange(16.0)
    keep = ((rows >= (big[1] - 1).clamp(min=0)) & (rows < (big[3] + 1).clamp(max=16)))[:, None] & (
        (cols >= (big[0] - 1).clamp(min=0)) & (cols < (big[2] + 1).clamp(max=80))
    )[None]
    area = (big[2] - big[0]) * (big[3] - big[1])
    expected = 6.125 * (bce * keep).sum() / area
    assert losses["loss_mask"].item() == pytest.approx(expected.item(), rel=1e-5)


def _mask_loss_per_frame(crit, protos, coeffs, pred_boxes_p, pos, pos_frame, wF, matches, gts, image_size):
    """The mask loss frame by frame (the form before it was batched over frames), as the reference."""
    from stmask_d2.layers.mask_ops import crop_masks, gt_masks_at_proto

    H, W = image_size
    Hp, Wp = protos.shape[-2:]
    ctr = 0.5 * (pred_boxes_p[:, :2] + pred_boxes_p[:, 2:])
    half = 0.5 * crit.mask_box_enlarge * (pred_boxes_p[:, 2:] - pred_boxes_p[:, :2])
    big = torch.cat([ctr - half, ctr + half], dim=1)
    big = torch.minimum(big.clamp(min=0), big.new_tensor([W, H, W, H])) / big.new_tensor(
        [W / Wp, H / Hp, W / Wp, H / Hp])
    area = (big[:, 2] - big[:, 0]).clamp(min=1.0) * (big[:, 3] - big[:, 1]).clamp(min=1.0)
    total = coeffs.sum() * 0.0 + protos.sum() * 0.0
    for f, inst in enumerate(gts):
        sel = pos_frame == f
        if not bool(sel.any()) or not inst.has("gt_masks"):
            continue
        gt = gt_masks_at_proto(inst.gt_masks, inst.image_size, (Hp, Wp), stride=int(round(H / Hp))).to(protos.dtype)
        idx, lab = matches[f]
        logits = torch.einsum("khw,pk->phw", protos[f], torch.tanh(coeffs[f][pos[f]].to(protos.dtype)))
        bce = F.binary_cross_entropy_with_logits(logits, gt[idx[lab == 1]], reduction="none")
        total = total + (wF[sel] * crop_masks(bce, big[sel], padding=1).sum(dim=(1, 2)) / area[sel]).sum()
    return crit.mask_weight * total


def test_mask_loss_batched_over_frames_equals_per_frame():
    # four frames: several positives, one frame without masks, one without any GT, one with a single positive
    anchors = _grid_anchors()
    a = anchors.tensor
    gts = [_instances(a[[0, 5, 12]] + 2.0), _instances(a[[1, 7]] + 1.0, masks=False), _instances(a[:0]),
           _instances(a[[9]] - 1.0)]
    crit = STMaskLosses(_cfg())
    out = _outputs(4, len(anchors), zeros=False, seed=3)
    protos = (torch.randn(4, K, IMG[0] // 4, IMG[1] // 4, generator=torch.Generator().manual_seed(5))
              .requires_grad_())
    losses, matches = crit(out, anchors, protos, gts, IMG)
    pos = torch.stack([m[1] for m in matches]) == 1
    assert pos.sum(dim=1).tolist()[2] == 0 and pos[0].sum() >= 3 and pos[1].sum() > 0 and pos[3].sum() > 0
    pos_frame = torch.nonzero(pos, as_tuple=True)[0]
    wF = (1.0 / (pos.sum(dim=1).clamp(min=1).float() * 4))[:, None].expand_as(pos)[pos]
    boxes = crit.box2box_transform.apply_deltas(out["pred_deltas"][pos], a[None].expand(4, -1, 4)[pos]).detach()
    args = (protos, out["pred_coeffs"], boxes, pos, pos_frame, wF, matches, gts, IMG)
    batched = crit._mask_loss(*args)
    assert batched.item() == pytest.approx(losses["loss_mask"].item(), rel=1e-6)
    reference = _mask_loss_per_frame(crit, *args)
    assert batched.item() > 0
    assert batched.item() == pytest.approx(reference.item(), rel=1e-5)
    g_b = torch.autograd.grad(batched, (protos, out["pred_coeffs"]))
    g_r = torch.autograd.grad(reference, (protos, out["pred_coeffs"]))
    for x, y in zip(g_b, g_r):
        assert x.abs().sum() > 0
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-7)
    # no frame with masks and positives: zero, attached to the graph
    no_masks = [_instances(a[[0]] + 2.0, masks=False)]
    out1 = _outputs(1, len(anchors), zeros=False)
    loss1, _ = crit(out1, anchors, _protos(1), no_masks, IMG)
    assert loss1["loss_mask"].item() == 0.0 and loss1["loss_mask"].requires_grad


def test_weights_from_config():
    anchors = _grid_anchors()
    a = anchors.tensor
    gts = [_instances(a[[0, 5]] + 2.0, ids=[1, 2]), _instances(a[[1]] + 1.0, ids=[1])]
    out = _outputs(2, len(anchors), zeros=False)
    protos = _protos(2)
    base, _ = STMaskLosses(_cfg())(out, anchors, protos, gts, IMG)
    doubled = _cfg(
        CLASS_WEIGHT=2 * 6.125 / 4, BOX_WEIGHT=10.0, CENTERNESS_WEIGHT=40.0, MASK_WEIGHT=2 * 6.125, TRACK_WEIGHT=10.0
    )
    twice, _ = STMaskLosses(doubled)(out, anchors, protos, gts, IMG)
    for k in base:
        assert base[k].item() > 0, k
        assert twice[k].item() == pytest.approx(2 * base[k].item(), rel=1e-5), k
    sl1, _ = STMaskLosses(_cfg(BOX_TYPE="smooth_l1"))(out, anchors, protos, gts, IMG)
    sl1x2, _ = STMaskLosses(_cfg(BOX_TYPE="smooth_l1", SMOOTH_L1_WEIGHT=3.0))(out, anchors, protos, gts, IMG)
    assert sl1x2["loss_box"].item() == pytest.approx(2 * sl1["loss_box"].item(), rel=1e-5)
    assert sl1["loss_box"].item() != pytest.approx(base["loss_box"].item())
    cfg = _cfg()
    cfg.MODEL.STMASK.HEAD.USE_CENTERNESS = False
    assert "loss_centerness" not in STMaskLosses(cfg)(out, anchors, protos, gts, IMG)[0]


def test_smooth_l1_value():
    anchors = _grid_anchors()
    gt_box = anchors.tensor[[4]] + torch.tensor([1.6, 0.0, 1.6, 0.0])  # shifted 1.6 px in x -> dx = 10*1.6/16 = 1
    gts = [_instances(gt_box)]
    out = _outputs(1, len(anchors))
    losses, _ = STMaskLosses(_cfg(BOX_TYPE="smooth_l1"))(out, anchors, _protos(1), gts, IMG)
    assert losses["loss_box"].item() == pytest.approx(1.5 * 0.5, abs=1e-5)  # smooth-L1(1, beta=1) = 0.5


def test_focal_value():
    anchors = _grid_anchors()
    gts = [_instances(anchors.tensor[[0, 5]], classes=[2, 7])]
    out = _outputs(1, len(anchors), num_logits=C)
    losses, matches = STMaskLosses(_cfg(CLASS_TYPE="focal"))(out, anchors, _protos(1), gts, IMG)
    # all logits 0: p = 0.5 everywhere; 2 positives, 18 negatives, no neutrals
    pos_term = 0.25 * 0.25 * math.log(2)  # alpha * (1-p)^2 * CE at the GT class
    neg_term = 0.75 * 0.25 * math.log(2)
    total = 2 * (pos_term + (C - 1) * neg_term) + 18 * C * neg_term
    assert losses["loss_class"].item() == pytest.approx(6.125 / 4 * total / 2, rel=1e-5)


def test_matches_structure():
    anchors = _grid_anchors()
    gts = [_instances(anchors.tensor[[0]], ids=[5]), _instances(anchors.tensor[[2]], ids=[9])]
    _, matches = STMaskLosses(_cfg())(_outputs(2, len(anchors)), anchors, _protos(2), gts, IMG)
    assert len(matches) == 2
    for (idx, lab), inst in zip(matches, gts):
        assert idx.shape == (20,) and idx.dtype == torch.int64 and lab.dtype == torch.int8
        assert inst.gt_ids[idx[lab == 1]].tolist() == inst.gt_ids.tolist()
