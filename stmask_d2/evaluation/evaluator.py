"""Detectron2 ``DatasetEvaluator`` for video instance segmentation in the YouTube-VIS format.

Collects the per-video track outputs of the model (docs/ARCHITECTURE.md, "Model outputs"), writes
``results.json`` and a server-ready ``results.zip`` (``results.json`` at the zip root), and, when the registered
JSON has annotations, reports the official YouTube-VIS AP/AR (and optionally HOTA / DetA / AssA).
"""
import copy
import itertools
import json
import logging
import os
import zipfile
from collections import OrderedDict

from detectron2.data import MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm
from detectron2.utils.logger import create_small_table

from ..utils.categories import contiguous_to_dataset_id, dataset_category_id
from ..utils.io import atomic_write, remove_stale_temporaries
from ..utils.json_io import read_json
from ..utils.rle import rle_to_json
from .ytvis_eval import evaluate_ytvis, load_ytvis_gt, load_ytvis_results

__all__ = ["YTVISEvaluator", "instances_to_ytvis_results"]

logger = logging.getLogger(__name__)


def instances_to_ytvis_results(output, contiguous_to_dataset_id, length=None, video_id=None, max_tracks=0,
                               keep_order=False):
    """One video's model output -> list of YouTube-VIS result entries (dataset category ids, str RLE counts).

    Keeps the ``max_tracks`` highest-scoring tracks; ``max_tracks`` <= 0 or None (default, released): every track
    (the official metric applies its maxDets of 100 per video *and* category itself). Sorted by score unless
    ``keep_order`` (then in the model's order). Segmentation lists are padded with None / cut to ``length`` when
    given, with a warning.
    """
    video_id = output.get("video_id", video_id) if video_id is None else video_id
    length = output.get("length", length) if length is None else length
    tracks = list(output.get("tracks", []))
    by_score = sorted(tracks, key=lambda t: -float(t["score"]))
    if max_tracks is not None and max_tracks > 0:
        by_score = by_score[:max_tracks]
    if keep_order:
        kept = {id(t) for t in by_score}
        tracks = [t for t in tracks if id(t) in kept]
    else:
        tracks = by_score
    out = []
    for tr in tracks:
        category_id = dataset_category_id(tr["category_id"], contiguous_to_dataset_id)
        segs = [rle_to_json(s) for s in tr["segmentations"]]
        if length is not None and len(segs) != length:
            logger.warning("video %s: a track has %d segmentations for %d frames; padding/cutting to the length",
                           video_id, len(segs), length)
            segs = (segs + [None] * length)[:length]
        out.append({"video_id": video_id, "category_id": category_id,
                    "score": float(tr["score"]), "segmentations": segs})
    return out


