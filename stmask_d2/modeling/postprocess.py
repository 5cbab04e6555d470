"""Frame-level inference post-processing (docs/METHOD.md §10), as pure functions (no cfg).

Pipeline for one frame (the meta-architecture calls them in this order, the tracker sits between 2 and 3):

1. :func:`detect_frame`   head outputs of one image -> candidate detections after Fast NMS (boxes in input pixels)
2. :func:`build_masks`    soft masks at prototype resolution for the survivors only
3. :func:`frame_to_original` drop detections centred in the padding, rescale boxes, paste binary masks at the
   original image size.
"""
from typing import Callable, Optional, Sequence, Tuple

import torch
from torch.nn import functional as F

from detectron2.structures import Boxes, Instances

from ..layers import PROTO_STRIDE, LazyMasks, assemble_masks, fast_nms, fast_nms_per_class, paste_masks_to_image

__all__ = ["detect_frame", "build_masks", "frame_to_original"]


def detect_frame(
    logits: torch.Tensor,
    deltas: torch.Tensor,
    coeffs: Optional[torch.Tensor],
    embeds: Optional[torch.Tensor],
    centerness: Optional[torch.Tensor],
    anchors: Boxes,
    box2box_transform,
    image_size: Sequence[int],
    score_thresh: float = 0.05,
    nms_top_k: int = 200,
    nms_thresh: float = 0.5,
    cross_class: bool = True,
    max_dets: int = 100,
    softmax: bool = True,
    branches_at: Optional[Callable[[torch.Tensor], Tuple[torch.Tensor, torch.Tensor]]] = None,
) -> Instances:
    """Detections of one image (§10 steps 1-3). Masks are not built here (see :func:`build_masks`).

    1. Class probabilities: softmax over C+1 logits (background = index C) or sigmoid of C focal logits.
       Candidates: anchors whose max foreground probability > ``score_thresh``.
    2. Score = max foreground probability × centerness (if given); class = argmax (contiguous 0..C-1).
    3. ``cross_class`` (released): :func:`fast_nms` over all candidates (top ``nms_top_k``, IoU > ``nms_thresh``),
       then the best ``max_dets`` survivors by score (the paper's "top 100"; the released code has no cap, which
       only matters when ``nms_top_k`` > ``max_dets``). Otherwise (paper / "mAP*"): :func:`fast_nms_per_class`
       on the per-class scores (probability × centerness, classes with probability <= ``score_thresh``
       excluded), keeping scores > ``score_thresh`` as released, then the best ``max_dets`` overall.

    Args:
        logits: (A, C+1) softmax logits, or (A, C) sigmoid logits when ``softmax=False``.
        deltas: (A, 4) raw box deltas.
        coeffs: (A, k) raw mask coefficients, or None with ``branches_at``.
        embeds: (A, D) track embeddings, or None with ``branches_at``.
        centerness: (A,) tanh centerness or None.
        anchors: Boxes (A) in input pixels, same order as the head outputs.
        box2box_transform: e.g. ``stmask_d2.modeling.box_coding.stmask_box2box_transform()``.
        image_size: (h, w) of the unpadded network input (the ``Instances`` image size).
        branches_at: when ``coeffs`` / ``embeds`` are None, a callable (K,) anchor indices -> ((K, k) coeffs,
            (K, D) embeddings) computing them for the survivors only (e.g. ``STMaskPredictionHead.predict_at``).
    Returns:
        Instances(image_size) sorted by descending score with ``pred_boxes`` (Boxes, input pixels, not clipped),
        ``scores``, ``pred_classes`` (int64), ``pred_coeffs`` (raw), ``pred_embeddings``, ``anchor_indices``
        (int64 into A) and ``pred_centerness`` (when given).
    """
    if softmax:
        probs = F.softmax(logits.float(), dim=-1)[:, :-1]
    else:
        probs = logits.float().sigmoid()
    max_prob, classes = probs.max(dim=1)
    cand = (max_prob > score_thresh).nonzero(as_tuple=True)[0]
    ctr = centerness[cand].float() if centerness is not None else None
    boxes = box2box_transform.apply_deltas(deltas[cand].float(), anchors.tensor[cand].float())

    if cross_class:
        scores = max_prob[cand] * ctr if ctr is not None else max_prob[cand]
        keep = fast_nms(boxes, scores, nms_thresh, nms_top_k)[:max_dets]  # sorted by descending score
        sel, cls, scores = cand[keep], classes[cand][keep], scores[keep]
        boxes = boxes[keep]
    else:
        p = probs[cand]
        cls_scores = p * ctr[:, None] if ctr is not None else p
        cls_scores = torch.where(p > score_thresh, cls_scores, torch.full_like(cls_scores, float("-inf")))
        keep, cls, scores = fast_nms_per_class(
            boxes, cls_scores, nms_thresh, nms_top_k, score_thresh=score_thresh, max_dets=max_dets
        )
        sel = cand[keep]
        boxes = boxes[keep]

    inst = Instances(tuple(int(s) for s in image_size))
    inst.pred_boxes = Boxes(boxes)
    inst.scores = scores
    inst.pred_classes = cls.long()
    if coeffs is None or embeds is None:
        if branches_at is None:
            raise ValueError("detect_frame needs coeffs and embeds, or branches_at to compute them for the survivors")
        inst.pred_coeffs, inst.pred_embeddings = branches_at(sel)
    else:
        inst.pred_coeffs = coeffs[sel]
        inst.pred_embeddings = embeds[sel]
    inst.anchor_indices = sel
    if centerness is not None:
        inst.pred_centerness = centerness[sel]
    return inst


