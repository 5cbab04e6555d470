"""HOTA / DetA / AssA for YouTube-VIS-format results, computed with the ``trackeval`` package's HOTA metric.

The per-(class, video) data dict is built the way TrackEval's ``YouTubeVIS`` dataset builds it: a detection in
frame t is any track whose segmentation at t is truthy (empty masks included, with similarity 0), similarity is
the per-frame mask IoU (pycocotools), ids are relabelled contiguously per (class, video), sequences are combined
with ``HOTA.combine_sequences`` and classes averaged with ``combine_classes_class_averaged`` over every GT
category (TrackEval's ``cls_comb_cls_av``: a category absent from both GT and results counts as 0). The summary
numbers are the means over the 19 alpha thresholds, as TrackEval reports them. All predictions are used (no
maxDets cut); segmentation lists are read up to the video length (missing frames count as absent).
"""
from collections import OrderedDict, defaultdict

import numpy as np
from pycocotools import mask as mask_util

from .ytvis_eval import YTVISEvalError, YTVISResults, load_ytvis_gt, load_ytvis_results

__all__ = ["compute_hota"]


def _seq_data(num_t, gt_ids, tr_ids, sims):
    """TrackEval data dict for one (class, video); ids relabelled to 0..n-1."""
    ug = np.unique(np.concatenate(gt_ids)) if num_t else np.zeros(0, int)
    ut = np.unique(np.concatenate(tr_ids)) if num_t else np.zeros(0, int)
    gmap = {int(g): i for i, g in enumerate(ug)}
    tmap = {int(t): i for i, t in enumerate(ut)}
    return {
        "num_timesteps": num_t,
        "gt_ids": [np.array([gmap[int(x)] for x in g], dtype=int) for g in gt_ids],
        "tracker_ids": [np.array([tmap[int(x)] for x in t], dtype=int) for t in tr_ids],
        "similarity_scores": sims,
        "num_gt_dets": int(sum(len(g) for g in gt_ids)),
        "num_tracker_dets": int(sum(len(t) for t in tr_ids)),
        "num_gt_ids": len(ug),
        "num_tracker_ids": len(ut),
    }


def compute_hota(gt, results, lenient=True):
    """HOTA, DetA, AssA (fractions) of ``results`` against ``gt`` (paths, dicts/lists or loaded objects); -1 each
    when the ground truth has no video or no annotated instance (undefined, as AP is then).

    Steps: per video, :func:`_frame_similarities` then :func:`_video_class_data` per category, evaluated by
    TrackEval's ``HOTA.eval_sequence``; :func:`_combine` averages over sequences and classes."""
    from trackeval.metrics import HOTA

    gt = load_ytvis_gt(gt)
    if not gt.has_annotations:
        raise YTVISEvalError("the ground truth has no annotations; nothing to evaluate")
    if not isinstance(results, YTVISResults):
        results = load_ytvis_results(results, gt, lenient=lenient)
    if not gt.video_ids or not gt.anns:  # nothing to match: undefined, like AP without ground truth
        return _UNDEFINED.copy()
    metric = HOTA()
    cats = set(gt.cat_ids)
    gts_by_vid, dts_by_vid = defaultdict(list), defaultdict(list)
    for a in gt.anns:
        if a["category_id"] in cats:
            gts_by_vid[a["video_id"]].append(a)
    for i in range(len(results)):
        dts_by_vid[results.video_id[i]].append(i)

    per_class = defaultdict(dict)  # cat -> {video: res}
    for vid in gt.video_ids:
        gts, dts = gts_by_vid.get(vid, []), dts_by_vid.get(vid, [])
        if not gts and not dts:
            continue
        L = gt.videos[vid]["length"]
        frames = _frame_similarities(L, [g["segmentations"] for g in gts], [results.segmentations[i] for i in dts])
        g_cat = np.array([g["category_id"] for g in gts])
        d_cat = np.array([results.category_id[i] for i in dts])
        for c in sorted(set(g_cat.tolist()) | set(d_cat.tolist())):
            per_class[c][vid] = metric.eval_sequence(_video_class_data(L, frames, g_cat == c, d_cat == c))
    return _combine(metric, per_class, gt.cat_ids)


_UNDEFINED = OrderedDict([("HOTA", -1.0), ("DetA", -1.0), ("AssA", -1.0)])


def _frame_similarities(num_t, g_segs, d_segs):
    """Per frame t < ``num_t``: (gt indices (G_t,), dt indices (D_t,), mask IoU (G_t, D_t)) of the tracks whose
    segmentation at t is present (``g_segs`` / ``d_segs``: per-track lists of RLEs or None, any length)."""
    frames = []
    for t in range(num_t):
        gi = [j for j, s in enumerate(g_segs) if t < len(s) and s[t] is not None]
        di = [j for j, s in enumerate(d_segs) if t < len(s) and s[t] is not None]
        if gi and di:
            sim = np.asarray(mask_util.iou([g_segs[j][t] for j in gi], [d_segs[j][t] for j in di],
                                           [0] * len(di)), dtype=float).reshape(len(gi), len(di))
        else:
            sim = np.zeros((len(gi), len(di)))
        frames.append((np.array(gi, dtype=int), np.array(di, dtype=int), sim))
    return frames


def _video_class_data(num_t, frames, g_in, d_in):
    """TrackEval data dict of one (class, video): the tracks of the class (``g_in`` (G,) / ``d_in`` (D,) bool
    masks over the video's gt / dt tracks) in each of the ``frames`` (see :func:`_frame_similarities`)."""
    gt_ids, tr_ids, sims = [], [], []
    for gi, di, sim in frames:
        gm = g_in[gi] if len(gi) else np.zeros(0, bool)
        dm = d_in[di] if len(di) else np.zeros(0, bool)
        gt_ids.append(gi[gm])
        tr_ids.append(di[dm])
        sims.append(sim[gm][:, dm])
    return _seq_data(num_t, gt_ids, tr_ids, sims)


def _combine(metric, per_class, cat_ids):
    """HOTA, DetA, AssA: ``per_class`` {category: {video: eval_sequence result}} combined over sequences, then
    averaged over every category of ``cat_ids`` (a category without sequences counts as one empty sequence)."""
    empty = None
    cls_res = {}
    for c in cat_ids:
        seqs = per_class.get(c)
        if not seqs:  # sequences without dets add nothing to the sums; one empty result stands for them all
            if empty is None:
                empty = metric.eval_sequence(_seq_data(1, [np.zeros(0, int)], [np.zeros(0, int)], [np.zeros((0, 0))]))
            seqs = {"empty": empty}
        cls_res[c] = metric.combine_sequences(seqs)
    if not cls_res:
        return _UNDEFINED.copy()
    comb = metric.combine_classes_class_averaged(cls_res)
    return OrderedDict((k, float(np.mean(comb[k]))) for k in ("HOTA", "DetA", "AssA"))
