"""YouTube-VIS video mask AP / AR, numerically identical to the official YouTube-VIS API (``ytvoseval``).

The official rules (see ``docs/YTVIS_FORMAT.md``) and how they are reproduced here:

* video IoU(dt, gt) = sum_t |dt_t & gt_t| / sum_t |dt_t | gt_t| over ``zip(dt_segs, gt_segs)`` (so the shorter list
  wins); a null (or empty) frame only adds the other mask's area to the union; union 0 -> IoU 0. Computed per
  (video, frame) with one ``pycocotools.mask.iou`` call over every (dt, gt) present in that frame; the integer
  intersection is recovered exactly as ``rint(iou * (a_d + a_g) / (1 + iou))`` and the union from per-track
  cumulative areas, so the final IoU is the same float division of the same integers as the official one.
* ``avg_area`` = mean of the truthy per-frame areas (GT: the ``areas`` field, dt: mask areas), 0 if none.
* COCO greedy matching per (video, category) with dts sorted by score (stable mergesort) and cut to 100 before
  anything else, gts with ``iscrowd`` ignored (and re-matchable), ties on IoU go to the later gt, a match on a
  non-ignored gt stops the search before ignored gts; a dt "matched" to a gt whose id is 0 counts as unmatched
  (the official code stores the gt id as the match flag).
* Accumulation over videos in sorted id order, then a global stable sort by score (so ties keep video order,
  then results order); COCO precision envelope, 101 recall points; categories or area ranges without
  non-ignored GT are -1 and excluded from the means.

Inputs the official API silently mishandles are rejected with :class:`YTVISEvalError` (a ``ValueError``) unless
``lenient=True`` reproduces the official behaviour (segmentation lists of the wrong length are truncated by zip).
"""
import logging
import math
import os
from collections import OrderedDict, defaultdict

import numpy as np
from pycocotools import mask as mask_util

from ..utils.json_io import parse_json_bytes

__all__ = [
    "YTVISEvalError",
    "YTVISGroundTruth",
    "YTVISResults",
    "load_ytvis_gt",
    "load_ytvis_results",
    "evaluate_ytvis",
    "METRIC_NAMES",
]

logger = logging.getLogger(__name__)

METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10")

# Same expressions as the official Params (linspace, not arange: exact threshold values matter).
IOU_THRS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
REC_THRS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
MAX_DETS = (1, 10, 100)
AREA_RNG = ((0 ** 2, 1e5 ** 2), (0 ** 2, 128 ** 2), (128 ** 2, 256 ** 2), (256 ** 2, 1e5 ** 2))
AREA_LBL = ("all", "small", "medium", "large")


class YTVISEvalError(ValueError):
    """A ground-truth or results file that cannot be evaluated; the message says what to fix."""


# ----------------------------------------------------------------------------------------------------- loading
def _read_json(obj, what):
    """``obj`` parsed when it is a path (``what``: "ground truth" or "results", for the messages), else as is."""
    if isinstance(obj, (str, os.PathLike)):
        path = os.fspath(obj)
        if not os.path.isfile(path):
            raise YTVISEvalError(f"{what} file not found: {path}")
        with open(path, "rb") as f:
            return parse_json_bytes(f.read(), f"{what} file {path}", YTVISEvalError)
    return obj


