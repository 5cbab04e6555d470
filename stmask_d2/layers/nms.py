"""Fast NMS (Yolact): one IoU matrix per class instead of a sequential loop (docs/METHOD.md §10 step 3).

Fast NMS differs from greedy NMS: a box is dropped when its IoU with *any* higher-scored box exceeds the
threshold, even if that box was itself suppressed. It therefore suppresses at least as much as greedy NMS.
"""
from typing import Tuple

import torch
from torchvision.ops import box_iou

__all__ = ["fast_nms", "fast_nms_per_class", "batched_box_iou"]


def batched_box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of XYXY boxes, batched: a (B, N, 4), b (B, M, 4) -> (B, N, M)."""
    area_a = (a[..., 2] - a[..., 0]).clamp(min=0) * (a[..., 3] - a[..., 1]).clamp(min=0)
    area_b = (b[..., 2] - b[..., 0]).clamp(min=0) * (b[..., 3] - b[..., 1]).clamp(min=0)
    lt = torch.maximum(a[..., :, None, :2], b[..., None, :, :2])
    rb = torch.minimum(a[..., :, None, 2:], b[..., None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[..., :, None] + area_b[..., None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


def fast_nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float = 0.5, top_k: int = 200) -> torch.Tensor:
    """Cross-class Fast NMS as released (``Detect_TF.cc_fast_nms``).

    Sort by score, keep the ``top_k`` best, build the IoU matrix, keep its strict upper triangle and drop box j
    if max_i<j IoU(i, j) > ``iou_threshold``.

    Args:
        boxes: (N, 4) XYXY.
        scores: (N,).
    Returns:
        (K,) int64 indices into ``boxes`` of the kept boxes, sorted by descending score.
    """
    if boxes.numel() == 0:
        return torch.zeros((0,), dtype=torch.long, device=boxes.device)
    order = scores.argsort(descending=True)[:top_k]
    b = boxes[order].float()
    iou = box_iou(b, b).triu_(diagonal=1)
    keep = iou.max(dim=0).values <= iou_threshold
    return order[keep]


def fast_nms_per_class(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    iou_threshold: float = 0.5,
    top_k: int = 200,
    score_thresh: float = 0.05,
    max_dets: int = 100,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-class Fast NMS (Yolact, the README's "mAP*" / paper variant), batched over classes.

    For every class independently: the ``top_k`` boxes by that class's score, a (C, K, K) IoU tensor, upper
    triangle, drop if IoU with any higher-scored box > ``iou_threshold``; keep only scores > ``score_thresh``.
    Survivors of all classes are then ranked by score and the best ``max_dets`` returned. One box may be kept
    for several classes.

    Args:
        boxes: (N, 4) XYXY, shared by all classes.
        scores: (N, C) per-class scores (foreground only).
    Returns:
        indices (D,) int64 into N, classes (D,) int64, scores (D,) — sorted by descending score, D <= max_dets.
    """
    n, c = scores.shape
    dev = boxes.device
    if n == 0 or c == 0:
        e = torch.zeros((0,), dtype=torch.long, device=dev)
        return e, e.clone(), scores.new_zeros((0,))
    k = min(top_k, n)
    cls_scores, idx = scores.t().sort(dim=1, descending=True)  # (C, N)
    cls_scores, idx = cls_scores[:, :k], idx[:, :k]  # (C, K)
    b = boxes.float()[idx]  # (C, K, 4)
    iou = batched_box_iou(b, b).triu_(diagonal=1)
    keep = (iou.max(dim=1).values <= iou_threshold) & (cls_scores > score_thresh)  # (C, K)
    classes = torch.arange(c, device=dev)[:, None].expand(c, k)[keep]
    kept_idx = idx[keep]
    kept_scores = cls_scores[keep]
    order = kept_scores.argsort(descending=True)[:max_dets]
    return kept_idx[order], classes[order], kept_scores[order]
