"""Online tracker of STMask: matching score, ID assignment, decaying confidence (docs/METHOD.md §8, paper eqs. 15-17).

The tracker owns its memory (one row per track, all tensors). The meta-architecture asks it for the memory
(``tracker.memory``), runs the temporal fusion head on it (frame t-1 -> t) and hands the propagated boxes /
coefficients / soft masks back together with the frame's detections (``tracker.update``).
It imports ``stmask_d2.layers`` only.
"""
import torch
import torch.nn.functional as F
from detectron2.config import configurable
from torchvision.ops import box_iou

from stmask_d2.layers.mask_ops import pairwise_mask_iou

__all__ = ["OnlineTracker"]

# Detection fields the tracker needs; any further tensor field with one row per detection (e.g. "centerness")
# is carried along in the memory unchanged.
_REQUIRED = ("boxes", "scores", "classes", "coeffs", "embeds", "masks")
_PROPAGATED = ("boxes", "coeffs", "masks")
# Fields of the frame output (besides "track_ids" and "ages").
_OUTPUT = ("boxes", "scores", "classes", "masks")
# Constructor arguments read from cfg.MODEL.STMASK.TRACKER.<NAME IN UPPER CASE> by ``from_config``.
_TRACKER_KEYS = (
    "match_mode", "mask_iou_weight", "box_iou_weight", "new_track_score", "alpha", "beta", "paper_thresh",
    "score_decay", "max_missing_output", "prune_after", "min_mask_pixels",
)


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

    @configurable
    def __init__(
        self,
        *,
        match_mode="released", mask_iou_weight=1.0, box_iou_weight=2.0, new_track_score=1.4,  # released matching
        alpha=1.0, beta=1.0, paper_thresh=0.8,  # paper matching (eqs. 15-16)
        score_decay=0.95, max_missing_output=10, prune_after=30,  # missing tracks
        min_mask_pixels=1, mask_thresh=0.5, score_thresh=0.05,  # emission (eq. 17)
        frame_level=False, frame_level_guard_iou=0.3,  # the released tracker of models without TF
    ):
        """Keyword arguments as described in the class docstring; ``OnlineTracker(cfg)`` builds from a config
        (see :meth:`from_config`)."""
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
        """Constructor kwargs from ``cfg.MODEL.STMASK.TRACKER`` (each argument of ``_TRACKER_KEYS`` from the key of
        the same name in upper case) and ``cfg.MODEL.STMASK.TEST`` (score / mask thresholds); without TF and with
        ``TRACKER.NO_TF_MODE`` "released", the released frame-level tracker (``frame_level=True``)."""
        t = cfg.MODEL.STMASK.TRACKER
        no_tf_mode = t.get("NO_TF_MODE", "released")
        assert no_tf_mode in ("released", "propagate"), (
            f"MODEL.STMASK.TRACKER.NO_TF_MODE must be 'released' or 'propagate', got {no_tf_mode!r}"
        )
        kwargs = {name: t[name.upper()] for name in _TRACKER_KEYS}
        kwargs["mask_thresh"] = cfg.MODEL.STMASK.TEST.MASK_THRESH
        kwargs["score_thresh"] = cfg.MODEL.STMASK.TEST.SCORE_THRESH
        kwargs["frame_level"] = (not cfg.MODEL.STMASK.TF.ENABLED) and no_tf_mode == "released"
        return kwargs

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
        One frame of tracking: :meth:`propagate` (candidates), :meth:`match`, :meth:`assign`, (frame-level guard),
        :meth:`age`, :meth:`open_tracks`, :meth:`prune`, then :meth:`emit` (or the frame-level output).

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
        cand = self.propagate(propagated)
        matched_dets, matched_rows, new_dets = self.assign(self.match(detections, cand), detections["scores"])
        emitted = None
        if self.frame_level:
            # released frame-level output: the winners (with their row's id) and the new ids, detection order
            emitted = (matched_dets, self._mem["ids"][matched_rows] if cand is not None else matched_rows)
            matched_dets, matched_rows = self._frame_level_guard(detections, matched_dets, matched_rows)
        mem = None if cand is None else self.age(cand, detections, matched_dets, matched_rows)
        mem, new_ids = self.open_tracks(mem, detections, new_dets)
        mem = None if mem is None else self.prune(mem)
        self._mem = mem
        if mem is None:
            return self._empty_output(detections)
        if self.frame_level:
            return self._frame_level_output(
                detections, torch.cat([emitted[0], new_dets]), torch.cat([emitted[1], new_ids])
            )
        return self.emit(mem)

    # ------------------------------------------------------------------------------------------------------
    # the steps of ``update``, in order
    def propagate(self, propagated):
        """The matching candidates: the memory (M rows) with the TF-propagated "boxes" (M, 4), "coeffs" (M, k) and
        "masks" (M, Hp, Wp) of ``propagated`` in place of its own (cast to the memory's dtypes), or the memory as it
        is when ``propagated`` is None. Returns a new dict (the memory is not modified), or None when M = 0."""
        if len(self) == 0:
            return None
        mem = self._mem
        cand = dict(mem)
        if propagated is not None:
            M = len(self)
            for k in _PROPAGATED:
                assert propagated[k].shape[0] == M, (
                    f"propagated[{k!r}] has {propagated[k].shape[0]} rows, the memory has {M}: propagate "
                    "tracker.memory of this frame, in its order"
                )
                cand[k] = propagated[k].to(mem[k].dtype)
        return cand

    def match(self, detections, cand):
        """The best column j* (N,) int64 for each of the N detections: 0 = the new-track column, j >= 1 = memory row
        j - 1 of ``cand`` (M rows, or None when the memory is empty: all 0). The first maximum of
        :meth:`match_scores` wins, so ties go to the new-track column."""
        n = int(detections["scores"].numel())
        if cand is None or n == 0:
            return detections["scores"].new_zeros(n, dtype=torch.long)
        return self.match_scores(detections, cand).argmax(dim=1)

    @staticmethod
    def assign(jstar, scores):
        """Resolve conflicts in descending score order (released), without a Python loop.

        Args:
            jstar (N,) int64: best column per detection (0 = new track, j >= 1 = memory row j - 1), see :meth:`match`.
            scores (N,): detection scores.
        Returns:
            matched_dets (n,) int64, matched_rows (n,) int64: detection ``matched_dets[i]`` takes memory row
                ``matched_rows[i]``; of the detections claiming one row only the highest-score one (first listed on
                ties) wins, the others are dropped. Ascending detection order.
            new_dets (n_new,) int64: detections that open a new track, in descending score order (stable).
        """
        N = int(jstar.numel())
        order = torch.argsort(scores, descending=True, stable=True)
        rank = torch.empty_like(order)
        rank[order] = torch.arange(N, device=order.device)
        is_new = jstar == 0
        new_dets = order[is_new[order]]
        claim = jstar - 1  # memory row claimed (-1 = new)
        claimants = ~is_new
        if not bool(claimants.any()):
            return new_dets[:0], new_dets[:0], new_dets
        big = torch.full((int(claim.max()) + 1,), N, dtype=torch.long, device=claim.device)
        winner_rank = big.scatter_reduce(0, claim[claimants], rank[claimants], reduce="amin")
        matched_dets = (claimants & (rank == winner_rank[claim.clamp(min=0)])).nonzero().squeeze(1)
        return matched_dets, claim[matched_dets], new_dets

    def _frame_level_guard(self, detections, matched_dets, matched_rows):
        """Frame-level tracker: keep only the matches (n,) whose detection mask overlaps (IoU > ``frame_level_guard_iou``)
        fewer than two memory rows; the others keep their id but leave the memory as it was. Returns the kept
        (matched_dets, matched_rows)."""
        if matched_dets.numel() == 0:
            return matched_dets, matched_rows
        det_masks = detections["masks"][matched_dets] > self.mask_thresh
        miou = pairwise_mask_iou(det_masks.flatten(1), (self._mem["masks"] > self.mask_thresh).flatten(1))
        clear = (miou > self.frame_level_guard_iou).sum(1) < 2
        return matched_dets[clear], matched_rows[clear]

    def age(self, cand, detections, matched_dets, matched_rows):
        """The memory after this frame's matches: rows ``matched_rows`` (n,) take every field of their detection
        ``matched_dets`` (n,) (age 0); the other rows keep their candidate (propagated) box / coeffs / mask, their
        score times ``score_decay`` (1 for the frame-level tracker) and age + 1. ``cand``: M rows (see
        :meth:`propagate`). Returns a new dict of M rows."""
        mem = self._mem
        new_mem = dict(cand)
        new_mem["scores"] = mem["scores"] * (1.0 if self.frame_level else self.score_decay)
        new_mem["ages"] = mem["ages"] + 1
        if matched_rows.numel() == 0:
            return new_mem
        for k in new_mem:
            if k == "ages":
                new_mem[k] = new_mem[k].index_fill(0, matched_rows, 0)
            elif k != "ids" and k in detections:
                v = new_mem[k].clone()
                v[matched_rows] = detections[k][matched_dets].to(v.dtype)
                new_mem[k] = v
        return new_mem

    def open_tracks(self, mem, detections, new_dets):
        """Give the detections ``new_dets`` (n_new,) the next ids and append them to ``mem`` (M rows or None) with
        age 0: every tensor field of ``detections`` with one row per detection (a field of ``mem`` that this frame's
        detections lack is dropped). Returns (memory of M + n_new rows or None, the new ids (n_new,) int64)."""
        dev = detections["scores"].device
        n_new = int(new_dets.numel())
        ids = torch.arange(self._next_id, self._next_id + n_new, device=dev, dtype=torch.long)
        if n_new == 0:
            return mem, ids
        self._next_id += n_new
        N = int(detections["scores"].numel())
        fresh = {k: v[new_dets] for k, v in detections.items() if torch.is_tensor(v) and v.shape[:1] == (N,)}
        fresh["ids"] = ids
        fresh["ages"] = torch.zeros(n_new, dtype=torch.long, device=dev)
        if mem is None:
            return fresh, ids
        return {k: torch.cat([mem[k], fresh[k].to(mem[k].dtype)]) for k in mem if k in fresh}, ids

    def prune(self, mem):
        """Bounded memory: drop the rows with age > ``prune_after`` (none when ``prune_after <= 0``). ``mem``: M rows;
        returns the M' <= M kept rows, or None when none is left."""
        if self.prune_after > 0:
            keep = mem["ages"] <= self.prune_after
            if not bool(keep.all()):
                mem = {k: v[keep] for k, v in mem.items()}
        return mem if mem["ids"].numel() > 0 else None

    def emit(self, mem):
        """The frame output (eq. 17): the K of the M rows of ``mem`` with age <= ``max_missing_output``, more than
        ``min_mask_pixels`` pixels of (mask > ``mask_thresh``) and score > ``score_thresh``, in memory order (see
        :meth:`update` for the fields)."""
        area = (mem["masks"] > self.mask_thresh).flatten(1).sum(1)
        emit = (
            (mem["ages"] <= self.max_missing_output)
            & (area > self.min_mask_pixels)
            & (mem["scores"] > self.score_thresh)
        )
        idx = emit.nonzero().squeeze(1)
        return _output(mem["ids"][idx], mem, idx, mem["ages"][idx])

    def _frame_level_output(self, detections, dets, ids):
        """The current frame's detections ``dets`` (K,) that hold the ids ``ids`` (K,), in detection (score) order,
        with score > ``score_thresh``; age 0."""
        order = torch.argsort(dets, stable=True)
        dets, ids = dets[order], ids[order]
        keep = detections["scores"][dets] > self.score_thresh
        dets, ids = dets[keep], ids[keep]
        return _output(ids, detections, dets, torch.zeros(dets.numel(), dtype=torch.long, device=dets.device))

    @staticmethod
    def _empty_output(detections):
        """The frame output without any track (0 rows, on the detections' device and dtypes)."""
        empty = torch.zeros(0, dtype=torch.long, device=detections["scores"].device)
        return _output(empty, detections, empty, empty)


def _output(track_ids, src, rows, ages):
    """The frame output dict: "track_ids", "ages" as given and the ``_OUTPUT`` fields of ``src`` at ``rows``."""
    return {"track_ids": track_ids, **{k: src[k][rows] for k in _OUTPUT}, "ages": ages}
