#!/usr/bin/env python
"""Split a YouTube-VIS format train JSON by video into ``train_sub.json`` and ``valid_sub.json``.

The held-out part keeps its annotations, so it can be evaluated locally (the official valid sets have none).
``info``, ``licenses`` and ``categories`` are copied; frame paths are untouched, so both files use the train
image root. The split is reproducible: videos are sorted by id and shuffled with ``--seed``.

    python datasets/prepare_ytvis_split.py datasets/ytvis_2019/train.json [--valid-fraction 0.1] [--seed 0]
    # -> datasets/ytvis_2019/train_sub.json, datasets/ytvis_2019/valid_sub.json
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # this checkout's stmask_d2

from stmask_d2.data.split import prepare_ytvis_split, split_ytvis_json  # noqa: E402

__all__ = ["split_ytvis_json", "prepare_ytvis_split"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("json_file", help="train JSON to split")
    p.add_argument("--out-dir", default=None, help="output folder (default: next to json_file)")
    p.add_argument("--valid-fraction", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    split_ytvis_json(args.json_file, args.out_dir, args.valid_fraction, args.seed)


if __name__ == "__main__":
    main()