class YTVISGroundTruth:
    """Validated YouTube-VIS ground truth, in the official API's order.

    Attributes:
        videos: {video_id: {"height", "width", "length"}}; ``video_ids`` sorted; ``cat_ids`` sorted unique.
        has_annotations: False for test/valid splits (no ``annotations`` key, or ``null``).
        anns: list of dicts (file order) with ``id``, ``video_id``, ``category_id``, ``iscrowd``,
            ``segmentations`` (compressed RLE dicts or None) and ``avg_area``.
    """

    def __init__(self, dataset, source="ground truth"):
        if not isinstance(dataset, dict):
            raise YTVISEvalError(f"{source}: expected a JSON object with 'videos' and 'categories'")
        for key in ("videos", "categories"):
            if not isinstance(dataset.get(key), list):
                raise YTVISEvalError(f"{source}: missing or invalid '{key}' list")
        self.videos = {}
        for i, v in enumerate(dataset["videos"]):
            try:
                vid, h, w = v["id"], int(v["height"]), int(v["width"])
                length = int(v["length"]) if v.get("length") is not None else len(v["file_names"])
            except (KeyError, TypeError, ValueError):
                raise YTVISEvalError(
                    f"{source}: videos[{i}] needs 'id', 'height', 'width' and 'length' (or 'file_names')"
                ) from None
            self.videos[vid] = {"height": h, "width": w, "length": length}
        self.video_ids = sorted(self.videos)
        try:
            self.cat_ids = sorted({c["id"] for c in dataset["categories"]})
            self.cat_names = {c["id"]: c.get("name", str(c["id"])) for c in dataset["categories"]}
        except (KeyError, TypeError):
            raise YTVISEvalError(f"{source}: every category needs an 'id'") from None
        raw = dataset.get("annotations")
        self.has_annotations = raw is not None
        self.anns = self._load_annotations(raw or [], source)

    def _load_annotations(self, raw, source):
        """The annotation dicts (see the class docstring) of the list ``raw``, validated against ``self.videos``;
        a missing ``areas`` field (warned once) is replaced by the mask areas."""
        anns, seen, warned_areas = [], set(), False
        for i, a in enumerate(raw):
            try:
                vid, aid, cat, segs = a["video_id"], a["id"], a["category_id"], a["segmentations"]
            except (KeyError, TypeError):
                raise YTVISEvalError(
                    f"{source}: annotations[{i}] needs 'id', 'video_id', 'category_id' and 'segmentations'"
                ) from None
            if vid not in self.videos:
                raise YTVISEvalError(f"{source}: annotations[{i}] has unknown video_id {vid!r}")
            if aid in seen:
                raise YTVISEvalError(f"{source}: duplicate annotation id {aid!r} (annotations[{i}])")
            seen.add(aid)
            info = self.videos[vid]
            rles = [_gt_rle(s, info["height"], info["width"], f"{source}: annotations[{i}]") for s in segs]
            areas = a.get("areas")
            if areas is None:
                if not warned_areas:
                    logger.warning("%s: annotations without 'areas'; using mask areas for the area ranges", source)
                    warned_areas = True
                areas = [None if r is None else int(mask_util.area(r)) for r in rles]
            truthy = [x for x in areas if x]
            anns.append({
                "id": aid, "video_id": vid, "category_id": cat, "iscrowd": int(a.get("iscrowd", 0) or 0),
                "segmentations": rles, "avg_area": float(np.array(truthy).mean()) if truthy else 0,
            })
        return anns


def _gt_rle(seg, h, w, where):
    """The official ``annToRLE``: polygons are merged, uncompressed RLE compressed, falsy entries are None."""
    if not seg:
        return None
    try:
        if isinstance(seg, list):
            return mask_util.merge(mask_util.frPyObjects(seg, h, w))
        if isinstance(seg.get("counts"), list):
            return mask_util.frPyObjects(seg, h, w)
        return seg
    except Exception as e:  # pycocotools raises bare Exceptions on malformed input
        raise YTVISEvalError(f"{where}: unreadable segmentation ({e})") from None


def load_ytvis_gt(gt):
    """Ground truth from a path or an already loaded dict (or a :class:`YTVISGroundTruth`, returned as is)."""
    if isinstance(gt, YTVISGroundTruth):
        return gt
    source = os.fspath(gt) if isinstance(gt, (str, os.PathLike)) else "ground truth"
    return YTVISGroundTruth(_read_json(gt, "ground truth"), source=source)


