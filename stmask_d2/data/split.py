"""Split a YouTube-VIS format train JSON by video into ``train_sub.json`` and ``valid_sub.json`` (library code of
``datasets/prepare_ytvis_split.py``).

The held-out part keeps its annotations, so it can be evaluated locally (the official valid sets have none).
``info``, ``licenses`` and ``categories`` are copied; frame paths are untouched, so both files use the train
image root. The split is reproducible: videos are sorted by id and shuffled with ``seed``.
"""
import argparse
import json
import math
import os

import numpy as np

from ..utils.errors import InputError, MissingFileError
from ..utils.io import atomic_write

__all__ = ["split_ytvis_json", "prepare_ytvis_split", "get_parser", "main"]


def split_ytvis_json(json_file, out_dir=None, valid_fraction=0.1, seed=0,
                     train_name="train_sub.json", valid_name="valid_sub.json"):
    """Write the two halves next to ``json_file`` (or into ``out_dir``); returns (train_sub path, valid_sub path).

    ``valid_fraction`` of the videos (rounded up, at least 1 and at most all but one when there are >= 2 videos)
    go to valid_sub. Each file is written atomically. Bad input raises user errors (one line):
    :class:`~stmask_d2.utils.errors.MissingFileError` (a ``FileNotFoundError``) or
    :class:`~stmask_d2.utils.errors.InputError` (a ``ValueError``).
    """
    if not 0 < valid_fraction < 1:
        raise InputError(f"valid_fraction must be in (0, 1), got {valid_fraction}")
    if not os.path.isfile(json_file):
        raise MissingFileError(f"annotation file {json_file!r} does not exist")
    try:
        with open(json_file, "rb") as f:
            data = json.loads(f.read())
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(f"{json_file} is not valid JSON ({e}); give a YouTube-VIS train JSON.") from e
    if not isinstance(data, dict) or not isinstance(data.get("videos"), list):
        raise InputError(f"{json_file} has no 'videos' list; give a YouTube-VIS train JSON.")
    if not data.get("annotations"):
        raise InputError(f"{json_file} has no annotations; split a train file, not a valid/test file.")
    video_ids = sorted(v["id"] for v in data["videos"])
    n = len(video_ids)
    n_valid = min(max(1, math.ceil(n * valid_fraction)), max(n - 1, 1))
    perm = np.random.RandomState(seed).permutation(n)
    valid_ids = {video_ids[i] for i in perm[:n_valid]}

    def subset(ids):
        out = {k: v for k, v in data.items() if k not in ("videos", "annotations")}
        out["videos"] = [v for v in data["videos"] if v["id"] in ids]
        out["annotations"] = [a for a in data["annotations"] if a["video_id"] in ids]
        return out

    out_dir = out_dir or os.path.dirname(os.path.abspath(json_file))
    os.makedirs(out_dir, exist_ok=True)
    paths = (os.path.join(out_dir, train_name), os.path.join(out_dir, valid_name))
    for path, ids in zip(paths, (set(video_ids) - valid_ids, valid_ids)):
        atomic_write(path, lambda f: json.dump(subset(ids), f), mode="w")
    print(f"{json_file}: {n - n_valid} videos -> {paths[0]}, {n_valid} videos -> {paths[1]}")
    return paths


prepare_ytvis_split = split_ytvis_json  # alias named after the script


def get_parser():
    p = argparse.ArgumentParser(description="Split a YouTube-VIS format train JSON by video into train_sub.json and "
                                            "valid_sub.json")
    p.add_argument("json_file", help="train JSON to split")
    p.add_argument("--out-dir", default=None, help="output folder (default: next to json_file)")
    p.add_argument("--valid-fraction", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv=None):
    """The command line of ``datasets/prepare_ytvis_split.py``; returns 0."""
    args = get_parser().parse_args(argv)
    split_ytvis_json(args.json_file, args.out_dir, args.valid_fraction, args.seed)
    return 0
