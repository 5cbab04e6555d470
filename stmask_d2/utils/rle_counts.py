"""Decoding pycocotools' compressed RLE counts strings with numpy, with the checks pycocotools does not make.

numpy only (no pycocotools call), shared by the YouTube-VIS loader and the dataset converters.
"""
import numpy as np

__all__ = ["rle_runs", "rle_total"]


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