class YTVISResults:
    """Validated results: parallel lists in results order (entries of categories absent from the GT dropped)."""

    def __init__(self, video_id, category_id, score, segmentations, avg_area):
        self.video_id = video_id
        self.category_id = category_id
        self.score = score
        self.segmentations = segmentations
        self.avg_area = avg_area

    def __len__(self):
        return len(self.score)


def load_ytvis_results(results, gt, lenient=False):
    """Validate YouTube-VIS results (a list of entries or a path to one) against the ground truth.

    Errors (:class:`YTVISEvalError`, naming the entry index): not a list, an entry without ``video_id`` /
    ``category_id`` / ``segmentations`` / ``score``, an unknown ``video_id``, a non-RLE segmentation, an RLE
    ``size`` different from the video's ``[height, width]``, and (unless ``lenient``) a ``segmentations`` list
    whose length differs from the video's length. With ``lenient=True`` such lists are used as the official
    API does: the IoU sums over ``zip(dt, gt)`` frames and the average area over all listed frames.
    """
    gt = load_ytvis_gt(gt)
    res = _read_json(results, "results")
    if not isinstance(res, list):
        raise YTVISEvalError(f"results must be a JSON list of entries, got {type(res).__name__}")
    cats = set(gt.cat_ids)
    vids, cids, scores, segs_all, avg_areas = [], [], [], [], []
    dropped = 0
    for i, r in enumerate(res):
        _check_result_entry(i, r, gt, lenient)
        info = gt.videos[r["video_id"]]
        size = [info["height"], info["width"]]
        rles = [_result_rle(f"results[{i}].segmentations[{t}]", s, r["video_id"], size)
                for t, s in enumerate(r["segmentations"])]
        if r["category_id"] not in cats:
            dropped += 1
            continue
        vids.append(r["video_id"])
        cids.append(r["category_id"])
        scores.append(float(r["score"]))
        segs_all.append(rles)
        avg_areas.append(_result_avg_area(f"results[{i}]", rles, size))
    if dropped:
        logger.warning("%d result(s) with a category_id not in the ground truth were ignored", dropped)
    if not res:
        logger.warning("results list is empty: every metric is 0 (-1 for categories without ground truth)")
    return YTVISResults(vids, cids, scores, segs_all, avg_areas)


def _check_result_entry(i, r, gt, lenient):
    """Validate the keys, ``video_id``, ``score`` and ``segmentations`` list of results entry ``i``."""
    if not isinstance(r, dict):
        raise YTVISEvalError(f"results[{i}] is not an object")
    missing = [k for k in ("video_id", "category_id", "segmentations", "score") if k not in r]
    if missing:
        raise YTVISEvalError(f"results[{i}] is missing key(s) {', '.join(missing)}")
    vid = r["video_id"]
    if isinstance(vid, (list, dict)) or vid not in gt.videos:
        raise YTVISEvalError(f"results[{i}]: video_id {vid!r} is not in the ground truth")
    score = r["score"]
    if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
        raise YTVISEvalError(f"results[{i}]: score must be a finite number, got {score!r}")
    segs = r["segmentations"]
    if not isinstance(segs, list):
        raise YTVISEvalError(f"results[{i}]: segmentations must be a list (one RLE or null per frame)")
    length = gt.videos[vid]["length"]
    if len(segs) != length and not lenient:
        raise YTVISEvalError(
            f"results[{i}]: video {vid!r} has {length} frames but segmentations has {len(segs)} "
            "entries (the official API would silently truncate; pass lenient=True / --lenient to accept)"
        )


