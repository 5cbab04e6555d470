"""Library code of ``demo/demo.py``: online video instance segmentation of a video file, a folder of frames or a
webcam (the predictor is :class:`stmask_d2.engine.predictor.VideoPredictor`, the writers are
:mod:`stmask_d2.utils.video`).

    python demo/demo.py --config-file configs/youtubevis_2019/STMask_R50_DCN_ada_TF.yaml \\
        --video-input my.mp4 --output out.mp4 --output-json results.json --opts MODEL.WEIGHTS model.pth
    python demo/demo.py --config-file ... --input frames_dir/ --output out_frames/ --fps 6 --opts ...
    python demo/demo.py --config-file ... --webcam --opts MODEL.WEIGHTS model.pth
    python demo/demo.py ... --video-input my.mp4 --output out.mp4 --no-boxes --alpha 0.7 --bw-background \
        --classes person dog --output-masks masks/ --opts MODEL.WEIGHTS model.pth

Display: --no-boxes, --no-labels, --alpha A, --bw-background (grey outside the masks). --classes keeps only these
classes in every output. --output-masks DIR writes one indexed PNG per frame (value = track id + 1) and
DIR/tracks.json (track id -> class, score); with it, overlapping masks are made disjoint (highest score wins) in
every output so that the PNGs and --output-json hold the same masks.

Every track keeps one colour and is labelled "[id] class score". Frames are streamed: memory does not grow with
the video's length. The annotated video keeps the source's frame rate and size (a folder of frames: --fps).
``--output`` ending in .mp4/.avi/.mkv/.mov/.m4v writes a video, anything else a folder of frames; outputs are
written to temporary files beside the target and renamed at the end, so a failure leaves nothing half-written.
User errors (unreadable input, unwritable output, missing or corrupt weights, bad config key or value, frames
larger than INPUT.MAX_FRAME_PIXELS) print one line on stderr and exit with code 2. Memory does not grow with
the frame size times the number of tracks: masks are pasted, drawn and encoded one instance at a time. SIGTERM
removes the temporaries; those of a killed run (SIGKILL) are removed by the next run writing beside them.
"""
import argparse
import logging
import os
import sys
import time

import cv2
import tqdm

from ..data import add_register_ytvis_argument
from ..utils.errors import InputError, MissingFileError, run_cli
from ..utils.io import install_sigterm_handler
from ..utils.track_outputs import IndexedMaskWriter, OutputOptions
from ..utils.video import (FrameReadError, VideoFileSource, VideoSink, JsonSink, frames_from_folder_or_glob,
                           open_frame_sink)

__all__ = ["get_parser", "setup_cfg", "open_source", "run", "main", "setup_logging"]

WINDOW_NAME = "STMask"
PROG = "demo.py"

logger = logging.getLogger("stmask_d2.demo")


