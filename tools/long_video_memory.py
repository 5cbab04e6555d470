#!/usr/bin/env python
"""Memory of online inference on a long video stream: peak / current RSS and the tracker's memory size.

A synthetic stream (moving, appearing and disappearing squares on a noisy background) is generated frame by frame,
never stored, and fed to ``model.track_frames`` of a tiny STMask (the synthetic config, random weights unless
``--opts MODEL.WEIGHTS ...``). Streaming keeps only the tracker's memory and the previous frame's TF features, so
RSS after 100 frames and after 2,000 should be about the same and the tracker bounded by
``MAX_DETECTIONS * (TRACKER.PRUNE_AFTER + 1)`` rows.

    python tools/long_video_memory.py --frames 2000 [--height 64 --width 96] [--opts KEY VALUE ...]
"""
import argparse
import os
import resource
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                              "configs", "synthetic", "STMask_R18_synthetic_TF.yaml")


def synthetic_stream(num_frames, height, width, seed=0):
    """Yield ``num_frames`` HxWx3 uint8 frames: a few squares moving across a noisy background, some leaving
    and new ones entering (so tracks start and end over the whole stream)."""
    rng = np.random.RandomState(seed)
    base = rng.randint(0, 60, (height, width, 3)).astype(np.uint8)
    colours = rng.randint(120, 256, (16, 3)).astype(np.uint8)
    for t in range(num_frames):
        frame = base.copy()
        for k in range(3):
            period = 40 + 13 * k
            phase = (t + 17 * k) % period
            if phase > period - 5:  # off screen for a few frames
                continue
            s = max(6, height // 5)
            x = int((width - s) * phase / period)
            y = int((height - s) * (0.2 + 0.3 * k) % (height - s))
            frame[y:y + s, x:x + s] = colours[(t // period + k) % len(colours)]
        yield frame


def rss_mib():
    """(current, peak) resident set size of this process in MiB."""
    cur = 0.0
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    cur = int(line.split()[1]) / 1024.0
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    return cur, peak


def build_tiny_model(config_file=DEFAULT_CONFIG, opts=(), min_size=64, max_size=96):
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model

    import stmask_d2
    stmask_d2.register_all()  # the model parts and the builtin dataset splits
    from stmask_d2.config import add_stmask_config

    cfg = get_cfg()
    add_stmask_config(cfg)
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "INPUT.MIN_SIZE_TEST", str(min_size),
                         "INPUT.MAX_SIZE_TEST", str(max_size), *opts])
    torch.manual_seed(0)
    model = build_model(cfg)
    if cfg.MODEL.WEIGHTS:
        DetectionCheckpointer(model).load(cfg.MODEL.WEIGHTS)
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--width", type=int, default=96)
    parser.add_argument("--report-at", type=int, nargs="*", default=[100])
    parser.add_argument("--config-file", default=DEFAULT_CONFIG)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[])
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, cfg = build_tiny_model(args.config_file, args.opts, min(args.height, args.width),
                                  max(args.height, args.width))
    bound = cfg.MODEL.STMASK.TEST.MAX_DETECTIONS * (cfg.MODEL.STMASK.TRACKER.PRUNE_AFTER + 1)
    cur, peak = rss_mib()
    print(f"model built: RSS {cur:.1f} MiB (peak {peak:.1f} MiB); {args.frames} frames of {args.height}x"
          f"{args.width}; tracker bound MAX_DETECTIONS * (PRUNE_AFTER + 1) = {bound} tracks")
    run(args.frames, args.height, args.width, args.report_at, model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