def _result_rle(where, s, vid, size):
    """One frame's result segmentation ``s`` as a compressed RLE dict (None when falsy); ``size`` [h, w] of the
    video ``vid``."""
    if not s:
        return None
    if not isinstance(s, dict) or "counts" not in s or "size" not in s:
        raise YTVISEvalError(f"{where} must be an RLE dict with 'size' and 'counts'")
    if list(s["size"]) != size:
        raise YTVISEvalError(
            f"{where}: RLE size {list(s['size'])} != video {vid!r} size {size} "
            "([height, width]); resize masks to the original video size before encoding"
        )
    if isinstance(s["counts"], list):
        try:
            return mask_util.frPyObjects(s, size[0], size[1])
        except Exception as e:
            raise YTVISEvalError(f"{where}: unreadable RLE ({e})") from None
    if not isinstance(s["counts"], (str, bytes)):
        raise YTVISEvalError(f"{where}: RLE counts must be a string")
    return s


def _result_avg_area(where, rles, size):
    """Mean of the non-zero mask areas of one result's RLEs (None entries skipped), 0 if none."""
    present = [s for s in rles if s is not None]
    try:
        areas = mask_util.area(present) if present else np.zeros(0)
    except Exception as e:
        raise YTVISEvalError(f"{where}: unreadable RLE ({e})") from None
    if len(areas) and int(np.max(areas)) > size[0] * size[1]:
        raise YTVISEvalError(f"{where}: an RLE covers more pixels than the frame; corrupt counts?")
    truthy = areas[areas > 0]
    return float(truthy.mean()) if len(truthy) else 0


# ----------------------------------------------------------------------------------------------------- video IoU
def _areas(segs):
    """Per-frame areas (0 for None) of one track, int64 (len(segs),)."""
    out = np.zeros(len(segs), dtype=np.int64)
    idx = [t for t, s in enumerate(segs) if s is not None]
    if idx:
        out[idx] = mask_util.area([segs[t] for t in idx])
    return out


def _pad_areas(areas, length):
    """Per-track per-frame areas -> (N, length) int64, zeros beyond each track's own length."""
    out = np.zeros((len(areas), length), dtype=np.int64)
    for i, a in enumerate(areas):
        out[i, : len(a)] = a
    return out


def video_iou_matrix(dt_segs, gt_segs, dt_areas=None, gt_areas=None):
    """Official video IoU for every (dt, gt) pair of one video: (D, G) float64.

    ``dt_segs`` / ``gt_segs``: lists of per-frame lists of compressed RLE dicts or None (any lengths; pairs use
    the first min(len) frames, like the official zip). ``dt_areas`` / ``gt_areas``: their per-frame areas
    (:func:`_areas`), computed when not given.

    The IoU of a pair sums, over the zipped frames, the intersections (pycocotools' per-frame IoU of the frames
    where both masks are non-empty, turned back into exact integer intersections) and the unions (area sums minus
    intersections).
    """
    D, G = len(dt_segs), len(gt_segs)
    if D == 0 or G == 0:
        return np.zeros((D, G))
    if dt_areas is None:
        dt_areas = [_areas(s) for s in dt_segs]
    if gt_areas is None:
        gt_areas = [_areas(s) for s in gt_segs]
    T = max(max(len(s) for s in dt_segs), max(len(s) for s in gt_segs))
    da, ga = _pad_areas(dt_areas, T), _pad_areas(gt_areas, T)  # (D, T), (G, T)
    dpos, gpos = da > 0, ga > 0
    inter = np.zeros((D, G), dtype=np.int64)
    for t in np.flatnonzero(dpos.any(0) & gpos.any(0)):  # frames where some dt and some gt are non-empty
        di, gi = np.flatnonzero(dpos[:, t]), np.flatnonzero(gpos[:, t])
        iou = np.asarray(mask_util.iou([dt_segs[i][t] for i in di], [gt_segs[j][t] for j in gi], [0] * len(gi)))
        ad, ag = da[di, t].astype(np.float64), ga[gi, t].astype(np.float64)
        # iou = I / (a_d + a_g - I)  =>  I = iou * (a_d + a_g) / (1 + iou); integers, so rint is exact.
        inter[np.ix_(di, gi)] += np.rint(iou * (ad[:, None] + ag[None, :]) / (1.0 + iou)).astype(np.int64)
    m = np.minimum(np.array([len(s) for s in dt_segs])[:, None], np.array([len(s) for s in gt_segs])[None, :])
    dcum = np.concatenate([np.zeros((D, 1), np.int64), np.cumsum(da, 1)], 1)  # area of the first t frames
    gcum = np.concatenate([np.zeros((G, 1), np.int64), np.cumsum(ga, 1)], 1)
    union = dcum[np.arange(D)[:, None], m] + gcum[np.arange(G)[None, :], m] - inter  # zip length per pair
    out = np.zeros((D, G))
    pos = union > 0
    out[pos] = inter[pos].astype(np.float64) / union[pos].astype(np.float64)
    return out


