#!/usr/bin/env python
"""Write the synthetic YouTube-VIS format dataset of moving textured shapes (CLI of
``stmask_d2.data.synthetic.make_synthetic_vis``; the knobs are documented there).

    python datasets/make_synthetic_vis.py --out datasets/synthetic_vis --videos 80 --frames 12 \\
        --height 360 --width 640
    python datasets/prepare_ytvis_split.py datasets/synthetic_vis/train.json   # train_sub / valid_sub
    # harder for temporal fusion: 3x motion, per-object motion blur, two occluders per video
    python datasets/make_synthetic_vis.py --out datasets/synthetic_hard --motion-scale 3 --object-blur 0.5 \\
        --occluders 2
"""
import sys

from stmask_d2.data.synthetic import main
from stmask_d2.utils.errors import run_cli

if __name__ == "__main__":
    sys.exit(run_cli(main, prog="make_synthetic_vis.py"))
