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


def _add_common_arguments(p, output_help, max_frames, max_frames_help):
    """The options both tools share."""
    p.add_argument("--dataset", required=True, help="registered dataset name (predefined or --register-ytvis)")
    p.add_argument("--output", required=True, metavar="DIR", help=output_help)
    p.add_argument("--videos", type=int, default=None, metavar="N", help="only the first N videos")
    p.add_argument("--max-frames", type=int, default=max_frames, help=max_frames_help)
    add_register_ytvis_argument(p)
    return p


def visualize_data_parser():
    p = argparse.ArgumentParser(description="Draw the ground truth of a YouTube-VIS dataset")
    _add_common_arguments(p, "folder for <video>.png (and <video>.mp4)", 12,
                          "frames per contact sheet (spread over the video)")
    p.add_argument("--video-out", action="store_true", help="also write every frame as <video>.mp4")
    p.add_argument("--columns", type=int, default=4, help="tiles per row")
    p.add_argument("--fps", type=float, default=6.0, help="frame rate of --video-out")
    return p


def visualize_results_parser():
    p = argparse.ArgumentParser(description="Draw YouTube-VIS results beside the ground truth")
    p.add_argument("--results", required=True, metavar="JSON", help="YouTube-VIS results file")
    _add_common_arguments(p, "folder for <video>.png and per_video.json", 8, "frame pairs per contact sheet")
    p.add_argument("--score-thresh", type=float, default=0.1, help="draw predictions with at least this score")
    p.add_argument("--max-tracks", type=int, default=10, help="draw at most this many predictions per video")
    return p


def _run(parser, draw, argv):
    """Parse, register the --register-ytvis datasets, ``draw(args)`` -> written files."""
    args = parser.parse_args(argv)
    register_ytvis_from_args(args)
    written = draw(args)
    print(f"Wrote {len(written)} files to {args.output}")
    return 0


def _visualize_data(argv):
    return _run(visualize_data_parser(), lambda a: visualize_dataset(
        a.dataset, a.output, a.videos, a.video_out, a.max_frames, a.columns, fps=a.fps), argv)


def _visualize_results(argv):
    return _run(visualize_results_parser(), lambda a: visualize_results(
        a.results, a.dataset, a.output, a.videos, a.score_thresh, a.max_tracks, a.max_frames), argv)


def visualize_data_main(argv=None):
    """``tools/visualize_data.py``; returns the exit code (2: a user error, printed as one line)."""
    return run_cli(_visualize_data, argv, prog="visualize_data.py")


def visualize_results_main(argv=None):
    """``tools/visualize_json_results.py``; returns the exit code (2: a user error, printed as one line)."""
    return run_cli(_visualize_results, argv, prog="visualize_json_results.py")