# ----------------------------------------------------------------------------------------------------- matching
def _match(ious, gt_ig, crowd, gt_ids, thrs):
    """COCO greedy matching of one (video, category, gt-ignore pattern), dts already score-sorted.

    Returns (dtm (T, D) matched gt id or 0, dt_ig_from_match (T, D) bool).
    """
    D, G = ious.shape
    T = len(thrs)
    dtm = np.zeros((T, D))
    dtig = np.zeros((T, D), dtype=bool)
    if D == 0 or G == 0:
        return dtm, dtig
    order = sorted(range(G), key=lambda g: gt_ig[g])  # stable: non-ignored first (official mergesort)
    rows = ious.tolist()
    lo = thrs[0]
    gtm = [[False] * G for _ in range(T)]
    for d in range(D):
        row = rows[d]
        cands = [g for g in order if row[g] >= lo]
        if not cands:
            continue
        for ti in range(T):
            best = thrs[ti]
            m = -1
            taken = gtm[ti]
            for g in cands:
                if taken[g] and not crowd[g]:
                    continue
                if m > -1 and not gt_ig[m] and gt_ig[g]:
                    break
                v = row[g]
                if v < best:
                    continue
                best = v
                m = g
            if m == -1:
                continue
            dtig[ti, d] = bool(gt_ig[m])
            dtm[ti, d] = gt_ids[m]
            taken[m] = True
    return dtm, dtig


# ----------------------------------------------------------------------------------------------------- evaluate
# Per (category k, area range a) accumulator: lists over videos (sorted id order) of per-(video, category) arrays
# ("score" (D,), "rank" (D,) position in the video's score order, "tp" / "ig" (T, D) bool), the number of
# non-ignored GT ("npig") and of (video, category) pairs seen ("n").
def _new_accumulator():
    return {"score": [], "rank": [], "tp": [], "ig": [], "npig": 0, "n": 0}


def evaluate_ytvis(gt, results, lenient=False, return_details=False):
    """Official YouTube-VIS AP/AR of ``results`` against ``gt``.

    Steps: per video, :func:`_evaluate_video` matches the kept detections to the GT for every category and area
    range (accumulated per (category, area range)); :func:`_accumulate` turns the accumulators into the precision /
    recall arrays; :func:`_summarize` averages them into the metrics.

    Args:
        gt: path, dict or :class:`YTVISGroundTruth` (must have annotations).
        results: path, list of result entries, or :class:`YTVISResults`.
        lenient: accept segmentation lists of the wrong length like the official API (zip truncation).
        return_details: also return {"precision" (T,R,K,A,M), "recall" (T,K,A,M)}.
    Returns:
        OrderedDict AP, AP50, AP75, APs, APm, APl, AR1, AR10 as fractions; -1 where undefined (no GT).
    """
    gt = load_ytvis_gt(gt)
    if not gt.has_annotations:
        raise YTVISEvalError("the ground truth has no annotations (a test/valid split?); nothing to evaluate")
    if not isinstance(results, YTVISResults):
        results = load_ytvis_results(results, gt, lenient=lenient)
    cat_index = {c: k for k, c in enumerate(gt.cat_ids)}
    acc = [[_new_accumulator() for _ in AREA_RNG] for _ in gt.cat_ids]
    gts_by_vid = defaultdict(list)
    for a in gt.anns:
        if a["category_id"] in cat_index:
            gts_by_vid[a["video_id"]].append(a)
    dts_by_vid = defaultdict(lambda: defaultdict(list))  # {video id: {category id: result indices}}
    for i in range(len(results)):
        dts_by_vid[results.video_id[i]][results.category_id[i]].append(i)
    for vid in gt.video_ids:
        _evaluate_video(gts_by_vid.get(vid, []), dts_by_vid.get(vid, {}), results, cat_index, acc)
    precision, recall = _accumulate(acc)
    stats = _summarize(precision, recall)
    if return_details:
        return stats, {"precision": precision, "recall": recall}
    return stats