def build_masks(instances: Instances, protos: torch.Tensor, padding: float = 1, proto_stride: int = PROTO_STRIDE) -> Instances:
    """Add ``pred_masks_soft`` (N, Hp, Wp) = crop(sigmoid(P · tanh(c)), box / proto_stride) (§6), in place.

    Args:
        instances: with ``pred_boxes`` (input pixels) and ``pred_coeffs`` (N, k); only these survivors get masks.
        protos: (k, Hp, Wp) prototypes of the same image.
        padding: crop margin in prototype pixels.
    Returns:
        ``instances`` (the same object).
    """
    boxes = instances.pred_boxes.tensor / proto_stride
    instances.pred_masks_soft = assemble_masks(protos, instances.pred_coeffs, boxes, padding)
    return instances


def frame_to_original(
    instances: Instances,
    input_hw: Sequence[int],
    out_hw: Sequence[int],
    mask_thresh: float = 0.5,
    score_thresh: Optional[float] = None,
    proto_stride: int = PROTO_STRIDE,
    paste_in_box: bool = False,
    lazy_masks: bool = False,
) -> Instances:
    """Detections at the original image size (§10 step 5).

    Drops instances whose box centre lies in the padding (cx > w or cy > h of the unpadded input; and, if
    ``score_thresh`` is given, scores <= it), rescales ``pred_boxes`` by (W0/w, H0/h) and clips them to the
    original image, and, when ``pred_masks_soft`` is present, adds ``pred_masks`` (N, H0, W0) bool: padding cut off,
    bilinear resize (align_corners=False), ``> mask_thresh``, evaluated only in each mask's region
    (:func:`stmask_d2.layers.paste_masks_to_image`; ``paste_in_box=True`` restricts it to the rescaled box).

    Args:
        instances: output of :func:`detect_frame` (+ :func:`build_masks`), on the network input.
        input_hw: (h, w) unpadded network-input size.
        out_hw: (H0, W0) original size.
        lazy_masks: ``pred_masks`` as a :class:`~stmask_d2.layers.LazyMasks` (same values, pasted one instance at
            a time when used: memory independent of the frame size) instead of an (N, H0, W0) tensor.
    Returns:
        new Instances(out_hw) with all fields of the kept instances.
    """
    h, w = float(input_hw[0]), float(input_hw[1])
    H0, W0 = int(out_hw[0]), int(out_hw[1])
    centers = instances.pred_boxes.get_centers()
    keep = (centers[:, 0] <= w) & (centers[:, 1] <= h)
    if score_thresh is not None:
        keep &= instances.scores > score_thresh
    kept = instances[keep.nonzero(as_tuple=True)[0]]
    out = Instances((H0, W0), **kept.get_fields())
    boxes = Boxes(kept.pred_boxes.tensor.clone())
    boxes.scale(W0 / w, H0 / h)
    boxes.clip((H0, W0))
    out.pred_boxes = boxes
    if kept.has("pred_masks_soft") and lazy_masks:
        out.pred_masks = LazyMasks(kept.pred_masks_soft, (h / proto_stride, w / proto_stride), (H0, W0),
                                   threshold=mask_thresh, boxes_out=boxes.tensor if paste_in_box else None)
    elif kept.has("pred_masks_soft"):
        out.pred_masks = paste_masks_to_image(
            kept.pred_masks_soft,
            (h / proto_stride, w / proto_stride),
            (H0, W0),
            boxes_out=boxes.tensor if paste_in_box else None,
            threshold=mask_thresh,
        )
    return out
