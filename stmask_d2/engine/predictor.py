"""Streaming video predictor (the video counterpart of Detectron2's ``DefaultPredictor``, used by the demo):
builds STMask, loads its weights and tracks a video frame by frame.

    predictor = VideoPredictor(cfg)
    results = predictor.results_builder(video_id=1)
    for frame, instances in predictor(frames, height, width):   # frames: iterable of HxWx3 uint8 RGB
        results.add(instances)                                   # RLE per track, frames are not kept
    ytvis_entries = results.entries()                            # YouTube-VIS results list for the video

Memory stays flat with video length: one frame is in flight at a time and the results keep compact RLEs only
(aggregated by :class:`stmask_d2.tracking.VideoResults` and written by the evaluator's
:func:`~stmask_d2.evaluation.evaluator.instances_to_ytvis_results`, the same code the evaluation path uses).
"""
import logging
import os

import numpy as np
import torch
from detectron2.data import MetadataCatalog
from detectron2.modeling import build_model

from ..utils.categories import contiguous_to_dataset_id, dataset_category_id, dataset_to_contiguous_id
from ..utils.json_io import read_json
from .. import register_all
from ..evaluation.evaluator import instances_to_ytvis_results
from ..layers import encode_masks_rle
from ..tracking import VideoResults
from ..utils.errors import ConfigError
from .checkpoint import AtomicDetectionCheckpointer

register_all()  # the model parts and the builtin dataset splits

__all__ = ["VideoPredictor", "YTVISResultsBuilder", "video_metadata"]

logger = logging.getLogger(__name__)


def video_metadata(cfg):
    """Metadata of the first test dataset (class names, dataset ids), or an empty one.

    Datasets registered with ``--register-ytvis`` get their classes from the JSON on first load; here only the
    JSON's ``categories`` are read (no annotations are parsed into dataset dicts) when the metadata lacks them.
    """
    name = cfg.DATASETS.TEST[0] if len(cfg.DATASETS.TEST) else "__unused_stmask_demo"
    meta = MetadataCatalog.get(name)
    if not hasattr(meta, "thing_classes"):
        json_file = getattr(meta, "json_file", None)
        if json_file and os.path.isfile(json_file):
            try:
                cats = sorted(read_json(json_file, "YouTube-VIS annotation").get("categories") or [],
                              key=lambda c: c["id"])
                id_map = dataset_to_contiguous_id(cats)
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
                logger.warning(f"Could not read the categories of {json_file} ({e}); labels show class indices.")
                cats = []
            if cats:
                meta.set(thing_classes=[c["name"] for c in cats], thing_dataset_id_to_contiguous_id=id_map)
    classes = getattr(meta, "thing_classes", None)
    if classes is not None and len(classes) != cfg.MODEL.STMASK.NUM_CLASSES:
        logger.warning(
            f"Dataset {name!r} has {len(classes)} classes but MODEL.STMASK.NUM_CLASSES={cfg.MODEL.STMASK.NUM_CLASSES};"
            f" labels may be wrong (pass the matching DATASETS.TEST or --register-ytvis)."
        )
    return meta


class YTVISResultsBuilder:
    """Incremental YouTube-VIS results of one video: ``add(instances)`` per frame (in order), then ``entries()``.

    Each frame's masks are RLE-encoded at once and only the RLEs are kept. ``category_id`` is the dataset id
    (``metadata.thing_dataset_id_to_contiguous_id`` inverted) when the metadata has the mapping, else
    contiguous + 1 (the YouTube-VIS convention of ids starting at 1). The entries are written by the evaluator's
    :func:`~stmask_d2.evaluation.evaluator.instances_to_ytvis_results`.
    """

    def __init__(self, video_id=1, metadata=None, score_thresh=0.0, max_tracks=0, order="score"):
        self.video_id = video_id
        self.score_thresh = float(score_thresh)
        self.max_tracks = max_tracks
        self.order = order
        self._to_dataset_id = contiguous_to_dataset_id(metadata)
        self._acc = VideoResults()
        self.length = 0

    def add(self, instances):
        """Add the next frame's tracked instances (fields track_ids, scores, pred_classes, pred_masks)."""
        t = self.length
        self.length += 1
        if len(instances) and self.score_thresh > 0:
            instances = instances[instances.scores >= self.score_thresh]
        if len(instances) == 0:
            return
        rles = encode_masks_rle(instances.pred_masks)
        self._acc.add_frame(t, instances.track_ids, instances.scores, instances.pred_classes, rles)

    def dataset_category(self, contiguous_id):
        """The dataset category id of a contiguous class index (``utils.categories.dataset_category_id``)."""
        return dataset_category_id(contiguous_id, self._to_dataset_id)

    def tracks(self, max_tracks=None):
        """Video-level tracks with their ids so far: ``VideoResults.finalize`` entries (``track_id``, ``score``,
        contiguous ``category_id``, ``segmentations``), best first; all of them unless ``max_tracks``."""
        return self._acc.finalize(self.length, max_tracks)

    def entries(self):
        """YouTube-VIS results list: ``[{"video_id", "score", "category_id", "segmentations"}, ...]`` with one RLE
        or None per frame (``len(segmentations) == number of frames added``)."""
        tracks = self._acc.finalize(self.length, self.max_tracks, self.order)
        id_map = {int(tr["category_id"]): self.dataset_category(tr["category_id"]) for tr in tracks}
        output = {"video_id": self.video_id, "length": self.length, "tracks": tracks}
        return instances_to_ytvis_results(output, id_map, keep_order=True)  # already cut and ordered