def _keep_top_dts(idx, results):
    """The detections ``idx`` (result indices of one (video, category)) sorted by score (stable) and cut to the
    last of ``MAX_DETS``, before anything else (official computeIoU)."""
    sc = np.array([results.score[i] for i in idx])
    order = np.argsort(-sc, kind="mergesort")[: MAX_DETS[-1]] if len(idx) else []
    return [idx[o] for o in order]


def _evaluate_video(vgts, vdts, results, cat_index, acc):
    """Match one video's detections to its GT for each category present (GT or detections) and area range.

    Args:
        vgts: the video's G GT annotations (dicts of :class:`YTVISGroundTruth`), any category of the GT.
        vdts: {category id: result indices} of the video's detections.
        results: :class:`YTVISResults`; cat_index: {category id: k}.
        acc: K x A accumulators (see ``_new_accumulator``), appended to for every category present.
    """
    cats = sorted({a["category_id"] for a in vgts} | set(vdts), key=cat_index.get)
    kept = {c: _keep_top_dts(vdts.get(c, []), results) for c in cats}
    all_dt = [i for c in cats for i in kept[c]]
    ious_all = video_iou_matrix([results.segmentations[i] for i in all_dt], [g["segmentations"] for g in vgts])
    dpos = {i: p for p, i in enumerate(all_dt)}
    for c in cats:
        gsel = [j for j, g in enumerate(vgts) if g["category_id"] == c]
        dsel = [dpos[i] for i in kept[c]]
        ious = ious_all[np.ix_(dsel, gsel)] if (dsel and gsel) else np.zeros((len(dsel), len(gsel)))
        _evaluate_category(ious, [vgts[j] for j in gsel], kept[c], results, acc[cat_index[c]])


def _evaluate_category(ious, gts, dts, results, acc_k):
    """Greedy matching of one (video, category) for every area range, appended to ``acc_k`` (A accumulators).

    ``ious`` (D, G): video IoU of the D kept detections ``dts`` (result indices, score order) and the G GT
    annotations ``gts``. A detection is ignored when matched to an ignored GT, or unmatched and out of the range.
    """
    thrs = [min(t, 1 - 1e-10) for t in IOU_THRS]
    crowd = [g["iscrowd"] for g in gts]
    gt_ids = [g["id"] for g in gts]
    g_area = np.array([g["avg_area"] for g in gts], dtype=np.float64)
    d_area = np.array([results.avg_area[i] for i in dts], dtype=np.float64)
    d_score = np.array([results.score[i] for i in dts], dtype=np.float64)
    cache = {}
    for a, (lo, hi) in enumerate(AREA_RNG):
        gt_ig = tuple(int(bool(cr) or ar < lo or ar > hi) for cr, ar in zip(crowd, g_area))
        if gt_ig not in cache:
            cache[gt_ig] = _match(ious, gt_ig, crowd, gt_ids, thrs)
        dtm, dtig = cache[gt_ig]
        out_of_rng = (d_area < lo) | (d_area > hi)
        e = acc_k[a]
        e["score"].append(d_score)
        e["rank"].append(np.arange(len(d_score)))
        e["tp"].append(dtm != 0)
        e["ig"].append(dtig | ((dtm == 0) & out_of_rng[None, :]))
        e["npig"] += gt_ig.count(0)
        e["n"] += 1


