"""COCO / YouTube-VIS segmentations with pycocotools: one place that turns a polygon list, an uncompressed RLE
(list counts) or a compressed RLE (str or bytes counts) into a pycocotools RLE, decodes it, and makes it JSON-ready.
Validation with dataset-specific messages stays with the readers (data/ytvis.py, evaluation, converters)."""
import numpy as np
import pycocotools.mask as mask_util

__all__ = ["to_rle", "decode_rle", "rle_bbox", "rle_to_json", "encode_mask"]


def to_rle(seg, h, w):
    """pycocotools RLE (``counts`` bytes) of a segmentation at (h, w), the official ``annToRLE``: polygons are
    merged into one mask, an uncompressed RLE is compressed, a compressed RLE is kept (str counts as bytes);
    None for a falsy segmentation. pycocotools' own exceptions pass through (the callers word them)."""
    if not seg:
        return None
    if isinstance(seg, list):
        return mask_util.merge(mask_util.frPyObjects(seg, h, w))
    counts = seg["counts"]
    if isinstance(counts, list):
        return mask_util.frPyObjects(seg, h, w)
    return {"size": list(seg["size"]), "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


def decode_rle(seg, h, w):
    """(h, w) bool mask of a segmentation (any form :func:`to_rle` takes; all False for a falsy one)."""
    rle = to_rle(seg, h, w)
    if rle is None:
        return np.zeros((h, w), bool)
    return mask_util.decode(rle).astype(bool)


def rle_bbox(seg, h, w):
    """[x, y, width, height] (floats) of a segmentation's mask (pycocotools ``toBbox``)."""
    return [float(v) for v in mask_util.toBbox(to_rle(seg, h, w))]


def rle_to_json(rle):
    """``{"size": [h, w], "counts": str}`` of a pycocotools RLE (bytes or str counts); None for a falsy one."""
    if not rle:
        return None
    counts = rle["counts"]
    return {"size": [int(rle["size"][0]), int(rle["size"][1])],
            "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}


def encode_mask(mask):
    """JSON-ready compressed RLE (``counts`` str) of an (H, W) bool / 0-1 mask."""
    return rle_to_json(mask_util.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8))))
