"""Memory of online inference on a long video stream (library code of ``tools/long_video_memory.py``): peak /
current RSS and the tracker's memory size.

A synthetic stream (:func:`stmask_d2.data.synthetic.synthetic_video`: objects that appear, move and disappear) is
generated frame by frame, never stored, and fed to ``model.track_frames`` of a tiny STMask (the synthetic config,
random weights unless ``--opts MODEL.WEIGHTS ...``). Streaming keeps only the tracker's memory and the previous
frame's TF features, so RSS after 100 frames and after 2,000 should be about the same and the tracker bounded by
``MAX_DETECTIONS * (TRACKER.PRUNE_AFTER + 1)`` rows.
"""
import argparse
import os
import time

from ..data.synthetic import synthetic_video
from ..utils.memory import rss_mib
from .setup import REPO_ROOT as ROOT  # the repository

__all__ = ["DEFAULT_CONFIG", "build_tiny_model", "instrument_tracker", "run", "get_parser", "main", "rss_mib",
           "synthetic_stream"]

DEFAULT_CONFIG = os.path.join(ROOT, "configs", "synthetic", "STMask_R18_synthetic_TF.yaml")


def synthetic_stream(num_frames, height, width, seed=0):
    """The long-video stream: :func:`~stmask_d2.data.synthetic.synthetic_video` with three objects at a time."""
    return synthetic_video(num_frames, height, width, seed=seed, num_objects=3)


def build_tiny_model(config_file=DEFAULT_CONFIG, opts=(), min_size=64, max_size=96):
    """(model in eval mode on the CPU, cfg) of ``config_file`` at a ``min_size`` / ``max_size`` test resize; the
    user's ``opts`` come last. Random weights (seeded) unless MODEL.WEIGHTS."""
    import torch
    from detectron2.modeling import build_model

    from .checkpoint import AtomicDetectionCheckpointer
    from .setup import get_stmask_cfg

    cfg = get_stmask_cfg(config_file, ["MODEL.DEVICE", "cpu", "INPUT.MIN_SIZE_TEST", str(min_size),
                                       "INPUT.MAX_SIZE_TEST", str(max_size), *opts])
    torch.manual_seed(0)
    model = build_model(cfg)
    if cfg.MODEL.WEIGHTS:
        AtomicDetectionCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    model.eval()
    return model, cfg


def instrument_tracker(model):
    """Make the model's per-video tracker (a copy of ``model.tracker_template``) record its size after every
    update; returns the list the sizes are appended to."""
    sizes = []
    template = model.tracker_template
    base = type(template)

    class RecordingTracker(base):
        def update(self, *a, **k):
            out = super().update(*a, **k)
            sizes.append(len(self))
            return out

    template.__class__ = RecordingTracker
    return sizes


def run(num_frames, height, width, report_at=(100,), model=None, log=print):
    """Stream ``num_frames`` frames through ``model.track_frames``; returns a list of per-report dicts
    (frames, rss_mib, peak_rss_mib, tracker_rows, max_tracker_rows, emitted, seconds)."""
    sizes = instrument_tracker(model)
    reports = []
    emitted = 0
    t0 = time.perf_counter()
    report_at = set(report_at) | {num_frames}
    for t, inst in enumerate(model.track_frames(synthetic_stream(num_frames, height, width), height, width), 1):
        emitted += len(inst)
        if t in report_at:
            cur, peak = rss_mib()
            rep = {"frames": t, "rss_mib": round(cur, 1), "peak_rss_mib": round(peak, 1),
                   "tracker_rows": sizes[-1], "max_tracker_rows": max(sizes), "emitted": emitted,
                   "seconds": round(time.perf_counter() - t0, 1)}
            reports.append(rep)
            log(f"after {t:5d} frames: RSS {rep['rss_mib']:.1f} MiB (peak {rep['peak_rss_mib']:.1f} MiB), tracker "
                f"memory {rep['tracker_rows']} tracks (max {rep['max_tracker_rows']}), {emitted} track-frames "
                f"emitted, {rep['seconds']:.1f} s")
    return reports


def get_parser():
    parser = argparse.ArgumentParser(description="Memory of online inference on a long synthetic video stream")
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--width", type=int, default=96)
    parser.add_argument("--report-at", type=int, nargs="*", default=[100])
    parser.add_argument("--config-file", default=DEFAULT_CONFIG)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[])
    return parser


def main(argv=None):
    import torch

    args = get_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    model, cfg = build_tiny_model(args.config_file, args.opts, min(args.height, args.width),
                                  max(args.height, args.width))
    bound = cfg.MODEL.STMASK.TEST.MAX_DETECTIONS * (cfg.MODEL.STMASK.TRACKER.PRUNE_AFTER + 1)
    cur, peak = rss_mib()
    print(f"model built: RSS {cur:.1f} MiB (peak {peak:.1f} MiB); {args.frames} frames of {args.height}x"
          f"{args.width}; tracker bound MAX_DETECTIONS * (PRUNE_AFTER + 1) = {bound} tracks")
    run(args.frames, args.height, args.width, args.report_at, model)
    return 0
