"""Detector losses of STMask (docs/METHOD.md §9): classification, box, centerness, mask and track.

The temporal-fusion losses (B_shift, M_shift) live with the TF head; :class:`STMaskLosses` hands them the
per-frame anchor matches.

Notation: N frames in the batch (F in the spec), A anchors, C foreground classes, k prototypes,
P_f positives of frame f, w_a = 1 / max(|P_f|, 1) for a in P_f. Every term except focal classification and
track is ``weight * (1/N) * sum_f sum_{a in P_f} w_a * term_a``.

Known bugs of the released code that are fixed here (§12): box DIoU is computed in pixel coordinates (item 16);
the centerness target is detached (item 15).
"""
import logging
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from fvcore.nn import sigmoid_focal_loss_jit, smooth_l1_loss
from torch import nn

from detectron2.config import configurable
from detectron2.layers import diou_loss
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.structures import Boxes, Instances

from ..layers.mask_ops import crop_masks, grouped_proto_products, gt_masks_at_proto
from .box_coding import stmask_box2box_transform
from .matcher import ClassAwareMatcher

__all__ = ["STMaskLosses"]

logger = logging.getLogger(__name__)


def _ordered_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """(M, 4) boxes with x1 <= x2, y1 <= y2 (GT boxes may come flipped or degenerate)."""
    x1 = torch.minimum(boxes[:, 0], boxes[:, 2])
    x2 = torch.maximum(boxes[:, 0], boxes[:, 2])
    y1 = torch.minimum(boxes[:, 1], boxes[:, 3])
    y2 = torch.maximum(boxes[:, 1], boxes[:, 3])
    return torch.stack([x1, y1, x2, y2], dim=1)


