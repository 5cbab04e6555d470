"""Class-aware anchor matching of the released STMask code (docs/METHOD.md §9, "Anchor matching"; §12 item 4).

Labels follow Detectron2's :class:`detectron2.modeling.matcher.Matcher` convention: 1 positive, 0 negative,
-1 ignored (neutral). With ``class_aware=False`` and ``multi_gt_neutral=False`` the result is exactly the plain
IoU matching of Detectron2's ``Matcher(thresholds, labels)``; the low-quality rule differs (see below).
"""
import logging
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F

from detectron2.config import configurable
from detectron2.structures import Boxes, pairwise_iou

__all__ = ["ClassAwareMatcher"]

logger = logging.getLogger(__name__)

# Overlap given to anchors whose best overlap was forced by the low-quality rule: above any threshold, which
# can reach at most pos + 1 after the class-aware shift (mean q <= 1).
_FORCED_OVERLAP = 2.0


class ClassAwareMatcher:
    """
    Per-image anchor matching (§9 steps 1-5):

    1. IoU between the G GT boxes and the A anchors (``pairwise_iou``); best GT per anchor.
    2. (``multi_gt_neutral``) anchors with IoU > neg threshold to more than one GT get best-overlap
       (neg + pos) / 2 (0.45 with the released 0.4 / 0.5), i.e. neutral under the static thresholds.
    3. (``class_aware``) for anchors with best-overlap > pos threshold, q = 2p/(1+p), p = probability of the
       matched GT's class under the current (detached) prediction; best-overlap += q; both thresholds are
       raised by mean(q) over those anchors.
    4. (``allow_low_quality_matches``) each GT forces its highest-IoU anchor to match it (best-overlap := 2).
       Greedy over GTs as in the released (Yolact) code: repeatedly take the globally largest remaining
       (GT, anchor) IoU, assign that anchor to that GT, then remove that GT row and that anchor column, so two
       GTs never take the same anchor (the later GT takes its next-best anchor). The loop is over GTs (at most
       G short steps on the (G, A) matrix), never over anchors. Unlike Detectron2's ``set_low_quality_matches_``
       there is exactly one forced anchor per GT (no ties) and the forced anchor's matched GT is replaced.
    5. labels: 1 where overlap >= pos thr, -1 where neg thr <= overlap < pos thr, 0 where overlap < neg thr
       (Detectron2's half-open intervals; the released ``<`` comparisons are the same).
    """

    @configurable
    def __init__(
        self,
        *,
        thresholds: List[float] = (0.4, 0.5),
        labels: List[int] = (0, -1, 1),
        allow_low_quality_matches: bool = True,
        class_aware: bool = True,
        multi_gt_neutral: bool = True,
        class_prob: str = "softmax",
    ):
        """
        Args:
            thresholds: [neg, pos] IoU thresholds (MODEL.STMASK.MATCHER.IOU_THRESHOLDS).
            labels: labels of the three intervals [<neg, [neg,pos), >=pos] (MODEL.STMASK.MATCHER.IOU_LABELS).
            allow_low_quality_matches: step 4.
            class_aware: step 3.
            multi_gt_neutral: step 2.
            class_prob: how p of step 3 is read from the logits: "softmax" over (C+1) logits (background
                = index C, MODEL.STMASK.LOSS.CLASS_TYPE "softmax_ohem") or "sigmoid" of the class logit
                (C logits, CLASS_TYPE "focal").
        """
        assert class_prob in ("softmax", "sigmoid"), f"class_prob must be softmax|sigmoid, got {class_prob}"
        thresholds = list(thresholds)
        labels = list(labels)
        assert len(thresholds) == 2 and 0 < thresholds[0] <= thresholds[1], (
            f"MATCHER.IOU_THRESHOLDS must be [neg, pos] with 0 < neg <= pos, got {thresholds}"
        )
        assert len(labels) == 3 and all(l in (-1, 0, 1) for l in labels), (
            f"MATCHER.IOU_LABELS must be three values in {{-1, 0, 1}}, got {labels}"
        )
        self.thresholds = thresholds
        self.labels = labels
        self.allow_low_quality_matches = allow_low_quality_matches
        self.class_aware = class_aware
        self.multi_gt_neutral = multi_gt_neutral
        self.class_prob = class_prob

    @classmethod
    def from_config(cls, cfg):
        m = cfg.MODEL.STMASK.MATCHER
        return {
            "thresholds": list(m.IOU_THRESHOLDS),
            "labels": list(m.IOU_LABELS),
            "allow_low_quality_matches": m.ALLOW_LOW_QUALITY_MATCHES,
            "class_aware": m.CLASS_AWARE,
            "multi_gt_neutral": m.MULTI_GT_NEUTRAL,
            "class_prob": "sigmoid" if cfg.MODEL.STMASK.LOSS.CLASS_TYPE == "focal" else "softmax",
        }

    def __call__(self, *args, **kwargs) -> Tuple[torch.Tensor, torch.Tensor]:
        """:meth:`match` (same arguments); returns only (matched_gt_idxs (A,) int64, labels (A,) int8)."""
        matched, labels, _, _ = self.match(*args, **kwargs)
        return matched, labels

    @torch.no_grad()
    def match(
        self,
        gt_boxes: Boxes,
        anchors: Boxes,
        gt_classes: Optional[torch.Tensor] = None,
        pred_logits: Optional[torch.Tensor] = None,
        match_quality_matrix: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, Tuple[float, float]]:
        """
        Args:
            gt_boxes: (G, 4) GT boxes of one image (pixel XYXY).
            anchors: (A, 4) anchors of that image.
            gt_classes: (G,) int64 contiguous classes; needed when ``class_aware``.
            pred_logits: (A, C+1) softmax logits (background = index C) or (A, C) sigmoid logits (focal mode)
                of that image; treated as constants. Needed when ``class_aware``.
            match_quality_matrix: optional precomputed (G, A) IoU (replaces step 1's ``pairwise_iou``).

        Returns:
            matched_gt_idxs: (A,) int64 in [0, G) (0 everywhere when G == 0); meaningful where labels == 1.
            labels: (A,) int8, 1 / 0 / -1.
            overlap: (A,) float, the final best-overlap of each anchor (after steps 2-4).
            thresholds: (neg, pos) actually used in step 5 (raised by mean q when class-aware).
        """
        iou = match_quality_matrix if match_quality_matrix is not None else pairwise_iou(gt_boxes, anchors)
        G, A = iou.shape
        if G == 0:
            return (
                iou.new_zeros((A,), dtype=torch.int64),
                iou.new_full((A,), self.labels[0], dtype=torch.int8),
                iou.new_zeros((A,)),
                (float(self.thresholds[0]), float(self.thresholds[1])),
            )
        neg_thr, pos_thr = float(self.thresholds[0]), float(self.thresholds[1])

        # 1. best GT per anchor
        overlap, matched = iou.max(dim=0)
        overlap = overlap.clone()

        # 2. anchors overlapping several GTs become neutral
        if self.multi_gt_neutral and G > 1:
            multi = (iou > neg_thr).sum(dim=0) > 1
            overlap[multi] = 0.5 * (neg_thr + pos_thr)

        # 3. class-aware boost and dynamic thresholds
        if self.class_aware:
            assert gt_classes is not None and pred_logits is not None, (
                "CLASS_AWARE matching needs gt_classes and pred_logits; set MODEL.STMASK.MATCHER.CLASS_AWARE=False"
            )
            boost = overlap > pos_thr
            if boost.any():
                logits = pred_logits[boost].detach().float()
                cls = gt_classes[matched[boost]].long()
                prob = F.softmax(logits, dim=1) if self.class_prob == "softmax" else torch.sigmoid(logits)
                p = prob.gather(1, cls[:, None]).squeeze(1)
                q = 2.0 * p / (1.0 + p)
                overlap[boost] += q.to(overlap.dtype)
                shift = q.mean().item()
                neg_thr += shift
                pos_thr += shift

        # 4. forced (low-quality) matches, greedy over GTs in IoU order
        if self.allow_low_quality_matches:
            best_anchor = iou.argmax(dim=1)  # (G,)
            if torch.unique(best_anchor).numel() == G:
                # common case, no two GTs share their best anchor: the greedy result in one vectorised step
                overlap[best_anchor] = _FORCED_OVERLAP
                matched[best_anchor] = torch.arange(G, device=iou.device)
            else:
                self._greedy_force_(iou, overlap, matched)

        # 5. labels (Detectron2 half-open intervals)
        labels = torch.full((A,), self.labels[1], dtype=torch.int8, device=iou.device)
        labels[overlap < neg_thr] = self.labels[0]
        labels[overlap >= pos_thr] = self.labels[2]
        return matched, labels, overlap, (neg_thr, pos_thr)

    @staticmethod
    def _greedy_force_(iou: torch.Tensor, overlap: torch.Tensor, matched: torch.Tensor) -> None:
        """Released greedy forced matching (in place): G steps over the (G, A) IoU matrix."""
        G, A = iou.shape
        work = iou.clone()
        for _ in range(min(G, A)):
            best_per_gt, best_anchor = work.max(dim=1)
            g = int(best_per_gt.argmax())
            if best_per_gt[g] < 0:
                break
            a = int(best_anchor[g])
            overlap[a] = _FORCED_OVERLAP
            matched[a] = g
            work[g, :] = -1.0
            work[:, a] = -1.0