def get_parser():
    parser = argparse.ArgumentParser(description="STMask demo (Detectron2 conventions)")
    parser.add_argument("--config-file", default="configs/youtubevis_2019/STMask_R50_DCN_ada_TF.yaml",
                        metavar="FILE", help="path to config file")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--video-input", metavar="PATH", help="a video file (anything OpenCV reads)")
    src.add_argument("--input", metavar="DIR_OR_GLOB", help="a folder of frames or a glob, e.g. 'dir/*.jpg'")
    src.add_argument("--webcam", action="store_true", help="take input from webcam 0 (shows a window)")
    parser.add_argument("--output", metavar="PATH",
                        help="annotated output: a video file (.mp4/.avi/.mkv/.mov/.m4v) or a folder of frames; "
                             "default: none")
    parser.add_argument("--output-json", metavar="FILE", help="write YouTube-VIS results of the video to FILE")
    parser.add_argument("--confidence-threshold", type=float, default=0.3,
                        help="minimum per-frame score of a track to be drawn / written to the JSON")
    parser.add_argument("--fps", type=float, default=6.0, help="frame rate of the output for --input folders")
    parser.add_argument("--video-id", type=int, default=1, help="video_id written in --output-json")
    out = parser.add_argument_group("output options")
    out.add_argument("--no-boxes", action="store_true", help="do not draw boxes (labels stay in place)")
    out.add_argument("--no-labels", action="store_true", help='do not draw the "[id] class score" labels')
    out.add_argument("--alpha", type=float, default=0.5, help="mask opacity in [0, 1] (default 0.5)")
    out.add_argument("--bw-background", action="store_true", help="grey background outside the masks")
    out.add_argument("--classes", nargs="+", metavar="NAME", help="keep only these classes (video, JSON, PNGs)")
    out.add_argument("--output-masks", metavar="DIR",
                     help="one indexed PNG per frame (value = track id + 1) + DIR/tracks.json (id -> class, score)")
    add_register_ytvis_argument(parser)
    parser.add_argument("--exported", metavar="FILE",
                        help="run the frame network exported by tools/export_model.py (.onnx: onnxruntime, .pt: "
                             "TorchScript) instead of the model's own; --config-file must be the export's config "
                             "(tracking and post-processing settings), MODEL.WEIGHTS is not needed")
    parser.add_argument("--opts", default=[], nargs=argparse.REMAINDER,
                        help="modify config options using the command-line 'KEY VALUE' pairs")
    return parser


def setup_cfg(args):
    """The demo's config (:func:`stmask_d2.engine.setup.build_cfg`): inference-range checks, a CUDA device that is
    not there falls back to the CPU with a warning."""
    from .setup import build_cfg

    return build_cfg(args, check=False, validate=True, training=False, device_fallback=True)


# ---------------------------------------------------------------------------------------------------------------
# input
# ---------------------------------------------------------------------------------------------------------------
def open_source(args, max_pixels=0):
    """Returns (frame source, height, width, fps, output names or None). The first frame is decoded here, after
    its size was checked against ``max_pixels`` (``INPUT.MAX_FRAME_PIXELS``) from the file header."""
    if args.webcam:
        src = VideoFileSource(0, max_pixels=max_pixels)
        return src, src.height, src.width, _sane_fps(src.fps), None
    if args.video_input:
        if not os.path.isfile(args.video_input):
            raise MissingFileError(f"--video-input {args.video_input!r} does not exist")
        src = VideoFileSource(args.video_input, max_pixels=max_pixels)
        return src, src.height, src.width, _sane_fps(src.fps), None
    if not (os.path.exists(args.input) or any(c in args.input for c in "*?[")):
        raise MissingFileError(f"--input {args.input!r} does not exist (a folder of frames or a glob pattern)")
    src = frames_from_folder_or_glob(args.input, max_pixels=max_pixels)
    first = src[0]
    if args.fps <= 0:
        raise InputError(f"--fps must be positive, got {args.fps}")
    return src, first.shape[0], first.shape[1], args.fps, [os.path.basename(f) for f in src.file_names]


def _sane_fps(fps):
    return fps if fps and 0 < fps < 1000 else 30.0


def _window_available():
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    try:
        cv2.namedWindow(WINDOW_NAME, cv2.WINDOW_NORMAL)
        return True
    except cv2.error:
        return False


# ---------------------------------------------------------------------------------------------------------------
def output_options(args):
    """The :class:`OutputOptions` of the command line (``InputError`` for a bad --alpha)."""
    return OutputOptions(boxes=not args.no_boxes, labels=not args.no_labels, alpha=args.alpha,
                         bw_background=args.bw_background, classes=args.classes, output_masks=args.output_masks)


