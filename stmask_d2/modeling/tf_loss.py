"""Training losses of the temporal fusion head: L_Bshift and L_Mshift (docs/METHOD.md §7 "Training targets / losses").

For every pair (frame t-1, frame t) the RoIs are the positive anchors of frame t-1 whose GT identity also exists in
frame t; each RoI is the anchor's decoded predicted box of frame t-1 (detached).

- L_Bshift: smooth-L1 (beta 1) of the TF box deltas vs ``Box2BoxTransform.get_deltas(GT box at t-1, GT box at t)``
  (target relative to the GT box at t-1, as released), summed over the 4 deltas, mean over the pair's RoIs.
- L_Mshift: m = crop(sigmoid(P^t . tanh(c^{t-1} + dC)), GT box at t) with c^{t-1} and P^t detached; binary
  cross-entropy against the GT mask at t, pixel sum / GT box area, mean over the pair's RoIs.

Both are summed over pairs and divided by the number of pairs (pairs without a RoI count as 0, as released), then
weighted (BOXSHIFT_WEIGHT 5, MASKSHIFT_WEIGHT 6.125).

Resolution of L_Mshift: **prototype resolution** (stride 4). The GT mask is zero-padded to 4x the prototype size and
area-averaged (4x4 mean: soft targets at the boundary), the crop box is the GT box / 4 with 1 proto-pixel padding,
and the BCE pixel sum is divided by the GT box area in proto pixels (w/4 * h/4). The released code upsamples the
mask to the input resolution instead; both normalise the pixel sum by the box area, so the scale is the same, and
the proto-resolution loss is 16x cheaper.
"""
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F

from stmask_d2.layers.mask_ops import PROTO_STRIDE, crop_masks, grouped_proto_products, gt_masks_at_proto

__all__ = ["temporal_fusion_losses"]


