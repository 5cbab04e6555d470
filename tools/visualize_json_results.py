#!/usr/bin/env python
"""Draw YouTube-VIS results beside the ground truth, per video: contact sheets of (GT | predictions) frame
pairs with each predicted track's video IoU against its best GT and the per-video AP (the evaluator's code), plus
OUTPUT/per_video.json.

    python tools/visualize_json_results.py --results output/main_job/inference/synthetic_vis_valid_sub/results.json \\
        --dataset synthetic_vis_valid_sub --output vis_results/

Bad input (unknown dataset, unreadable results, unwritable output) prints one line and exits with code 2.
Library code: ``stmask_d2.visualization.cli``.
"""
import logging
import sys

from stmask_d2.visualization.cli import visualize_results_main

if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.exit(visualize_results_main())