def run(args):
    if not 0.0 <= args.confidence_threshold <= 1.0:
        raise InputError(f"--confidence-threshold must be in [0, 1], got {args.confidence_threshold}")
    options = output_options(args)
    cfg = setup_cfg(args)
    source, height, width, fps, names = open_source(args, cfg.INPUT.MAX_FRAME_PIXELS)

    video_sink = json_sink = mask_sink = None
    sinks = []
    try:
        if args.output:
            video_sink = open_frame_sink(args.output, fps, width, height, names)
            sinks.append(video_sink)
        if args.output_json:
            json_sink = JsonSink(args.output_json)
            sinks.append(json_sink)
        if args.output_masks:
            mask_sink = IndexedMaskWriter(args.output_masks, names)
            sinks.append(mask_sink)

        from .predictor import VideoPredictor, video_metadata

        class_ids = options.class_ids(video_metadata(cfg))  # an unknown --classes name fails before the model
        predictor = VideoPredictor(cfg, exported=args.exported)  # missing / corrupt weights: one-line user errors
        visualizer = options.visualizer(predictor.metadata)
        results = predictor.results_builder(args.video_id) if (json_sink or mask_sink) else None
        window = args.webcam and _window_available()
        draw = video_sink is not None or window

        n, draw_s = 0, 0.0
        start = time.perf_counter()
        bar = tqdm.tqdm(total=len(source) or None, unit="frame", dynamic_ncols=True)
        try:
            for frame, instances in predictor(source, height, width):
                keep = instances[instances.scores >= args.confidence_threshold] if len(instances) else instances
                keep = options.select(keep, class_ids)
                if draw:
                    t0 = time.perf_counter()
                    vis = visualizer.draw_frame(frame, keep)
                    draw_s += time.perf_counter() - t0
                    if video_sink is not None:
                        video_sink.write(vis, n)
                    if window:
                        cv2.imshow(WINDOW_NAME, cv2.cvtColor(vis, cv2.COLOR_RGB2BGR))
                        if cv2.waitKey(1) == 27:  # Esc
                            n += 1
                            bar.update(1)
                            break
                if results is not None:
                    results.add(keep)
                if mask_sink is not None:
                    mask_sink.write(n, keep)
                n += 1
                bar.update(1)
        finally:
            bar.close()
            if window:
                cv2.destroyAllWindows()
        elapsed = time.perf_counter() - start
        if n == 0:
            raise FrameReadError("the input has no readable frame")

        if video_sink is not None:
            video_sink.commit()
        if json_sink is not None:
            json_sink.commit(results.entries())
        if mask_sink is not None:
            mask_sink.commit(results.tracks(), getattr(predictor.metadata, "thing_classes", None),
                             results.dataset_category)
    except BaseException:
        for s in sinks:
            s.abort()
        raise

    msg = f"Processed {n} frames of {width}x{height} in {elapsed:.2f}s: {n / elapsed:.2f} FPS end-to-end"
    if draw and n:
        msg += f" (drawing {draw_s / n * 1000:.1f} ms/frame)"
    print(msg)
    if args.output:
        print(f"Annotated {'video' if isinstance(video_sink, VideoSink) else 'frames'}: {args.output}")
    if args.output_json:
        print(f"YouTube-VIS results: {args.output_json}")
    if args.output_masks:
        print(f"Indexed mask PNGs: {args.output_masks}")
    return 0


def setup_logging():
    from detectron2.utils.logger import setup_logger

    setup_logger(name="fvcore")
    setup_logger()
    setup_logger(name="stmask_d2")


def _main(argv):
    args = get_parser().parse_args(argv)
    install_sigterm_handler()  # SIGTERM -> SystemExit: the sinks' clean-up removes the temporaries
    try:
        return run(args)
    except SystemExit as e:
        if e.code == 143:  # SIGTERM (install_sigterm_handler)
            print(f"{PROG}: terminated; partial outputs removed", file=sys.stderr)
        raise


def main(argv=None):
    """Runs the demo; returns the exit code (0, 2 for user errors, 130 when interrupted). Logging is set up by
    the command line entry point only (call :func:`setup_logging` to see the logs when calling this)."""
    return run_cli(_main, argv, prog=PROG, interrupted="interrupted; partial outputs removed")
