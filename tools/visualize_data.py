#!/usr/bin/env python
"""Draw the ground-truth tracks of a registered YouTube-VIS dataset (the demo's palette and labels): one contact
sheet per video, optionally an mp4 of every frame.

    python tools/visualize_data.py --dataset synthetic_vis_valid_sub --output vis_gt/ --videos 4 --video-out
    python tools/visualize_data.py --register-ytvis my_vis out.json IMAGES --dataset my_vis --output vis_gt/

Bad input (unknown dataset, unreadable frame, unwritable output) prints one line and exits with code 2.
Library code: ``stmask_d2.visualization.cli``.
"""
import logging
import sys

from stmask_d2.visualization.cli import visualize_data_main

if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.exit(visualize_data_main())
