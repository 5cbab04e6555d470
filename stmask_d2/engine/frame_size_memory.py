"""Peak RSS of the demo (and so of the evaluation path: same tracking, pasting and RLE code) by frame size.

Writes ``--frames`` synthetic frames of ``--size`` x ``--size`` pixels (smooth random colour fields, JPEG) to a
temporary folder, seeds torch (random weights are then reproducible) and runs ``demo/demo.py`` in this process
on them with ``--confidence-threshold 0`` and ``MODEL.STMASK.TEST.SCORE_THRESH 0`` (so a random-weight model
emits dozens of tracks with large masks per frame, the worst case for mask memory). Prints one JSON line with
``ru_maxrss`` (peak RSS, MiB) and the number of tracks written. Run one size per process:

    python tools/frame_size_memory.py --size 1000 [--output-video] [--opts KEY VALUE ...]
    python tools/frame_size_memory.py --size 4000
    python tools/frame_size_memory.py --size 4000 --eval   # the evaluation path: model.inference_video

Masks are pasted, drawn and RLE-encoded one instance at a time (``stmask_d2.layers.LazyMasks``), so the peak grows
with the frame (a few full-size buffers), not with frame size x number of tracks. Library code of
``tools/frame_size_memory.py``.
"""
import argparse
import json
import os
import resource
import tempfile

import cv2
import numpy as np
import torch

from ..utils.errors import run_cli
from .setup import REPO_ROOT as ROOT  # the repository

__all__ = ["write_frames", "get_parser", "main"]

DEFAULT_CONFIG = os.path.join(ROOT, "configs", "synthetic", "STMask_R18_synthetic.yaml")


def write_frames(folder, size, num, seed=0):
    rng = np.random.RandomState(seed)
    for i in range(num):
        small = rng.randint(0, 256, (50, 50, 3), np.uint8)
        cv2.imwrite(os.path.join(folder, f"{i:05d}.jpg"), cv2.resize(small, (size, size)))


def _eval_path(args, frames):
    """``model.inference_video`` (what YTVISEvaluator runs) on the frame files; returns the number of tracks."""
    from detectron2.modeling import build_model

    from ..utils.video import frames_from_folder_or_glob
    from .setup import get_stmask_cfg

    cfg = get_stmask_cfg(args.config_file, ["MODEL.DEVICE", "cpu", "MODEL.STMASK.TEST.SCORE_THRESH", "0.0", *args.opts],
                         validate=False)
    torch.manual_seed(args.seed)
    model = build_model(cfg).eval()
    src = frames_from_folder_or_glob(frames, cfg.INPUT.FORMAT, max_pixels=cfg.INPUT.MAX_FRAME_PIXELS)
    out = model.inference_video({"video_id": 1, "height": args.size, "width": args.size, "length": len(src),
                                 "frames": src})
    return len(out["tracks"])


def get_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, required=True, help="frame side in pixels")
    p.add_argument("--frames", type=int, default=3)
    p.add_argument("--config-file", default=DEFAULT_CONFIG)
    p.add_argument("--output-video", action="store_true", help="also draw and write an annotated .avi")
    p.add_argument("--eval", action="store_true",
                   help="run the evaluation path (model.inference_video on the frame files) instead of the demo")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--opts", nargs=argparse.REMAINDER, default=[])
    return p


def _frame_size_memory(argv):
    args = get_parser().parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    from . import demo as demo_cli  # demo/demo.py's library code

    with tempfile.TemporaryDirectory() as tmp:
        frames = os.path.join(tmp, "frames")
        os.makedirs(frames)
        write_frames(frames, args.size, args.frames, args.seed)
        if args.eval:
            code, tracks = 0, _eval_path(args, frames)
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(json.dumps({"size": args.size, "frames": args.frames, "path": "eval", "tracks": tracks,
                              "peak_rss_mib": round(peak, 1)}))
            return code
        out_json = os.path.join(tmp, "results.json")
        cli = ["--config-file", args.config_file, "--input", frames, "--output-json", out_json,
               "--confidence-threshold", "0"]
        if args.output_video:
            cli += ["--output", os.path.join(tmp, "out.avi")]
        cli += ["--opts", "MODEL.DEVICE", "cpu", "MODEL.STMASK.TEST.SCORE_THRESH", "0.0", *args.opts]
        torch.manual_seed(args.seed)
        code = demo_cli.main(cli)
        tracks = len(json.load(open(out_json))) if code == 0 else None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"size": args.size, "frames": args.frames, "video": args.output_video, "exit_code": code,
                      "tracks": tracks, "peak_rss_mib": round(peak, 1)}))
    return code


def main(argv=None):
    """``tools/frame_size_memory.py``; returns the exit code (the demo's with the demo path, 2 for bad input)."""
    return run_cli(_frame_size_memory, argv, prog="frame_size_memory.py")
