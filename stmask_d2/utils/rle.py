"""COCO / YouTube-VIS segmentations with pycocotools: one place that turns a polygon list, an uncompressed RLE
(list counts) or a compressed RLE (str or bytes counts) into a pycocotools RLE, decodes it, and makes it JSON-ready.
Validation with dataset-specific messages stays with the readers (data/ytvis.py, evaluation, converters).
:func:`rle_runs` / :func:`rle_total` decode compressed counts strings with numpy, with the checks pycocotools does not
make (the loader and the converters use them to refuse corrupt strings)."""
import numpy as np
import pycocotools.mask as mask_util

__all__ = ["to_rle", "decode_rle", "rle_bbox", "rle_to_json", "encode_mask", "rle_runs", "rle_total"]


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


def rle_runs(counts):
    """The run lengths, int64 (n,), of a pycocotools compressed RLE ``counts`` (str or bytes), decoded with numpy
    like ``rleFrString`` (6-bit groups from "0", continuation bit 0x20, sign bit 0x10, runs from the fourth on
    delta-coded against the run two before).

    Raises:
        ValueError: "invalid character 'x'", "truncated", "a run of more than 60 bits" or "a negative run length"
            (pycocotools does not check and reads garbage instead).
    """
    if isinstance(counts, str):
        bad = next((ch for ch in counts if not "0" <= ch <= "o"), None)
        counts = counts.encode("ascii", "replace")
    else:
        bad = next((chr(b) for b in counts if not 48 <= b < 112), None)
    if bad is not None:
        raise ValueError(f"invalid character {bad!r}")
    c = np.frombuffer(counts, dtype=np.uint8).astype(np.int64) - 48
    if c.size == 0:
        return np.zeros(0, dtype=np.int64)
    ends = np.flatnonzero((c & 0x20) == 0)
    if ends.size == 0 or ends[-1] != c.size - 1:
        raise ValueError("truncated")
    starts = np.concatenate([[0], ends[:-1] + 1])
    group = np.repeat(np.arange(ends.size), ends - starts + 1)
    k = np.arange(c.size) - starts[group]
    if k.max() > 11:
        raise ValueError("a run of more than 60 bits")
    vals = np.zeros(ends.size, dtype=np.int64)
    np.add.at(vals, group, (c & 0x1F) << (5 * k))
    neg = (c[ends] & 0x10) != 0
    vals[neg] -= np.left_shift(1, 5 * (k[ends][neg] + 1))
    runs = vals.copy()
    if runs.size > 3:  # delta coding: x[m] += x[m - 2] for m > 2
        runs[3::2] = np.cumsum(vals[3::2]) + vals[1]
        runs[4::2] = np.cumsum(vals[4::2]) + vals[2]
    if (runs < 0).any():
        raise ValueError("a negative run length")
    return runs


def rle_total(counts):
    """Sum of the runs of an RLE: ``counts`` a list of ints (uncompressed) or a pycocotools compressed string
    (decoded by :func:`rle_runs`). A consistent RLE of an h x w mask sums to h * w; returns -1 when a run is
    negative or the string is corrupt."""
    if isinstance(counts, list):
        return -1 if any(c < 0 for c in counts) else int(sum(counts))
    try:
        return int(rle_runs(counts).sum())
    except ValueError:
        return -1