def _accumulate(acc):
    """COCO accumulation: ``acc`` K x A accumulators -> precision (T, R, K, A, M) and recall (T, K, A, M), -1
    where a (category, area range) has no non-ignored GT."""
    T, R, K, A, M = len(IOU_THRS), len(REC_THRS), len(acc), len(AREA_RNG), len(MAX_DETS)
    precision = -np.ones((T, R, K, A, M))
    recall = -np.ones((T, K, A, M))
    for k in range(K):
        for a in range(A):
            e = acc[k][a]
            if e["n"] == 0 or e["npig"] == 0:
                continue
            score = np.concatenate(e["score"])
            rank = np.concatenate(e["rank"])
            tp_all = np.concatenate(e["tp"], axis=1) if score.size else np.zeros((T, 0), bool)
            ig_all = np.concatenate(e["ig"], axis=1) if score.size else np.zeros((T, 0), bool)
            for m, md in enumerate(MAX_DETS):
                sel = rank < md
                inds = np.argsort(-score[sel], kind="mergesort")  # global stable sort: ties keep video order
                precision[:, :, k, a, m], recall[:, k, a, m] = _precision_recall(
                    tp_all[:, sel][:, inds], ig_all[:, sel][:, inds], e["npig"]
                )
    return precision, recall


def _precision_recall(dtm, dtig, npig):
    """Precision (T, R) at the ``REC_THRS`` recall points (COCO envelope) and final recall (T,) of detections in
    global score order: ``dtm`` (T, D) matched, ``dtig`` (T, D) ignored; ``npig`` non-ignored GT."""
    T, R = len(IOU_THRS), len(REC_THRS)
    tps = np.logical_and(dtm, np.logical_not(dtig))
    fps = np.logical_and(np.logical_not(dtm), np.logical_not(dtig))
    tp_sum = np.cumsum(tps, axis=1).astype(dtype=np.float64)
    fp_sum = np.cumsum(fps, axis=1).astype(dtype=np.float64)
    nd = tp_sum.shape[1]
    if nd == 0:
        return np.zeros((T, R)), np.zeros(T)
    rc = tp_sum / npig
    pr = tp_sum / (fp_sum + tp_sum + np.spacing(1))
    pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]  # precision envelope
    q = np.zeros((T, R))
    for t in range(T):
        ri = np.searchsorted(rc[t], REC_THRS, side="left")
        ok = ri < nd
        q[t, ok] = pr[t, ri[ok]]
    return q, rc[:, -1]


def _summarize(precision, recall):
    """The ``METRIC_NAMES`` (OrderedDict): means of the defined (> -1) entries of ``precision`` (T, R, K, A, M)
    and ``recall`` (T, K, A, M) over the official selections; -1 where none is defined."""

    def summ(ap, iou_thr=None, area="all", max_dets=100):
        aind = [i for i, lbl in enumerate(AREA_LBL) if lbl == area]
        mind = [i for i, md in enumerate(MAX_DETS) if md == max_dets]
        s = precision if ap else recall
        if iou_thr is not None:
            s = s[np.where(iou_thr == IOU_THRS)[0]]
        s = s[:, :, :, aind, mind] if ap else s[:, :, aind, mind]
        return float(np.mean(s[s > -1])) if s[s > -1].size else -1.0

    return OrderedDict(
        [
            ("AP", summ(1)),
            ("AP50", summ(1, iou_thr=0.5)),
            ("AP75", summ(1, iou_thr=0.75)),
            ("APs", summ(1, area="small")),
            ("APm", summ(1, area="medium")),
            ("APl", summ(1, area="large")),
            ("AR1", summ(0, max_dets=1)),
            ("AR10", summ(0, max_dets=10)),
        ]
    )
