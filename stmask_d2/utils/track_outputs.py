"""Output options of the demo (and any tracker loop): display flags, a class filter, disjoint masks and indexed
mask PNGs.

    opts = OutputOptions(boxes=False, alpha=0.7, classes=["person"], output_masks="masks/")
    keep_ids = opts.class_ids(metadata)                    # contiguous ids; InputError names unknown classes
    vis = opts.visualizer(metadata)                        # a TrackVisualizer with the display flags
    inst = opts.select(instances, keep_ids)                # class filter (+ disjoint masks with output_masks)

:class:`IndexedMaskWriter` writes one indexed PNG per frame (pixel value = track id + 1, 0 = background; 8-bit
palette PNG coloured like the video when every value fits in 255, else 16-bit grey) into a temporary folder beside
the target, plus ``tracks.json`` (track id -> value, class, category id, score, frames), and moves them in on
``commit()``: a failure leaves nothing half-written. :func:`read_mask_png` reads a frame back.
"""
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch
from detectron2.utils.visualizer import ColorMode

from .errors import InputError
from .visualizer import TrackVisualizer, track_color

__all__ = ["OutputOptions", "exclusive_masks", "IndexedMaskWriter", "read_mask_png", "TRACKS_JSON"]

TRACKS_JSON = "tracks.json"


@dataclass
class OutputOptions:
    """Display and output options.

    Attributes:
        boxes: draw boxes. labels: draw "[id] class score" labels. alpha: mask opacity in [0, 1].
        bw_background: grey background outside the masks.
        classes: class names to keep (None: all); applied to every output (video, JSON, PNGs).
        output_masks: folder for the indexed mask PNGs (None: none). When set, overlapping masks are made
            disjoint (each pixel goes to the highest-scoring track) in every output, so that the PNGs and the JSON
            hold the same masks.
    """

    boxes: bool = True
    labels: bool = True
    alpha: float = 0.5
    bw_background: bool = False
    classes: Optional[Sequence[str]] = None
    output_masks: Optional[str] = None

    def __post_init__(self):
        if not 0.0 <= float(self.alpha) <= 1.0:
            raise InputError(f"--alpha must be in [0, 1], got {self.alpha}")

    def visualizer(self, metadata):
        return TrackVisualizer(metadata, ColorMode.IMAGE_BW if self.bw_background else ColorMode.IMAGE,
                               alpha=self.alpha, draw_boxes=self.boxes, draw_labels=self.labels)

    def class_ids(self, metadata):
        """Contiguous ids of ``classes`` in ``metadata.thing_classes`` (None when no filter). A name matches
        case-insensitively; an unknown one raises ``InputError`` listing the known classes."""
        if not self.classes:
            return None
        names = list(getattr(metadata, "thing_classes", None) or [])
        if not names:
            raise InputError("--classes needs class names, but the model's dataset has none; pass DATASETS.TEST "
                             "or --register-ytvis with the training JSON")
        lower = [n.lower() for n in names]
        ids = []
        for c in self.classes:
            if c.lower() not in lower:
                raise InputError(f"--classes: unknown class {c!r}; known: {', '.join(names)}")
            ids.append(lower.index(c.lower()))
        return sorted(set(ids))

    def select(self, instances, class_ids):
        """Instances of the kept classes (all when ``class_ids`` is None); disjoint masks with ``output_masks``."""
        if class_ids is not None and len(instances):
            keep = torch.zeros(len(instances), dtype=torch.bool)
            for c in class_ids:
                keep |= instances.pred_classes.cpu() == c
            instances = instances[keep]
        if self.output_masks and len(instances):
            instances = exclusive_masks(instances)
        return instances


def exclusive_masks(instances):
    """A copy of ``instances`` whose ``pred_masks`` (N, H, W) do not overlap: a pixel covered by several masks goes
    to the highest-scoring one (ties: the first). Lazily pasted masks (:class:`~stmask_d2.layers.LazyMasks`) are
    materialised here: disjoint masks (``--output-masks``) hold all of a frame's masks at full size."""
    masks = instances.pred_masks
    if len(instances) < 2:
        return instances
    if not isinstance(masks, torch.Tensor):
        masks = masks.tensor()
    order = torch.argsort(instances.scores, descending=True, stable=True)
    taken = torch.zeros_like(masks[0], dtype=torch.bool)
    out = torch.zeros_like(masks, dtype=torch.bool)
    for k in order.tolist():
        m = masks[k].bool() & ~taken
        out[k] = m
        taken |= m
    res = instances[torch.arange(len(instances))]  # a copy with the same fields
    res.pred_masks = out
    return res


