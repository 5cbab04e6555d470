"""Shared parts of the converters into YouTube-VIS JSON: the error type, RLE validation, frame listing and the
:class:`YTVISBuilder` that collects per-frame masks of tracks and writes the YouTube-VIS train-format JSON.

Output format (``docs/YTVIS_FORMAT.md``)::

    {"info": {...}, "licenses": [],
     "videos": [{"id", "width", "height", "length", "file_names": [path relative to the image root]}],
     "categories": [{"id", "name", "supercategory"}],
     "annotations": [{"id", "video_id", "category_id", "iscrowd": 0, "height", "width", "length",
                      "segmentations": [compressed RLE or null] * length, "bboxes": [[x, y, w, h] or null] * length,
                      "areas": [int or null] * length, "track_id": source track id}]}

Annotation ids are 1..N in (video, source track id) order (the evaluator treats id 0 as "no match", and source ids
repeat across videos); the source's own id of each track is kept in ``"track_id"``.
"""
import json
import logging
import os
import re

import pycocotools.mask as mask_util

from ...utils.errors import UserError
from ...utils.io import atomic_write
from ...utils.rle import rle_runs
from ...utils.rle import encode_mask, to_rle

__all__ = ["ConversionError", "YTVISBuilder", "rle_from_mask", "check_rle_string", "list_frames", "natural_key",
           "image_size", "write_ytvis_json", "IMAGE_EXTENSIONS"]

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class ConversionError(UserError, ValueError):
    """A malformed source; the message is one line naming the file, the line / frame and what is wrong (a user
    error: one line, exit code 2)."""


def natural_key(s):
    """Sort key putting ``2.jpg`` before ``10.jpg``."""
    return [int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", str(s))]


def list_frames(folder):
    """Image files of ``folder`` (names only), naturally sorted; raises :class:`ConversionError` when the folder
    is missing or has no image."""
    if not os.path.isdir(folder):
        raise ConversionError(f"{folder}: frame folder does not exist")
    names = sorted((f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTENSIONS)
                    and os.path.isfile(os.path.join(folder, f))), key=natural_key)
    if not names:
        raise ConversionError(f"{folder}: no image frames ({'/'.join(IMAGE_EXTENSIONS)}) in this folder")
    return names