def _diou_loss(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """``detectron2.layers.diou_loss`` (reduction "none"), except that a non-finite predicted box (NaN / inf deltas)
    gives a NaN loss term, so the trainer skips the step, instead of failing diou_loss's ``x2 >= x1`` assertion."""
    finite = torch.isfinite(pred).all(dim=1)
    if bool(finite.all()):
        return diou_loss(pred, gt, reduction="none")
    loss = diou_loss(torch.where(finite[:, None], pred, gt), gt, reduction="none")
    return torch.where(finite, loss, torch.full_like(loss, float("nan")))


class STMaskLosses(nn.Module):
    """Anchor matching + detector losses of one training batch of frames."""

    @configurable
    def __init__(
        self,
        *,
        num_classes: int,
        matcher: ClassAwareMatcher,
        box2box_transform: Box2BoxTransform,
        class_type: str = "softmax_ohem",
        class_weight: float = 6.125 / 4,
        ohem_neg_pos_ratio: float = 3.0,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        box_type: str = "diou",
        box_weight: float = 5.0,
        smooth_l1_weight: float = 1.5,
        centerness_weight: float = 20.0,
        mask_weight: float = 6.125,
        mask_box_enlarge: float = 1.2,
        track_weight: float = 5.0,
        diou_normalized: bool = False,
        centerness_target_detach: bool = True,
    ):
        """
        Args:
            num_classes: C foreground classes (background = index C in softmax mode).
            matcher: per-image anchor matcher (§9 steps 1-5).
            box2box_transform: delta coding, weights (10, 10, 5, 5).
            class_type: "softmax_ohem" (released) or "focal" (sigmoid focal loss on C logits).
            class_weight: weight of L_C (released conf_alpha 6.125 / 4).
            ohem_neg_pos_ratio: OHEM negatives per positive, mined over the whole batch; also the total weight
                of the negatives relative to the positives (the "3" of 3F/|Neg| in §9).
            focal_alpha, focal_gamma: focal loss parameters.
            box_type: "diou" (released BIoU loss, in pixel coordinates) or "smooth_l1" (paper; raw deltas).
            box_weight: weight of the DIoU loss. smooth_l1_weight: weight of the smooth-L1 loss.
            centerness_weight: weight of the centerness loss (0 disables it).
            mask_weight: weight of L_M. mask_box_enlarge: training crop = predicted box enlarged by this.
            track_weight: weight of L_T (0 disables it).
            diou_normalized: compute DIoU on boxes divided by the padded input size (released, §12 item 16)
                instead of pixels.
            centerness_target_detach: detach the DIoU target of the centerness loss (False = released, §12 item 15:
                the centerness loss also trains the box branch).
        """
        super().__init__()
        assert class_type in ("softmax_ohem", "focal"), f"LOSS.CLASS_TYPE must be softmax_ohem|focal, got {class_type}"
        assert box_type in ("diou", "smooth_l1"), f"LOSS.BOX_TYPE must be diou|smooth_l1, got {box_type}"
        self.num_classes = num_classes
        self.matcher = matcher
        self.box2box_transform = box2box_transform
        self.class_type = class_type
        self.class_weight = class_weight
        self.ohem_neg_pos_ratio = ohem_neg_pos_ratio
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma
        self.box_type = box_type
        self.box_weight = box_weight
        self.smooth_l1_weight = smooth_l1_weight
        self.centerness_weight = centerness_weight
        self.mask_weight = mask_weight
        self.mask_box_enlarge = mask_box_enlarge
        self.track_weight = track_weight
        self.diou_normalized = diou_normalized
        self.centerness_target_detach = centerness_target_detach

    @classmethod
    def from_config(cls, cfg):
        L = cfg.MODEL.STMASK.LOSS
        return {
            "num_classes": cfg.MODEL.STMASK.NUM_CLASSES,
            "matcher": ClassAwareMatcher(cfg),
            "box2box_transform": stmask_box2box_transform(),
            "class_type": L.CLASS_TYPE,
            "class_weight": L.CLASS_WEIGHT,
            "ohem_neg_pos_ratio": L.OHEM_NEG_POS_RATIO,
            "focal_alpha": L.FOCAL_ALPHA,
            "focal_gamma": L.FOCAL_GAMMA,
            "box_type": L.BOX_TYPE,
            "box_weight": L.BOX_WEIGHT,
            "smooth_l1_weight": L.SMOOTH_L1_WEIGHT,
            "centerness_weight": L.CENTERNESS_WEIGHT if cfg.MODEL.STMASK.HEAD.USE_CENTERNESS else 0.0,
            "mask_weight": L.MASK_WEIGHT,
            "mask_box_enlarge": L.MASK_BOX_ENLARGE,
            "track_weight": L.TRACK_WEIGHT,
            "diou_normalized": L.DIOU_NORMALIZED,
            "centerness_target_detach": L.CENTERNESS_TARGET_DETACH,
        }

    # ------------------------------------------------------------------------------------------------------
    def forward(
        self,
        outputs: Dict[str, torch.Tensor],
        anchors: Boxes,
        protos: Optional[torch.Tensor],
        gt_instances: List[Instances],
        image_size: Tuple[int, int],
    ) -> Tuple[Dict[str, torch.Tensor], List[Tuple[torch.Tensor, torch.Tensor]]]:
        """
        Args:
            outputs: head outputs (docs/ARCHITECTURE.md): "pred_logits" (N, A, C+1) [focal: (N, A, C)],
                "pred_deltas" (N, A, 4), "pred_coeffs" (N, A, k), optional "pred_embeds" (N, A, D) (L2-normed),
                optional "pred_centerness" (N, A), optional "protos" (used when ``protos`` is None).
            anchors: Boxes (A, 4), pixel XYXY, the same for every frame.
            protos: (N, k, Hp, Wp) prototypes, or None to read ``outputs["protos"]``.
            gt_instances: N Instances (one per frame) with gt_boxes, gt_classes, optional gt_masks
                (BitMasks or PolygonMasks), optional gt_ids (track identities; frames without them are left
                out of the track loss).
            image_size: padded input size (H, W); boxes are clamped to it and masks padded to it.

        Returns:
            losses: {"loss_class", "loss_box", "loss_mask"} always, plus "loss_centerness" when the
                centerness weight is > 0 and "pred_centerness" is given, and "loss_track" when the track weight
                is > 0 and "pred_embeds" is given (0 when fewer than two positives carry gt_ids). Every value is a
                finite scalar attached to the graph, already multiplied by its config weight.
            matches: N tuples (matched_gt_idxs (A,) int64, labels (A,) int8 with 1 pos / 0 neg / -1 ignore),
                one per frame; gt_instances[f].gt_ids[matched_gt_idxs[labels == 1]] are the identities of
                frame f's positives.
        """
        logits = outputs["pred_logits"]
        deltas = outputs["pred_deltas"]
        coeffs = outputs["pred_coeffs"]
        if protos is None:
            protos = outputs["protos"]
        N, A = logits.shape[:2]
        assert len(gt_instances) == N, f"got {len(gt_instances)} gt Instances for {N} frames"
        assert len(anchors) == A, f"got {len(anchors)} anchors for {A} predictions per frame"
        anchor_t = anchors.tensor.to(deltas.dtype)

        # ---- matching (loop over frames) -------------------------------------------------------------------
        matches = []
        gt_boxes_per_anchor, gt_cls_per_anchor = [], []
        for f, inst in enumerate(gt_instances):
            gt_boxes = inst.gt_boxes.to(deltas.device)
            gt_classes = inst.gt_classes.to(deltas.device)
            idx, lab = self.matcher(gt_boxes, anchors, gt_classes, logits[f].detach())
            matches.append((idx, lab))
            if len(inst) > 0:
                gt_boxes_per_anchor.append(_ordered_xyxy(gt_boxes.tensor.to(deltas.dtype))[idx])
                gt_cls_per_anchor.append(gt_classes[idx])
            else:
                gt_boxes_per_anchor.append(anchor_t.new_zeros((A, 4)))
                gt_cls_per_anchor.append(gt_classes.new_zeros((A,)))
        labels = torch.stack([m[1] for m in matches])  # (N, A)
        gt_boxes_a = torch.stack(gt_boxes_per_anchor)  # (N, A, 4)
        gt_cls_a = torch.stack(gt_cls_per_anchor)  # (N, A)
        pos = labels == 1
        num_pos_f = pos.sum(dim=1)  # (N,)
        # w_a = 1 / max(|P_f|, 1), divided by F once here: sum_f sum_a wF_a * x_a == (1/F) sum_f sum_a w_a x_a
        w_frame = 1.0 / (num_pos_f.clamp(min=1).to(deltas.dtype) * N)  # (N,)
        wF = w_frame[:, None].expand(N, A)[pos]  # (P,)
        pos_frame = torch.nonzero(pos, as_tuple=True)[0]  # (P,)

        losses = {"loss_class": self._class_loss(logits, labels, gt_cls_a, w_frame)}

        # ---- box and centerness ------------------------------------------------------------------------------
        anchors_p = anchor_t[None].expand(N, A, 4)[pos]
        deltas_p = deltas[pos]
        gt_p = gt_boxes_a[pos]
        pred_boxes_p = self.box2box_transform.apply_deltas(deltas_p, anchors_p)
        if self.diou_normalized:  # released: coordinates / padded input size (distorts d^2 / c^2)
            scale = pred_boxes_p.new_tensor([image_size[1], image_size[0], image_size[1], image_size[0]])
            diou_l = _diou_loss(pred_boxes_p / scale, gt_p / scale)
        else:
            diou_l = _diou_loss(pred_boxes_p, gt_p)  # 1 - DIoU, pixel coordinates
        if self.box_type == "diou":
            losses["loss_box"] = self.box_weight * (wF * diou_l).sum()
        else:
            # paper / Yolact: smooth-L1 on the raw deltas; GT sides clamped >= 1 px so log() stays finite
            ctr = 0.5 * (gt_p[:, :2] + gt_p[:, 2:])
            half = 0.5 * (gt_p[:, 2:] - gt_p[:, :2]).clamp(min=1.0)
            target = self.box2box_transform.get_deltas(anchors_p, torch.cat([ctr - half, ctr + half], dim=1))
            sl1 = smooth_l1_loss(deltas_p, target, beta=1.0, reduction="none").sum(dim=1)
            losses["loss_box"] = self.smooth_l1_weight * (wF * sl1).sum()
        if self.centerness_weight > 0 and "pred_centerness" in outputs:
            ctr_p = outputs["pred_centerness"][pos]
            target = 1.0 - diou_l
            if self.centerness_target_detach:  # §12 item 15 fixed: no gradient into the box branch
                target = target.detach()
            sl1 = smooth_l1_loss(ctr_p, target, beta=1.0, reduction="none")
            losses["loss_centerness"] = self.centerness_weight * (wF * sl1).sum()

        # ---- mask --------------------------------------------------------------------------------------------
        losses["loss_mask"] = self._mask_loss(
            protos, coeffs, pred_boxes_p.detach(), pos, pos_frame, wF, matches, gt_instances, image_size
        )

        # ---- track -------------------------------------------------------------------------------------------
        if self.track_weight > 0 and "pred_embeds" in outputs:
            losses["loss_track"] = self._track_loss(outputs["pred_embeds"], pos, num_pos_f, matches, gt_instances)
        return losses, matches

    # ------------------------------------------------------------------------------------------------------
    def _class_loss(self, logits, labels, gt_cls_a, w_frame):
        """L_C. softmax_ohem: (1/F)[sum_f sum_{P_f} w_a CE_a + sum_{Neg} (r F / |Neg|) CE_a] with the top r|P|
        negatives of the whole batch by logsumexp - logit_bg (= CE against background); focal: sum / |P|."""
        N, A = labels.shape
        C = self.num_classes
        pos = labels == 1
        neg = labels == 0
        if self.class_type == "focal":
            valid = labels >= 0
            target = torch.zeros_like(logits)
            target[pos] = F.one_hot(gt_cls_a[pos].long(), logits.shape[-1]).to(logits.dtype)
            loss = sigmoid_focal_loss_jit(
                logits[valid], target[valid], alpha=self.focal_alpha, gamma=self.focal_gamma, reduction="sum"
            )
            return self.class_weight * loss / max(int(pos.sum()), 1)

        assert logits.shape[-1] == C + 1, f"softmax classification needs C+1 = {C + 1} logits, got {logits.shape[-1]}"
        target = torch.where(pos, gt_cls_a.long(), torch.full_like(gt_cls_a.long(), C))
        ce = F.cross_entropy(logits.reshape(N * A, C + 1), target.reshape(-1), reduction="none").view(N, A)
        w_pos = w_frame[:, None].expand(N, A)  # already holds the 1/F
        loss_pos = (ce * w_pos)[pos].sum()
        num_neg = min(int(self.ohem_neg_pos_ratio * int(pos.sum())), int(neg.sum()))
        if num_neg > 0:
            score = torch.where(neg, ce.detach(), torch.full_like(ce, float("-inf"))).view(-1)
            neg_idx = score.topk(num_neg).indices
            # (1/F) * r F / |Neg| = r / |Neg|
            loss_neg = ce.view(-1)[neg_idx].sum() * (self.ohem_neg_pos_ratio / num_neg)
        else:
            loss_neg = ce.sum() * 0.0
        return self.class_weight * (loss_pos + loss_neg)

    def _mask_loss(self, protos, coeffs, pred_boxes_p, pos, pos_frame, wF, matches, gt_instances, image_size):
        """L_M at prototype resolution (see module docs / docs of ``forward``).

        Per positive a: BCE(sigmoid(P . tanh(c_a)), GT mask area-downsampled to the prototype grid), summed over
        the pixels inside the crop of the detached predicted box enlarged ``mask_box_enlarge`` times (clamped to
        the image), divided by that box's area in prototype pixels (each side clamped >= 1); weighted by
        w_a / F. Pixels outside the crop are excluded (the released code adds a constant 100 per GT pixel there,
        which carries no gradient).
        """
        H, W = image_size
        Hp, Wp = protos.shape[-2:]
        sy, sx = H / Hp, W / Wp
        # enlarged, clamped predicted boxes, in prototype pixels
        ctr = 0.5 * (pred_boxes_p[:, :2] + pred_boxes_p[:, 2:])
        half = 0.5 * self.mask_box_enlarge * (pred_boxes_p[:, 2:] - pred_boxes_p[:, :2])
        big = torch.cat([ctr - half, ctr + half], dim=1)
        scale = big.new_tensor([W, H, W, H])
        big = torch.minimum(big.clamp(min=0), scale)
        big = big / big.new_tensor([sx, sy, sx, sy])
        area = (big[:, 2] - big[:, 0]).clamp(min=1.0) * (big[:, 3] - big[:, 1]).clamp(min=1.0)

        zero = coeffs.sum() * 0.0 + protos.sum() * 0.0
        # GT masks at prototype resolution of every frame with masks and positives, concatenated: (G_all, Hp, Wp)
        frames = [f for f, inst in enumerate(gt_instances) if inst.has("gt_masks") and bool(pos[f].any())]
        if not frames:
            return self.mask_weight * zero
        gts = [gt_masks_at_proto(gt_instances[f].gt_masks, gt_instances[f].image_size, (Hp, Wp),
                                 stride=int(round(sy)), device=protos.device) for f in frames]
        sizes = torch.tensor([g.shape[0] for g in gts], device=pos.device)
        offset = torch.zeros(len(gt_instances), dtype=torch.long, device=pos.device)  # first GT row of each frame
        offset[frames] = torch.cumsum(sizes, 0) - sizes
        # the positives (frame-major, the order of ``pos``) of those frames and the GT row of each
        group = pos_frame
        gt_row = torch.stack([m[0] for m in matches])[pos] + offset[pos_frame]
        coef = torch.tanh(coeffs[pos].to(protos.dtype))  # (P, k)
        keep = torch.isin(pos_frame, torch.tensor(frames, device=pos.device))
        if not bool(keep.all()):
            group, gt_row, coef, big, area, wF = (t[keep] for t in (group, gt_row, coef, big, area, wF))
        # every frame's positives at once: one batched product instead of a loop over frames
        mask_logits = grouped_proto_products(protos, coef, group)  # (P, Hp, Wp)
        gt = torch.cat(gts).to(protos.dtype)[gt_row]
        bce = F.binary_cross_entropy_with_logits(mask_logits, gt, reduction="none")
        per_anchor = crop_masks(bce, big, padding=1).sum(dim=(1, 2)) / area
        return self.mask_weight * (zero + (wF * per_anchor).sum())

    def _track_loss(self, embeds, pos, num_pos_f, matches, gt_instances):
        """L_T over all positives of all frames with gt_ids: pairs i<j, -log(cos01) same id / -log(1 - cos01)
        different id (clamped at 1e-10), weighted w_i w_j, normalised by sum w_i w_j; not divided by F."""
        e, ids, w = [], [], []
        for f, inst in enumerate(gt_instances):
            if not inst.has("gt_ids") or int(num_pos_f[f]) == 0:
                continue
            idx, lab = matches[f]
            p = lab == 1
            e.append(embeds[f][p])
            ids.append(inst.gt_ids.to(embeds.device)[idx[p]])
            w.append(embeds.new_full((int(p.sum()),), 1.0 / int(num_pos_f[f])))
        if sum(x.shape[0] for x in e) < 2:
            return embeds.sum() * 0.0
        e, ids, w = torch.cat(e), torch.cat(ids), torch.cat(w)
        # in fp32 also under autocast: a (P, P) product of a size that changes every step, which in bf16 made
        # oneDNN build a new matmul kernel each step (and the pairwise logs want the precision)
        with torch.autocast(e.device.type, enabled=False):
            if e.dtype in (torch.float16, torch.bfloat16):
                e = e.float()
            cos01 = (1.0 + e @ e.t()) / 2.0
        same = ids[:, None] == ids[None, :]
        pair = torch.where(same, -torch.log(cos01.clamp(min=1e-10)), -torch.log((1.0 - cos01).clamp(min=1e-10)))
        ww = torch.triu(w[:, None] * w[None, :], diagonal=1)
        return self.track_weight * (ww * pair).sum() / ww.sum()
