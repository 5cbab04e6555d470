#!/usr/bin/env python
"""Split a YouTube-VIS format train JSON by video into ``train_sub.json`` and ``valid_sub.json`` (library code:
``stmask_d2.data.split``).

The held-out part keeps its annotations, so it can be evaluated locally (the official valid sets have none).
``info``, ``licenses`` and ``categories`` are copied; frame paths are untouched, so both files use the train
image root. The split is reproducible: videos are sorted by id and shuffled with ``--seed``.

    python datasets/prepare_ytvis_split.py datasets/ytvis_2019/train.json [--valid-fraction 0.1] [--seed 0]
    # -> datasets/ytvis_2019/train_sub.json, datasets/ytvis_2019/valid_sub.json
"""
import sys

from stmask_d2.data.split import main
from stmask_d2.utils.errors import run_cli

if __name__ == "__main__":
    sys.exit(run_cli(main, prog="prepare_ytvis_split.py"))
