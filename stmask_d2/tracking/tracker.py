"""Online tracker of STMask: matching score, ID assignment, decaying confidence (docs/METHOD.md §8, paper eqs. 15-17).

The tracker owns its memory (one row per track, all tensors). The meta-architecture asks it for the memory
(``tracker.memory``), runs the temporal fusion head on it (frame t-1 -> t) and hands the propagated boxes /
coefficients / soft masks back together with the frame's detections (``tracker.update``).
It imports ``stmask_d2.layers`` only.
"""
import logging

import torch
import torch.nn.functional as F
from torchvision.ops import box_iou

from stmask_d2.layers.mask_ops import pairwise_mask_iou

__all__ = ["OnlineTracker"]

logger = logging.getLogger(__name__)

# Detection fields the tracker needs; any further tensor field with one row per detection (e.g. "centerness")
# is carried along in the memory unchanged.
_REQUIRED = ("boxes", "scores", "classes", "coeffs", "embeds", "masks")
_PROPAGATED = ("boxes", "coeffs", "masks")


class OnlineTracker:
    """
    Memory (``self._mem``, M rows; None before the first detection or after ``reset()``)::

        "ids"     (M,) int64   track ids, 0, 1, 2, ... in order of creation
        "boxes"   (M, 4)       pixel XYXY in the network-input frame (last detected or TF-propagated)
        "coeffs"  (M, k)       raw (pre-tanh) mask coefficients
        "embeds"  (M, D)       track embeddings
        "classes" (M,) int64
        "scores"  (M,)         detection score, x SCORE_DECAY per frame while missing
        "masks"   (M, Hp, Wp)  soft masks at prototype size
        "ages"    (M,) int64   frames since last matched (0 = detected in the current frame)
        + any extra per-detection field passed to ``update`` (carried over unchanged while missing)

    Matching (detection i vs memory row j, using the *propagated* box / mask of j when given):

    - ``match_mode="released"``: S_ij = (1 + cos_ij)/2 + mask_iou_weight * mIoU_ij + box_iou_weight * bIoU_ij,
      against a "new track" column of value ``new_track_score`` (1.4 = 0.5 + 0.3 + 2*0.3).
    - ``match_mode="paper"``: S_ij = alpha * cos_ij + beta * mIoU_ij (eq. 15); new track unless max_j S_ij >
      ``paper_thresh`` (eq. 16).

    mIoU is computed on (mask > ``mask_thresh``) at prototype size (0 when the union is empty). j* = argmax over
    [new-track column, memory]; ties go to the new-track column.

    Assignment / conflicts (released): detections are visited in descending score; a detection whose j* is the
    new-track column opens a new id; otherwise the first (highest-score) detection claiming a memory row takes it
    (row overwritten, age 0) and every later claimant of that row is **dropped** (not given a new id, not emitted).
    This is done without a Python loop: the winner of each row is the claimant of minimal rank in score order.

    Unmatched rows take their propagated box / coeffs / mask (when ``propagated`` is given), score *=
    ``score_decay``, age += 1. Rows with age > ``prune_after`` are removed from memory (``prune_after <= 0``: never,
    as released), which bounds the memory on long videos.

    Emitted per frame (eq. 17): rows with age <= ``max_missing_output``, more than ``min_mask_pixels`` pixels of
    (mask > ``mask_thresh``) and score > ``score_thresh``.

    ``frame_level=True``: the released tracker of models without TF (``layers/functions/track.py``): no
    propagation (``propagated`` must be None; rows are compared with their last detection), only the current
    frame's detections that hold an id are emitted (their own box / score / class / mask, score >
    ``score_thresh``; no missing tracks), and a matched row is overwritten only when the detection's mask IoU
    exceeds ``frame_level_guard_iou`` (0.3) with fewer than two rows (an ambiguous detection keeps the id but leaves
    the memory as it was).
    """

    def __init__(
        self,
        *,
        match_mode="released",
        mask_iou_weight=1.0,
        box_iou_weight=2.0,
        new_track_score=1.4,
        alpha=1.0,
        beta=1.0,
        paper_thresh=0.8,
        score_decay=0.95,
        max_missing_output=10,
        prune_after=30,
        min_mask_pixels=1,
        mask_thresh=0.5,
        score_thresh=0.05,
        frame_level=False,
        frame_level_guard_iou=0.3,
    ):
        assert match_mode in ("released", "paper"), f"match_mode must be 'released' or 'paper', got {match_mode!r}"
        assert prune_after <= 0 or prune_after >= max_missing_output, (
            f"TRACKER.PRUNE_AFTER ({prune_after}) must be >= MAX_MISSING_OUTPUT ({max_missing_output}) "
            "(or <= 0 to disable pruning)"
        )
        self.match_mode = match_mode
        self.mask_iou_weight = float(mask_iou_weight)
        self.box_iou_weight = float(box_iou_weight)
        self.new_track_score = float(new_track_score)
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.paper_thresh = float(paper_thresh)
        self.score_decay = float(score_decay)
        self.max_missing_output = int(max_missing_output)
        self.prune_after = int(prune_after)
        self.min_mask_pixels = int(min_mask_pixels)
        self.mask_thresh = float(mask_thresh)
        self.score_thresh = float(score_thresh)
        self.frame_level = bool(frame_level)
        self.frame_level_guard_iou = float(frame_level_guard_iou)
        self.reset()

    @classmethod
    def from_config(cls, cfg):
        """Build from ``cfg.MODEL.STMASK.TRACKER`` and ``cfg.MODEL.STMASK.TEST`` (score / mask thresholds); without
        TF and with ``TRACKER.NO_TF_MODE`` "released", the released frame-level tracker (``frame_level=True``)."""
        t = cfg.MODEL.STMASK.TRACKER
        frame_level = (not cfg.MODEL.STMASK.TF.ENABLED) and t.get("NO_TF_MODE", "released") == "released"
        assert t.get("NO_TF_MODE", "released") in ("released", "propagate"), (
            f"MODEL.STMASK.TRACKER.NO_TF_MODE must be 'released' or 'propagate', got {t.NO_TF_MODE!r}"
        )
        return cls(
            match_mode=t.MATCH_MODE,
            mask_iou_weight=t.MASK_IOU_WEIGHT,
            box_iou_weight=t.BOX_IOU_WEIGHT,
            new_track_score=t.NEW_TRACK_SCORE,
            alpha=t.ALPHA,
            beta=t.BETA,
            paper_thresh=t.PAPER_THRESH,
            score_decay=t.SCORE_DECAY,
            max_missing_output=t.MAX_MISSING_OUTPUT,
            prune_after=t.PRUNE_AFTER,
            min_mask_pixels=t.MIN_MASK_PIXELS,
            mask_thresh=cfg.MODEL.STMASK.TEST.MASK_THRESH,
            score_thresh=cfg.MODEL.STMASK.TEST.SCORE_THRESH,
            frame_level=frame_level,
        )

    # ------------------------------------------------------------------------------------------------------
    def reset(self):
        """Forget every track (call at the start of each video)."""
        self._mem = None
        self._next_id = 0

    def __len__(self):
        return 0 if self._mem is None else int(self._mem["ids"].numel())

    @property
    def memory(self):
        """The current memory (dict of tensors, see the class docstring), or None when empty. Read-only: the
        meta-architecture propagates ``memory["boxes"]`` (pixel XYXY) and ``memory["coeffs"]`` (raw) with TF."""
        return None if len(self) == 0 else self._mem

    # ------------------------------------------------------------------------------------------------------
    def match_scores(self, detections, cand):
        """(N, M+1) matching scores; column 0 is the new-track column. ``cand``: memory with the candidate
        (propagated) boxes and masks."""
        det_masks = detections["masks"] > self.mask_thresh
        mem_masks = cand["masks"] > self.mask_thresh
        miou = pairwise_mask_iou(det_masks.flatten(1), mem_masks.flatten(1)).to(detections["scores"].dtype)
        e_d = F.normalize(detections["embeds"].float(), dim=1)
        e_m = F.normalize(cand["embeds"].float(), dim=1)
        cos = (e_d @ e_m.t()).to(miou.dtype)
        n = miou.shape[0]
        if self.match_mode == "released":
            biou = box_iou(detections["boxes"].float(), cand["boxes"].float()).to(miou.dtype)
            s = (1 + cos) / 2 + self.mask_iou_weight * miou + self.box_iou_weight * biou
            dummy = self.new_track_score
        else:
            s = self.alpha * cos + self.beta * miou
            dummy = self.paper_thresh
        return torch.cat([s.new_full((n, 1), dummy), s], dim=1)

    def update(self, detections, propagated=None):
        """
        Args:
            detections (dict): the frame's N detections (after NMS), tensors with N rows:
                "boxes" (N, 4) pixel XYXY, "scores" (N,), "classes" (N,) int64, "coeffs" (N, k) raw,
                "embeds" (N, D), "masks" (N, Hp, Wp) soft masks at prototype size; optional extra fields
                (e.g. "centerness" (N,)) are stored and carried along.
            propagated (dict or None): for the current memory (M rows, same order as ``tracker.memory``),
                the TF-propagated "boxes" (M, 4), "coeffs" (M, k) and soft "masks" (M, Hp, Wp). None: the
                memory keeps its last boxes / coeffs / masks (e.g. TF disabled).
        Returns:
            dict: the frame output, K emitted tracks: "track_ids" (K,) int64, "boxes" (K, 4), "scores" (K,),
            "classes" (K,) int64, "masks" (K, Hp, Wp) soft, "ages" (K,) int64 (0 = detected in this frame).
        """
        missing = [k for k in _REQUIRED if k not in detections]
        assert not missing, f"OnlineTracker.update: detections lack {missing}"
        if self.frame_level:
            assert propagated is None, "the frame-level tracker (no TF) takes no propagated memory"
        mem = self._mem
        M = len(self)
        cand = None
        if M > 0:
            cand = dict(mem)
            if propagated is not None:
                for k in _PROPAGATED:
                    assert propagated[k].shape[0] == M, (
                        f"propagated[{k!r}] has {propagated[k].shape[0]} rows, the memory has {M}: propagate "
                        "tracker.memory of this frame, in its order"
                    )
                    cand[k] = propagated[k].to(mem[k].dtype)
        N = int(detections["scores"].numel())

        matched_rows = None  # (n_match,) memory rows taken by detections
        matched_dets = None
        new_dets = None
        if N > 0:
            if M > 0:
                s = self.match_scores(detections, cand)
                jstar = s.argmax(dim=1)  # first maximum: ties go to the new-track column
            else:
                jstar = detections["scores"].new_zeros(N, dtype=torch.long)
            order = torch.argsort(detections["scores"], descending=True, stable=True)
            rank = torch.empty_like(order)
            rank[order] = torch.arange(N, device=order.device)
            is_new = jstar == 0
            new_dets = order[is_new[order]]  # new ids in descending score order
            if M > 0 and not bool(is_new.all()):
                claim = jstar - 1  # memory row claimed (-1 = new)
                big = torch.full((M,), N, dtype=torch.long, device=claim.device)
                claimants = ~is_new
                winner_rank = big.scatter_reduce(0, claim[claimants], rank[claimants], reduce="amin")
                wins = claimants & (rank == winner_rank[claim.clamp(min=0)])
                matched_dets = wins.nonzero().squeeze(1)
                matched_rows = claim[matched_dets]
        emitted_dets, emitted_ids = None, None
        if self.frame_level and N > 0:
            # released frame-level output: the winners (with their row's id) and the new ids, detection order
            if matched_dets is not None and matched_dets.numel() > 0:
                emitted_dets, emitted_ids = matched_dets, mem["ids"][matched_rows]
                det_masks = detections["masks"][matched_dets] > self.mask_thresh
                miou = pairwise_mask_iou(det_masks.flatten(1), (mem["masks"] > self.mask_thresh).flatten(1))
                clear = (miou > self.frame_level_guard_iou).sum(1) < 2  # else: id kept, memory not updated
                matched_dets, matched_rows = matched_dets[clear], matched_rows[clear]

        # --- update the memory: unmatched rows are propagated, decayed and aged
        if M > 0:
            new_mem = dict(cand)
            new_mem["scores"] = mem["scores"] * (1.0 if self.frame_level else self.score_decay)
            new_mem["ages"] = mem["ages"] + 1
            if matched_rows is not None and matched_rows.numel() > 0:
                for k in new_mem:
                    if k == "ids":
                        continue
                    if k == "ages":
                        new_mem[k] = new_mem[k].index_fill(0, matched_rows, 0)
                    elif k in detections:
                        v = new_mem[k].clone()
                        v[matched_rows] = detections[k][matched_dets].to(v.dtype)
                        new_mem[k] = v
            mem = new_mem
        if new_dets is not None and new_dets.numel() > 0:
            n_new = new_dets.numel()
            dev = detections["scores"].device
            ids = torch.arange(self._next_id, self._next_id + n_new, device=dev, dtype=torch.long)
            self._next_id += n_new
            if self.frame_level:
                if emitted_dets is None:
                    emitted_dets, emitted_ids = new_dets, ids
                else:
                    emitted_dets, emitted_ids = torch.cat([emitted_dets, new_dets]), torch.cat([emitted_ids, ids])
            fresh = {k: v[new_dets] for k, v in detections.items() if torch.is_tensor(v) and v.shape[:1] == (N,)}
            fresh["ids"] = ids
            fresh["ages"] = torch.zeros(n_new, dtype=torch.long, device=dev)
            if mem is None:
                mem = fresh
            else:
                mem = {k: torch.cat([mem[k], fresh[k].to(mem[k].dtype)]) for k in mem if k in fresh}
        if mem is None:
            return self._empty_output(detections)

        # --- bounded memory
        if self.prune_after > 0:
            keep = mem["ages"] <= self.prune_after
            if not bool(keep.all()):
                mem = {k: v[keep] for k, v in mem.items()}
        self._mem = mem if mem["ids"].numel() > 0 else None
        if self._mem is None:
            return self._empty_output(detections)

        if self.frame_level:
            return self._frame_level_output(detections, emitted_dets, emitted_ids)

        # --- emission (eq. 17)
        area = (mem["masks"] > self.mask_thresh).flatten(1).sum(1)
        emit = (
            (mem["ages"] <= self.max_missing_output)
            & (area > self.min_mask_pixels)
            & (mem["scores"] > self.score_thresh)
        )
        idx = emit.nonzero().squeeze(1)
        return {
            "track_ids": mem["ids"][idx],
            "boxes": mem["boxes"][idx],
            "scores": mem["scores"][idx],
            "classes": mem["classes"][idx],
            "masks": mem["masks"][idx],
            "ages": mem["ages"][idx],
        }

    def _frame_level_output(self, detections, dets, ids):
        """The current frame's detections ``dets`` that hold the ids ``ids``, in detection (score) order, with
        score > ``score_thresh``."""
        if dets is None or dets.numel() == 0:
            return self._empty_output(detections)
        order = torch.argsort(dets, stable=True)
        dets, ids = dets[order], ids[order]
        keep = detections["scores"][dets] > self.score_thresh
        dets, ids = dets[keep], ids[keep]
        return {
            "track_ids": ids,
            "boxes": detections["boxes"][dets],
            "scores": detections["scores"][dets],
            "classes": detections["classes"][dets],
            "masks": detections["masks"][dets],
            "ages": torch.zeros(dets.numel(), dtype=torch.long, device=dets.device),
        }

    @staticmethod
    def _empty_output(detections):
        def e(k):
            return detections[k][:0]

        dev = detections["scores"].device
        return {
            "track_ids": torch.zeros(0, dtype=torch.long, device=dev),
            "boxes": e("boxes"),
            "scores": e("scores"),
            "classes": e("classes"),
            "masks": e("masks"),
            "ages": torch.zeros(0, dtype=torch.long, device=dev),
        }