class YTVISEvaluator(DatasetEvaluator):
    """Evaluate video instance segmentation with the official YouTube-VIS metric.

    ``process(inputs, outputs)``: ``inputs`` are test-mapper dicts (``video_id``, ``length``), ``outputs`` the
    per-video dicts ``{"video_id", "length", "tracks": [{"score", "category_id" (contiguous),
    "segmentations": [RLE | None] * length}]}`` (a list aligned with ``inputs``, or one dict).
    ``evaluate()``: gathers to the main process, writes ``output_dir/results.json`` and ``results.zip``
    atomically, returns ``{"segm": {AP, AP50, AP75, APs, APm, APl, AR1, AR10[, HOTA, DetA, AssA]}}`` (x100, NaN
    where undefined) if the dataset has annotations, else ``{}``.
    """

    def __init__(self, dataset_name, output_dir=None, distributed=True, hota=False, max_tracks_per_video=0,
                 keep_order=False):
        self._dataset_name = dataset_name
        self._output_dir = output_dir
        self._distributed = distributed
        self._hota = hota
        self._max_tracks = max_tracks_per_video
        self._keep_order = keep_order  # True: tracks in the model's order (MODEL.STMASK.TEST.RESULTS_ORDER)
        self._metadata = MetadataCatalog.get(dataset_name)
        self._json_file = getattr(self._metadata, "json_file", None)
        self._id_map = None
        self._predictions = []

    def reset(self):
        self._predictions = []

    def _contiguous_to_dataset_id(self):
        if self._id_map is None:
            cats = None
            if getattr(self._metadata, "thing_dataset_id_to_contiguous_id", None) is None:
                assert self._json_file, f"dataset {self._dataset_name!r} has neither a category map nor json_file"
                cats = read_json(self._json_file, "YouTube-VIS annotation").get("categories") or []
            self._id_map = contiguous_to_dataset_id(self._metadata, cats)
        return self._id_map

    def process(self, inputs, outputs):
        if isinstance(outputs, dict):
            outputs = [outputs]
        id_map = self._contiguous_to_dataset_id()
        for inp, out in zip(inputs, outputs):
            vid = inp.get("video_id", out.get("video_id"))
            self._predictions.append(
                (vid, instances_to_ytvis_results(out, id_map, length=inp.get("length", out.get("length")),
                                                 video_id=vid, max_tracks=self._max_tracks,
                                                 keep_order=self._keep_order))
            )

    def evaluate(self):
        """Gather, write the results files, and score them when the dataset has annotations (see the class)."""
        predictions = self._gather()
        if predictions is None:  # not the main process
            return {}
        results, n_videos = _unique_videos(predictions)
        if not predictions:
            logger.warning("[YTVISEvaluator] did not receive any prediction")
        zip_path = self._write(results, n_videos) if self._output_dir else None
        gt = self._load_annotated_gt()
        if gt is None:
            if zip_path:
                logger.info("No annotations for %s: submit %s to the evaluation server", self._dataset_name, zip_path)
            else:
                logger.info("No annotations for %s and no output_dir: nothing evaluated", self._dataset_name)
            return {}
        return OrderedDict({"segm": self._score(gt, results)})

    def _load_annotated_gt(self):
        """The dataset's ground truth (:class:`YTVISGroundTruth`), or None when its JSON is missing or has no
        annotations (the parsed JSON dict is freed before the evaluation)."""
        if not (self._json_file and os.path.isfile(self._json_file)):
            return None
        with open(self._json_file) as f:
            gt_dict = json.load(f)
        if gt_dict.get("annotations") is None:
            return None
        return load_ytvis_gt(gt_dict)

    def _gather(self):
        """This process's (video id, result entries) pairs, or every process's on the main process when
        distributed (None on the others)."""
        if not self._distributed:
            return self._predictions
        comm.synchronize()
        parts = comm.gather(self._predictions, dst=0)
        if not comm.is_main_process():
            return None
        return list(itertools.chain(*parts))

    def _write(self, results, n_videos):
        """Write ``output_dir/results.json`` and ``results.zip`` (``results.json`` at its root) atomically; returns
        the zip path."""
        os.makedirs(self._output_dir, exist_ok=True)
        remove_stale_temporaries(self._output_dir)  # left by a killed evaluation
        json_path = os.path.join(self._output_dir, "results.json")
        atomic_write(json_path, lambda f: json.dump(results, f), mode="w")
        zip_path = os.path.join(self._output_dir, "results.zip")

        def _zip(f):
            with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED) as z:
                z.write(json_path, arcname="results.json")

        atomic_write(zip_path, _zip, mode="wb")
        logger.info("Wrote %d tracks of %d videos to %s", len(results), n_videos, json_path)
        return zip_path

    def _score(self, gt, results):
        """AP/AR (and HOTA when asked) of ``results`` against the annotated ``gt``, x100 (NaN where undefined),
        logged as a table."""
        res = load_ytvis_results(copy.copy(results), gt)
        stats = evaluate_ytvis(gt, res)
        if self._hota:
            from .hota import compute_hota

            stats.update(compute_hota(gt, res))
        segm = OrderedDict((k, float(v * 100) if v >= 0 else float("nan")) for k, v in stats.items())
        logger.info("YouTube-VIS evaluation results for %s:\n%s", self._dataset_name, create_small_table(segm))
        return segm


def _unique_videos(predictions):
    """The result entries of ``predictions`` ((video id, entries) pairs) with each video counted once (a video seen
    twice, e.g. by a padded sampler, keeps its first entries), and the number of videos."""
    seen, results = set(), []
    for vid, entries in predictions:
        if vid in seen:
            continue
        seen.add(vid)
        results.extend(entries)
    return results, len(seen)
