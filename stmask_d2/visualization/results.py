"""Predictions beside the ground truth, per video: contact sheets of (GT | predictions) frame pairs, each
predicted track's video IoU against its best ground-truth track and the per-video AP, computed with the
evaluator's own code (:func:`~stmask_d2.evaluation.ytvis_eval.video_iou_matrix`,
:func:`~stmask_d2.evaluation.evaluate_ytvis` on the video alone)."""
import copy
import json
import logging
import os

import numpy as np
import pycocotools.mask as mask_util
import torch
import tqdm
from detectron2.data import MetadataCatalog
from detectron2.structures import Boxes, Instances

from ..evaluation.ytvis_eval import YTVISResults, evaluate_ytvis, load_ytvis_gt, load_ytvis_results, video_iou_matrix
from ..utils.errors import InputError
from ..utils.io import atomic_write
from ..utils.rle import to_rle
from ..utils.video import ImageListSource
from ..utils.visualizer import TrackVisualizer
from .contact_sheet import make_contact_sheet, sample_frames, write_image
from .data import _check_dataset, gt_instances, make_output_dir, vis_color, video_name

__all__ = ["per_video_report", "visualize_results", "REPORT_JSON"]

logger = logging.getLogger(__name__)

REPORT_JSON = "per_video.json"
MATCH_IOU = 0.5  # a prediction whose best GT has at least this video IoU takes that GT's colour


def _video_subset(gt, results, vid):
    sub = copy.copy(gt)
    sub.videos = {vid: gt.videos[vid]}
    sub.video_ids = [vid]
    sub.anns = [a for a in gt.anns if a["video_id"] == vid]
    idx = [i for i, v in enumerate(results.video_id) if v == vid]
    res = YTVISResults([results.video_id[i] for i in idx], [results.category_id[i] for i in idx],
                       [results.score[i] for i in idx], [results.segmentations[i] for i in idx],
                       [results.avg_area[i] for i in idx])
    return sub, res, idx


def per_video_report(gt, results):
    """Per-video AP and per-track best-GT video IoU.

    Args:
        gt: YouTube-VIS ground truth (path, dict or ``YTVISGroundTruth``) with annotations.
        results: results (path, list or ``YTVISResults``).
    Returns:
        (overall metrics dict, {video_id: {"AP", "AP50", "AP75" (fractions, -1 without GT), "tracks": [{"result_index",
        "rank", "score", "category_id", "best_gt_id", "best_gt_category_id", "iou", "same_class"}] (by score)}})
    """
    gt = load_ytvis_gt(gt)
    if not isinstance(results, YTVISResults):
        results = load_ytvis_results(results, gt)
    overall = evaluate_ytvis(gt, results)
    report = {}
    for vid in gt.video_ids:
        sub, res, idx = _video_subset(gt, results, vid)
        stats = evaluate_ytvis(sub, res) if sub.anns else {"AP": -1.0, "AP50": -1.0, "AP75": -1.0}
        order = sorted(range(len(idx)), key=lambda k: -res.score[k])
        ious = video_iou_matrix([res.segmentations[k] for k in order], [a["segmentations"] for a in sub.anns])
        tracks = []
        for rank, k in enumerate(order):
            j = int(np.argmax(ious[rank])) if sub.anns else -1
            best = sub.anns[j] if j >= 0 else None
            tracks.append({
                "result_index": idx[k], "rank": rank + 1, "score": res.score[k], "category_id": res.category_id[k],
                "best_gt_id": best["id"] if best else None,
                "best_gt_category_id": best["category_id"] if best else None,
                "iou": float(ious[rank, j]) if best else 0.0,
                "same_class": bool(best and best["category_id"] == res.category_id[k]),
            })
        report[vid] = {"AP": stats["AP"], "AP50": stats["AP50"], "AP75": stats["AP75"], "tracks": tracks}
    return overall, report


def _pred_instances(entries, segs_by_entry, t, h, w):
    """Instances of the drawn predictions in frame t (``entries``: report tracks with a ``color_id``)."""
    present = [(e, segs_by_entry[e["result_index"]][t]) for e in entries]
    present = [(e, s) for e, s in present if s is not None]
    inst = Instances((h, w))
    n = len(present)
    masks = np.zeros((n, h, w), bool)
    boxes = np.zeros((n, 4), np.float32)
    for k, (e, s) in enumerate(present):
        rle = to_rle(s, h, w)
        masks[k] = mask_util.decode(rle).astype(bool)
        x, y, bw, bh = mask_util.toBbox(rle)
        boxes[k] = [x, y, x + bw, y + bh]
    inst.track_ids = torch.tensor([e["color_id"] for e, _ in present], dtype=torch.int64)
    inst.pred_classes = torch.zeros(n, dtype=torch.int64)
    inst.scores = torch.tensor([e["score"] for e, _ in present], dtype=torch.float32)
    inst.pred_boxes = Boxes(torch.from_numpy(boxes))
    inst.pred_masks = torch.from_numpy(masks)
    return inst, [e["label"] for e, _ in present]


def _fmt(x):
    return "n/a" if x < 0 else f"{x * 100:.1f}"