class VideoPredictor:
    """Build STMask from ``cfg``, load ``cfg.MODEL.WEIGHTS`` (random init when empty), eval mode.

    ``__call__(frames, height, width)`` streams ``(frame, Instances)`` pairs: ``frames`` is an iterable of HxWx3
    uint8 **RGB** arrays (converted to ``cfg.INPUT.FORMAT`` for the model), each yielded back with its
    tracked instances (``track_ids``, ``pred_boxes``, ``scores``, ``pred_classes``, ``pred_masks`` at
    (height, width), on CPU). ``pred_masks`` is a :class:`stmask_d2.layers.LazyMasks` (pasted one instance at a
    time when encoded or drawn, so memory does not grow with frame size x number of tracks); set
    ``lazy_masks = False`` for (N, height, width) bool tensors.

    Raises ``MissingWeightsError`` / ``CheckpointError`` (user errors, one line) for a missing / corrupt weights
    file, ``ExportError`` for an unusable ``exported`` file and ``ConfigError`` for an INPUT.FORMAT other than
    RGB / BGR.
    """

    def __init__(self, cfg, exported=None):
        """``exported``: a file of tools/export_model.py; its graphs then replace the model's network (the model,
        built from ``cfg``, keeps only pre- / post-processing and tracking; MODEL.WEIGHTS is not loaded)."""
        self.cfg = cfg.clone()
        self.model = build_model(self.cfg)
        self.model.eval()
        if exported:
            from ..export import ExportedNetwork, attach_exported

            attach_exported(self.model, ExportedNetwork(exported))
            logger.info(f"Running the exported frame network {exported} ({self.model.exported.kind}).")
        elif self.cfg.MODEL.WEIGHTS:
            AtomicDetectionCheckpointer(self.model).load(self.cfg.MODEL.WEIGHTS)
        else:
            logger.warning("MODEL.WEIGHTS is empty: the model has random weights (its output is meaningless).")
        self.metadata = video_metadata(self.cfg)
        self.input_format = self.cfg.INPUT.FORMAT
        self.lazy_masks = True
        if self.input_format not in ("RGB", "BGR"):
            raise ConfigError(f"INPUT.FORMAT must be RGB or BGR for the video predictor, got {self.input_format}.")

    def results_builder(self, video_id=1, score_thresh=0.0):
        return YTVISResultsBuilder(video_id, self.metadata, score_thresh,
                                   max_tracks=self.cfg.MODEL.STMASK.TEST.MAX_TRACKS_PER_VIDEO,
                                   order=self.cfg.MODEL.STMASK.TEST.RESULTS_ORDER)

    def __call__(self, frames, height, width):
        current = [None]

        def model_frames():
            for frame in frames:
                current[0] = frame
                yield np.ascontiguousarray(frame[:, :, ::-1]) if self.input_format == "BGR" else frame

        # track_frames consumes exactly one frame per yielded result, so current[0] is that result's frame
        for instances in self.model.track_frames(model_frames(), height, width, lazy_masks=self.lazy_masks):
            frame, current[0] = current[0], None
            yield frame, instances.to(torch.device("cpu"))
