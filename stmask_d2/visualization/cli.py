"""Command lines of ``tools/visualize_data.py`` (:func:`visualize_data_main`) and
``tools/visualize_json_results.py`` (:func:`visualize_results_main`). Bad input (unknown dataset, unreadable
frame or results, unwritable output) raises user errors, printed as one line with exit code 2 by
:func:`stmask_d2.utils.errors.run_cli`."""
import argparse

from ..data import add_register_ytvis_argument, register_ytvis_from_args
from ..utils.errors import run_cli
from .data import visualize_dataset
from .results import visualize_results

__all__ = ["visualize_data_parser", "visualize_data_main", "visualize_results_parser", "visualize_results_main"]


def visualize_data_parser():
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


def _visualize_data(argv):
    args = visualize_data_parser().parse_args(argv)
    register_ytvis_from_args(args)
    written = visualize_dataset(args.dataset, args.output, args.videos, args.video_out, args.max_frames,
                                args.columns, fps=args.fps)
    print(f"Wrote {len(written)} files to {args.output}")
    return 0


def visualize_results_parser():
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


def _visualize_results(argv):
    args = visualize_results_parser().parse_args(argv)
    register_ytvis_from_args(args)
    written = visualize_results(args.results, args.dataset, args.output, args.videos, args.score_thresh,
                                args.max_tracks, args.max_frames)
    print(f"Wrote {len(written)} files to {args.output}")
    return 0


def visualize_data_main(argv=None):
    """``tools/visualize_data.py``; returns the exit code (2: a user error, printed as one line)."""
    return run_cli(_visualize_data, argv, prog="visualize_data.py")


def visualize_results_main(argv=None):
    """``tools/visualize_json_results.py``; returns the exit code (2: a user error, printed as one line)."""
    return run_cli(_visualize_results, argv, prog="visualize_json_results.py")