def visualize_results(results_file, dataset_name, output_dir, num_videos=None, score_thresh=0.1, max_tracks=10,
                      max_frames=8, columns=2, tile_width=300, alpha=0.5):
    """Draw ``results_file`` (YouTube-VIS results) beside the ground truth of ``dataset_name``.

    Writes ``<output_dir>/<video>.png`` per video (pairs of GT | prediction tiles for up to ``max_frames`` frames;
    title with the per-video AP / AP50 / AP75; a legend with each drawn predicted track's score, best GT and video
    IoU) and ``<output_dir>/per_video.json`` (overall metrics and every predicted track's best-GT IoU). Predictions
    with score >= ``score_thresh`` are drawn, at most ``max_tracks`` per video; a prediction whose best GT has video
    IoU >= 0.5 is drawn in that GT's colour. Returns the list of written files.

    Raises ``InputError`` (a user error, one line) for an unknown dataset, a dataset that is not a YouTube-VIS JSON with
    annotations, or unusable results (``YTVISEvalError``).
    """
    videos = _check_dataset(dataset_name)
    meta = MetadataCatalog.get(dataset_name)
    json_file = getattr(meta, "json_file", None)
    if not json_file:
        raise InputError(f"--dataset {dataset_name!r} has no json_file in its metadata (register it with "
                         f"--register-ytvis)")
    gt = load_ytvis_gt(json_file)
    results = load_ytvis_results(results_file, gt)
    overall, report = per_video_report(gt, results)
    names = gt.cat_names
    classes = list(getattr(meta, "thing_classes", None) or [])
    gt_vis = TrackVisualizer(meta, alpha=alpha)
    pred_vis = TrackVisualizer(None, alpha=alpha)
    by_id = {v["video_id"]: v for v in videos}
    vids = [vid for vid in gt.video_ids if vid in by_id]
    if num_videos is not None and num_videos > 0:
        vids = vids[:num_videos]
    make_output_dir(output_dir)
    written = []
    for vid in tqdm.tqdm(vids, desc="drawing results", unit="video"):
        video, rep = by_id[vid], report[vid]
        h, w, T = video["height"], video["width"], video["length"]
        drawn = [e for e in rep["tracks"] if e["score"] >= score_thresh][:max_tracks]
        for e in drawn:
            matched = e["best_gt_id"] is not None and e["iou"] >= MATCH_IOU
            e["color_id"] = e["best_gt_id"] if matched else 1_000_003 + e["rank"]
            e["label"] = f"#{e['rank']} {names.get(e['category_id'], e['category_id'])} {e['score'] * 100:.0f}% " \
                         f"IoU {e['iou']:.2f}"
        src = ImageListSource(video["file_names"], "RGB")
        idx = sample_frames(T, max_frames)
        tiles = []
        for t in idx:
            frame = src[t]
            left = gt_vis.draw_frame(frame, gt_instances(video["annotations"][t], h, w))
            inst, labels = _pred_instances(drawn, results.segmentations, t, h, w)
            right = pred_vis.draw_frame(frame, inst, labels=labels)
            sep = np.full((h, max(2, w // 80), 3), 255, np.uint8)
            tiles.append(np.concatenate([left, sep, right], axis=1))
        title = [f"{dataset_name} | video {vid} '{video_name(video)}' | {T} frames | left: ground truth, "
                 f"right: predictions",
                 f"video AP {_fmt(rep['AP'])}  AP50 {_fmt(rep['AP50'])}  AP75 {_fmt(rep['AP75'])} | "
                 f"{len(rep['tracks'])} predicted tracks, {len(drawn)} drawn (score >= {score_thresh:g})"]
        footer = []
        for e in drawn:
            gt_name = names.get(e["best_gt_category_id"], e["best_gt_category_id"])
            best = f"best GT [{e['best_gt_id']}] {gt_name}" if e["best_gt_id"] is not None else "no GT"
            footer.append((f"#{e['rank']} {names.get(e['category_id'], e['category_id'])} score {e['score']:.2f}: "
                           f"{best}, video IoU {e['iou']:.3f}{'' if e['same_class'] else ' (other class)'}",
                           tuple(int(x) for x in vis_color(e["color_id"]))))
        hit = {e["best_gt_id"] for e in rep["tracks"] if e["iou"] >= MATCH_IOU}
        for a in video_gt_tracks(video):
            if a[0] not in hit:
                cname = classes[a[1]] if 0 <= a[1] < len(classes) else a[1]
                footer.append((f"GT [{a[0]}] {cname}: no prediction with video IoU >= {MATCH_IOU}",
                               tuple(int(x) for x in vis_color(a[0]))))
        sheet = make_contact_sheet(tiles, [f"frame {t}" for t in idx], title, columns, tile_width * 2, footer)
        path = os.path.join(output_dir, f"{video_name(video)}.png")
        write_image(path, sheet)
        written.append(path)
        for e in drawn:
            e.pop("label", None)
            e.pop("color_id", None)
    out = {"results": os.path.abspath(results_file), "dataset": dataset_name, "overall": dict(overall),
           "videos": [{"video_id": vid, "name": video_name(by_id[vid]) if vid in by_id else None, **report[vid]}
                      for vid in gt.video_ids]}
    rpath = os.path.join(output_dir, REPORT_JSON)
    atomic_write(rpath, lambda f: json.dump(out, f, indent=1), mode="w")
    written.append(rpath)
    return written


def video_gt_tracks(video):
    """[(track id, contiguous class)] of a dataset-dict video, in id order."""
    seen = {}
    for anns in video["annotations"]:
        for a in anns:
            seen.setdefault(a["id"], a["category_id"])
    return sorted(seen.items())