def temporal_fusion_losses(
    tf_head,
    fused: torch.Tensor,
    pairs: Sequence[Tuple[int, int]],
    matches: Sequence[Tuple[torch.Tensor, torch.Tensor]],
    gt_instances: Sequence,
    pred_boxes: Sequence[torch.Tensor],
    pred_coeffs: Sequence[torch.Tensor],
    protos: Sequence[torch.Tensor],
    *,
    boxshift_weight: float = 5.0,
    maskshift_weight: float = 6.125,
) -> Dict[str, torch.Tensor]:
    """
    Args:
        tf_head: a :class:`TemporalFusionHead` (its ``forward`` and ``box2box_transform`` are used).
        fused: (B, P^2 + 2D, H, W), ``tf_head.fuse(...)`` of each pair (not detached: gradients reach P4/upfeature).
        pairs: B tuples (index of frame t-1, index of frame t) into the per-frame sequences below.
        matches: per frame (matched_gt_idxs (A,) int64, labels (A,) int64) of the frame-level anchor matching;
            label 1 = positive (matched_gt_idxs indexes that frame's ``gt_instances``).
        gt_instances: per frame ``Instances`` with ``gt_boxes`` (pixel XYXY), ``gt_masks`` (BitMasks (G, H, W)
            of the input image) and ``gt_ids`` (G,) int64.
        pred_boxes: per frame (A, 4) decoded predicted boxes (pixel XYXY); detached here.
        pred_coeffs: per frame (A, k) raw predicted coefficients; detached here.
        protos: per frame (k, Hp, Wp) prototypes (stride 4; a (F, k, Hp, Wp) tensor works too); detached here.
        boxshift_weight, maskshift_weight: MODEL.STMASK.LOSS.BOXSHIFT_WEIGHT / MASKSHIFT_WEIGHT.
    Returns:
        {"loss_boxshift": scalar, "loss_maskshift": scalar}. With no usable RoI at all both are 0 with the graph
        of ``fused`` and of the head's parameters kept (safe for DDP).
    """
    assert fused.shape[0] == len(pairs), f"{fused.shape[0]} fused maps for {len(pairs)} pairs"
    device = fused.device
    rois: List[torch.Tensor] = []
    per_pair = []  # of the pairs with RoIs: (prev GT boxes, cur GT boxes, coeffs, cur GT idx, cur frame)
    for fp, fc in pairs:
        gt_idx, labels = matches[fp]
        inst_p, inst_c = gt_instances[fp], gt_instances[fc]
        pos = (labels == 1).nonzero().squeeze(1)
        if pos.numel() == 0 or len(inst_c) == 0:
            rois.append(fused.new_zeros(0, 4))
            continue
        gi = gt_idx[pos]
        ids_p = inst_p.gt_ids.to(device)[gi]
        eq = ids_p[:, None] == inst_c.gt_ids.to(device)[None, :]  # (n, G_t)
        has = eq.any(dim=1)
        ci = eq.to(torch.uint8).argmax(dim=1)
        box_p = inst_p.gt_boxes.tensor.to(device)[gi]
        box_c = inst_c.gt_boxes.tensor.to(device)[ci]
        valid = has & (box_p[:, 2] > box_p[:, 0]) & (box_p[:, 3] > box_p[:, 1])
        valid &= (box_c[:, 2] > box_c[:, 0]) & (box_c[:, 3] > box_c[:, 1])
        keep = valid.nonzero().squeeze(1)
        if keep.numel() == 0:
            rois.append(fused.new_zeros(0, 4))
            continue
        a = pos[keep]
        rois.append(pred_boxes[fp][a].detach().to(fused.dtype))
        per_pair.append((box_p[keep], box_c[keep], pred_coeffs[fp][a].detach(), ci[keep], fc))

    num_pairs = max(len(pairs), 1)
    if not per_pair:
        zero = fused.sum() * 0.0 + sum(p.sum() * 0.0 for p in tf_head.parameters())
        return {"loss_boxshift": zero, "loss_maskshift": zero.clone()}

    # every pair's RoIs at once (the pairs without RoIs add none, so the head's rows are per_pair's, in order);
    # a RoI of a pair with c RoIs weighs 1 / c: the per-pair means, summed
    box_deltas, coeff_deltas = tf_head(fused, rois)
    transform = tf_head.box2box_transform
    box_p, box_c, coeffs, ci, fc = zip(*per_pair)
    counts = [x.shape[0] for x in box_p]
    box_p, box_c, coeffs = torch.cat(box_p), torch.cat(box_c), torch.cat(coeffs)
    weight = torch.cat([torch.full((c,), 1.0 / c, device=device) for c in counts])
    frame = torch.cat([torch.full((c,), f, dtype=torch.long, device=device) for c, f in zip(counts, fc)])

    target = transform.get_deltas(box_p.float(), box_c.float())
    lb = F.smooth_l1_loss(box_deltas.float(), target, beta=1.0, reduction="none").sum(1)
    loss_box = (weight * lb).sum()

    # GT masks at prototype resolution of each frame t that has RoIs (once per frame), rows picked per RoI
    pro = (protos if torch.is_tensor(protos) else torch.stack(list(protos))).detach().float()
    hp, wp = pro.shape[-2:]
    gt_rows, gts, first = [], [], {}
    for f, c in zip(fc, ci):
        if f not in first:
            first[f] = sum(g.shape[0] for g in gts)
            gts.append(gt_masks_at_proto(gt_instances[f].gt_masks, gt_instances[f].image_size, (hp, wp)).to(device))
        gt_rows.append(c + first[f])
    gt = torch.cat(gts)[torch.cat(gt_rows)]
    new_coeffs = coeffs.to(coeff_deltas.dtype) + coeff_deltas  # eq. 13, before tanh
    box_proto = box_c / PROTO_STRIDE
    logits = grouped_proto_products(pro, torch.tanh(new_coeffs.float()), frame)  # (n, hp, wp)
    masks = crop_masks(logits.sigmoid(), box_proto, padding=1)
    bce = F.binary_cross_entropy(masks.clamp(0, 1), gt, reduction="none").sum(dim=(1, 2))
    area = (box_proto[:, 2] - box_proto[:, 0]) * (box_proto[:, 3] - box_proto[:, 1])
    loss_mask = (weight * bce / area).sum()

    return {
        "loss_boxshift": loss_box / num_pairs * boxshift_weight,
        "loss_maskshift": loss_mask / num_pairs * maskshift_weight,
    }
