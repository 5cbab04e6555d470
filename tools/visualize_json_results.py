#!/usr/bin/env python
"""Draw YouTube-VIS results beside the ground truth, per video: contact sheets of (GT | predictions) frame
pairs with each predicted track's video IoU against its best GT and the per-video AP (the evaluator's code), plus
OUTPUT/per_video.json.

    python tools/visualize_json_results.py --results output/main_job/inference/synthetic_vis_valid_sub/results.json \\
        --dataset synthetic_vis_valid_sub --output vis_results/

Bad input (unknown dataset, unreadable results, unwritable output) prints one line and exits with code 2.
"""
import argparse
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository's stmask_d2

from stmask_d2.data import add_register_ytvis_argument, register_ytvis_from_args  # noqa: E402
from stmask_d2.utils.video import FrameReadError  # noqa: E402
from stmask_d2.visualization import visualize_results  # noqa: E402


def get_parser():
    p = argparse.ArgumentParser(description="Draw YouTube-VIS results beside the ground truth")
    p.add_argument("--results", required=True, metavar="JSON", help="YouTube-VIS results file")
    p.add_argument("--dataset", required=True, help="registered dataset name of the ground truth")
    p.add_argument("--output", required=True, metavar="DIR", help="folder for <video>.png and per_video.json")
    p.add_argument("--videos", type=int, default=None, metavar="N", help="only the first N videos")
    p.add_argument("--score-thresh", type=float, default=0.1, help="draw predictions with at least this score")
    p.add_argument("--max-tracks", type=int, default=10, help="draw at most this many predictions per video")
    p.add_argument("--max-frames", type=int, default=8, help="frame pairs per contact sheet")
    add_register_ytvis_argument(p)
    return p


def main(argv=None):
    args = get_parser().parse_args(argv)
    try:
        register_ytvis_from_args(args)
        written = visualize_results(args.results, args.dataset, args.output, args.videos, args.score_thresh,
                                    args.max_tracks, args.max_frames)
    except (ValueError, FileNotFoundError, FrameReadError, OSError, KeyError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        print(f"visualize_json_results.py: error: {' '.join(str(msg).split())}", file=sys.stderr)
        return 2
    print(f"Wrote {len(written)} files to {args.output}")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.exit(main())
