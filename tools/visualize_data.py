#!/usr/bin/env python
"""Draw the ground-truth tracks of a registered YouTube-VIS dataset (the demo's palette and labels): one contact
sheet per video, optionally an mp4 of every frame.

    python tools/visualize_data.py --dataset synthetic_vis_valid_sub --output vis_gt/ --videos 4 --video-out
    python tools/visualize_data.py --register-ytvis my_vis out.json IMAGES --dataset my_vis --output vis_gt/

Bad input (unknown dataset, unreadable frame, unwritable output) prints one line and exits with code 2.
"""
import argparse
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository's stmask_d2

from stmask_d2.data import add_register_ytvis_argument, register_ytvis_from_args  # noqa: E402
from stmask_d2.utils.video import FrameReadError  # noqa: E402
from stmask_d2.visualization import visualize_dataset  # noqa: E402


def get_parser():
    p = argparse.ArgumentParser(description="Draw the ground truth of a YouTube-VIS dataset")
    p.add_argument("--dataset", required=True, help="registered dataset name (predefined or --register-ytvis)")
    p.add_argument("--output", required=True, metavar="DIR", help="folder for <video>.png (and <video>.mp4)")
    p.add_argument("--videos", type=int, default=None, metavar="N", help="only the first N videos")
    p.add_argument("--video-out", action="store_true", help="also write every frame as <video>.mp4")
    p.add_argument("--max-frames", type=int, default=12, help="frames per contact sheet (spread over the video)")
    p.add_argument("--columns", type=int, default=4, help="tiles per row")
    p.add_argument("--fps", type=float, default=6.0, help="frame rate of --video-out")
    add_register_ytvis_argument(p)
    return p


def main(argv=None):
    args = get_parser().parse_args(argv)
    try:
        register_ytvis_from_args(args)
        written = visualize_dataset(args.dataset, args.output, args.videos, args.video_out, args.max_frames,
                                    args.columns, fps=args.fps)
    except (ValueError, FileNotFoundError, FrameReadError, OSError, KeyError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        print(f"visualize_data.py: error: {' '.join(str(msg).split())}", file=sys.stderr)
        return 2
    print(f"Wrote {len(written)} files to {args.output}")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.exit(main())