def _palette():
    pal = np.zeros((256, 3), np.uint8)
    for v in range(1, 256):
        pal[v] = np.round(track_color(v - 1) * 255).astype(np.uint8)
    return pal.reshape(-1).tolist()


_PALETTE = None


def write_mask_png(path, index_map):
    """Write an (H, W) integer map as an 8-bit palette PNG (values <= 255) or a 16-bit grey PNG."""
    from PIL import Image

    global _PALETTE
    vmax = int(index_map.max()) if index_map.size else 0
    if vmax > 65535:
        raise ValueError(f"track id {vmax - 1} does not fit in a 16-bit PNG")
    if vmax <= 255:
        if _PALETTE is None:
            _PALETTE = _palette()
        im = Image.fromarray(index_map.astype(np.uint8), mode="P")
        im.putpalette(_PALETTE)
    else:
        im = Image.fromarray(index_map.astype(np.uint16))
    im.save(path, format="PNG")


def read_mask_png(path):
    """(H, W) int64 map of a mask PNG written by :class:`IndexedMaskWriter` (value = track id + 1, 0 background)."""
    from PIL import Image

    with Image.open(path) as im:
        return np.array(im).astype(np.int64)


class IndexedMaskWriter:
    """One indexed PNG per frame in ``path`` + ``tracks.json``; written to a temporary folder, moved in by
    :meth:`commit`. ``names``: per-frame output names (their extension becomes .png), default ``%05d.png``.

    Raises ``InputError`` (one line) when ``path`` exists and is not a folder or its parent is missing / read-only.
    """

    def __init__(self, path, names=None):
        self.path, self.names = path, names
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise InputError(f"--output-masks {path!r}: folder {parent!r} does not exist")
        if os.path.exists(path) and not os.path.isdir(path):
            raise InputError(f"--output-masks {path!r} exists and is not a folder")
        try:
            self.tmp = tempfile.mkdtemp(prefix="." + os.path.basename(os.path.normpath(path)) + ".", dir=parent)
        except OSError as e:
            raise InputError(f"--output-masks {path!r} is not writable ({e.strerror or e})") from e
        self.written = []

    def frame_name(self, t):
        if self.names is not None:
            return os.path.splitext(self.names[t])[0] + ".png"
        return f"{t:05d}.png"

    def write(self, t, instances):
        """Write frame ``t`` from tracked instances with disjoint ``pred_masks`` (N, H, W) and ``track_ids``;
        ``instances.image_size`` gives the size of an empty frame."""
        h, w = instances.image_size
        index = np.zeros((h, w), np.int64)
        if len(instances):
            masks = instances.pred_masks
            masks = (masks if isinstance(masks, torch.Tensor) else masks.tensor()).cpu().numpy().astype(bool)
            if (masks.sum(0) > 1).any():
                raise ValueError("IndexedMaskWriter needs disjoint masks (use exclusive_masks)")
            for m, tid in zip(masks, instances.track_ids.tolist()):
                index[m] = int(tid) + 1
        name = self.frame_name(t)
        write_mask_png(os.path.join(self.tmp, name), index)
        self.written.append(name)

    def commit(self, tracks, class_names=None, to_dataset_id=None):
        """Write ``tracks.json`` and move everything into ``path``.

        Args:
            tracks: ``VideoResults.finalize`` entries (``track_id``, ``score``, ``category_id`` contiguous,
                ``segmentations``).
            class_names: contiguous id -> name list. to_dataset_id: callable contiguous -> dataset category id.
        """
        meta = {
            "frames": list(self.written),
            "value": "pixel value = track id + 1; 0 = background",
            "tracks": {
                str(tr["track_id"]): {
                    "value": int(tr["track_id"]) + 1,
                    "class": (class_names[tr["category_id"]] if class_names is not None
                              and 0 <= tr["category_id"] < len(class_names) else str(tr["category_id"])),
                    "category_id": int(to_dataset_id(tr["category_id"]) if to_dataset_id else tr["category_id"] + 1),
                    "score": float(tr["score"]),
                    "num_frames": sum(s is not None for s in tr["segmentations"]),
                }
                for tr in tracks
            },
        }
        with open(os.path.join(self.tmp, TRACKS_JSON), "w") as f:
            json.dump(meta, f, indent=1)
        os.makedirs(self.path, exist_ok=True)
        for name in self.written + [TRACKS_JSON]:
            os.replace(os.path.join(self.tmp, name), os.path.join(self.path, name))
        shutil.rmtree(self.tmp, ignore_errors=True)

    def abort(self):
        shutil.rmtree(self.tmp, ignore_errors=True)