def image_size(path):
    """(height, width) from the image header (no decoding); :class:`ConversionError` naming the file if
    unreadable."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            w, h = im.size
    except FileNotFoundError:
        raise ConversionError(f"{path}: frame file does not exist") from None
    except Exception as e:  # PIL.UnidentifiedImageError, OSError on truncated headers
        raise ConversionError(f"{path}: cannot read the image ({e})") from None
    return h, w


def check_rle_string(counts, h, w, where):
    """Check that a compressed COCO RLE string decodes to exactly ``h * w`` pixels (pycocotools does not check and
    would write past its buffer on malformed counts). Raises :class:`ConversionError` with ``where``."""
    if isinstance(counts, bytes):
        try:
            counts = counts.decode("ascii")
        except UnicodeDecodeError:
            raise ConversionError(f"{where}: RLE counts are not ASCII") from None
    if not isinstance(counts, str):
        raise ConversionError(f"{where}: RLE counts must be a string, got {type(counts).__name__}")
    try:
        runs = rle_runs(counts)
    except ValueError as e:
        raise ConversionError(f"{where}: corrupt RLE counts string ({e})") from None
    total = int(runs.sum())
    if total != h * w:
        raise ConversionError(f"{where}: RLE covers {total} pixels but the mask size {h}x{w} has {h * w}; "
                              f"wrong height/width or corrupt counts")
    return counts


def rle_from_mask(mask):
    """Compressed RLE dict (``counts`` str) of an (H, W) bool / 0-1 mask."""
    return encode_mask(mask)


def _rle_bytes(rle):
    return to_rle(rle, *rle["size"])


class YTVISBuilder:
    """Collects videos and per-frame track masks, then builds the YouTube-VIS JSON dict.

    Usage::

        b = YTVISBuilder(categories=[(1, "car"), (2, "pedestrian")])
        v = b.add_video(["seq/000000.png", ...], height, width)
        b.add_mask(v, track_id, t, category_id, rle, where="file.txt:12")   # compressed RLE dict at (H, W)
        data = b.to_json()
    """

    def __init__(self, categories, description="converted by stmask_d2.data.convert"):
        self.categories = [(int(i), str(n)) for i, n in categories]
        ids = [i for i, _ in self.categories]
        if len(set(ids)) != len(ids):
            raise ValueError(f"duplicate category ids {ids}")
        self._cat_ids = set(ids)
        self.description = description
        self.videos = []  # {"file_names", "height", "width"}
        self.tracks = []  # per video: {track_id: {"category_id", "where", "segs": {t: rle}}}

    def add_video(self, file_names, height, width):
        """Add a video of ``len(file_names)`` frames (paths relative to the image root); returns its index."""
        self.videos.append({"file_names": [f.replace(os.sep, "/") for f in file_names], "height": int(height),
                            "width": int(width)})
        self.tracks.append({})
        return len(self.videos) - 1

    def add_mask(self, video, track_id, t, category_id, rle, where):
        """Add the mask of ``track_id`` in frame ``t`` of ``video``. ``rle``: compressed RLE dict at the video size.

        Raises :class:`ConversionError` (naming ``where``) for an unknown category, a track changing category, a
        second mask of a track in one frame, a frame index out of range or a mask of the wrong size.
        """
        v = self.videos[video]
        if category_id not in self._cat_ids:
            raise ConversionError(f"{where}: unknown category id {category_id}; known: {sorted(self._cat_ids)}")
        if not 0 <= t < len(v["file_names"]):
            raise ConversionError(f"{where}: frame {t} is outside the video's {len(v['file_names'])} frames")
        if list(rle["size"]) != [v["height"], v["width"]]:
            raise ConversionError(f"{where}: mask size {list(rle['size'])} differs from the frame size "
                                  f"[{v['height']}, {v['width']}] (height, width)")
        tr = self.tracks[video].setdefault(track_id, {"category_id": category_id, "where": where, "segs": {}})
        if tr["category_id"] != category_id:
            raise ConversionError(f"{where}: track {track_id} has category {category_id} here but "
                                  f"{tr['category_id']} at {tr['where']}; a track keeps one category")
        if t in tr["segs"]:
            raise ConversionError(f"{where}: track {track_id} has a second mask in frame {t}")
        tr["segs"][t] = {"size": [v["height"], v["width"]],
                         "counts": rle["counts"].decode("ascii") if isinstance(rle["counts"], bytes)
                         else rle["counts"]}

    def to_json(self):
        """The YouTube-VIS dict. Empty masks count as absent (null); tracks without any mask are dropped."""
        videos, anns = [], []
        ann_id = 0
        empty_tracks = 0
        for vi, (v, tracks) in enumerate(zip(self.videos, self.tracks)):
            T, h, w = len(v["file_names"]), v["height"], v["width"]
            videos.append({"id": vi + 1, "width": w, "height": h, "length": T, "file_names": v["file_names"]})
            for tid in sorted(tracks, key=lambda k: (isinstance(k, str), k)):
                tr = tracks[tid]
                segs, boxes, areas = [None] * T, [None] * T, [None] * T
                ts = sorted(tr["segs"])
                rles = [_rle_bytes(tr["segs"][t]) for t in ts]
                if rles:
                    a = mask_util.area(rles)
                    b = mask_util.toBbox(rles)
                    for k, t in enumerate(ts):
                        if a[k] > 0:
                            segs[t], areas[t] = tr["segs"][t], int(a[k])
                            boxes[t] = [float(x) for x in b[k]]
                if not any(areas):
                    empty_tracks += 1
                    continue
                ann_id += 1
                anns.append({"id": ann_id, "video_id": vi + 1, "category_id": tr["category_id"], "iscrowd": 0,
                             "height": h, "width": w, "length": T, "segmentations": segs, "bboxes": boxes,
                             "areas": areas, "track_id": tid})
        if empty_tracks:
            logger.warning(f"{empty_tracks} track(s) without any non-empty mask were dropped")
        cats = [{"id": i, "name": n, "supercategory": "object"} for i, n in sorted(self.categories)]
        return {"info": {"description": self.description}, "licenses": [], "videos": videos,
                "categories": cats, "annotations": anns}


def write_ytvis_json(data, path):
    """Write ``data`` to ``path`` atomically (temporary file + rename); an unwritable ``path`` is a
    :class:`ConversionError` (one line)."""
    try:
        atomic_write(path, lambda f: json.dump(data, f), mode="w")
    except OSError as e:
        raise ConversionError(f"--output {path!r} cannot be written ({e.strerror or e})") from e
