"""Time the YouTube-VIS evaluator on a large synthetic case (prints numbers; not a test; library code of
``tools/benchmark_evaluator.py``).

300 videos x 36 frames at 360x640, ~3 GT tracks and 10 predicted tracks per video (3000 predictions), overlapping
moving masks with nulls, seeded. Usage: python tools/benchmark_evaluator.py [--videos 300] [--frames 36] [--hota]
[--process]. ``--process`` also writes the case to JSON files and times ``python -m stmask_d2.evaluation`` as a
separate process (interpreter start, imports, JSON loading, evaluation), the way the official API's script is run.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from pycocotools import mask as mask_util

from ..utils.errors import run_cli

__all__ = ["make_case", "time_cli_process", "get_parser", "main"]


def _encode_track(boxes, h, w, present):
    """boxes: (T, 4) y0 y1 x0 x1 -> list of compressed RLE dicts (str counts) / None."""
    T = len(boxes)
    masks = np.zeros((h, w, T), dtype=np.uint8, order="F")
    yy = np.arange(h)[:, None]
    xx = np.arange(w)[None, :]
    for t, (y0, y1, x0, x1) in enumerate(boxes):
        if present[t]:
            cy, cx, ry, rx = (y0 + y1) / 2, (x0 + x1) / 2, max(1, (y1 - y0) / 2), max(1, (x1 - x0) / 2)
            masks[:, :, t] = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1  # ellipse
    rles = mask_util.encode(masks)
    out = []
    for t, r in enumerate(rles):
        if present[t]:
            r["counts"] = r["counts"].decode("ascii")
            out.append(r)
        else:
            out.append(None)
    return out


def make_case(n_videos=300, n_frames=36, h=360, w=640, gt_per_video=3, dt_per_video=10, n_cats=40, seed=0):
    rng = np.random.RandomState(seed)
    videos, anns, results = [], [], []
    aid = 1
    for v in range(1, n_videos + 1):
        videos.append({"id": v, "height": h, "width": w, "length": n_frames,
                       "file_names": [f"v{v}/{5 * t:05d}.jpg" for t in range(n_frames)]})
        tracks = []
        for _ in range(gt_per_video):
            size = rng.uniform(20, 300, size=2)
            start = rng.uniform([0, 0], [h - size[0] / 2, w - size[1] / 2])
            vel = rng.uniform(-4, 4, size=2)
            t = np.arange(n_frames)[:, None]
            c = start + vel * t
            boxes = np.concatenate([c[:, :1], c[:, :1] + size[0], c[:, 1:], c[:, 1:] + size[1]], 1)
            boxes = boxes[:, [0, 1, 2, 3]].clip([0, 0, 0, 0], [h, h, w, w])
            present = rng.rand(n_frames) > 0.1
            segs = _encode_track(boxes, h, w, present)
            cat = int(rng.randint(1, n_cats + 1))
            areas = [None if s is None else float(mask_util.area(s)) for s in segs]
            anns.append({"id": aid, "video_id": v, "category_id": cat, "iscrowd": 0, "segmentations": segs,
                         "areas": areas, "height": h, "width": w, "length": n_frames})
            tracks.append((boxes, cat))
            aid += 1
        for d in range(dt_per_video):
            boxes, cat = tracks[d % len(tracks)]
            jit = rng.normal(0, 3 + 4 * d, size=(1, 4))
            present = rng.rand(n_frames) > 0.15
            segs = _encode_track((boxes + jit).clip(0, [h, h, w, w]), h, w, present)
            if rng.rand() < 0.2:
                cat = int(rng.randint(1, n_cats + 1))
            results.append({"video_id": v, "category_id": cat, "score": float(rng.rand()), "segmentations": segs})
    cats = [{"id": c, "name": f"class{c}", "supercategory": "object"} for c in range(1, n_cats + 1)]
    return {"videos": videos, "annotations": anns, "categories": cats}, results


def get_parser():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=300)
    ap.add_argument("--frames", type=int, default=36)
    ap.add_argument("--preds-per-video", type=int, default=10)
    ap.add_argument("--hota", action="store_true", help="also time HOTA / DetA / AssA (trackeval)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--process", action="store_true",
                    help="also time `python -m stmask_d2.evaluation` as a process on the case written to JSON")
    return ap


def _benchmark_evaluator(argv):
    args = get_parser().parse_args(argv)

    from ..evaluation.ytvis_eval import evaluate_ytvis, load_ytvis_gt, load_ytvis_results

    t0 = time.perf_counter()
    gt, results = make_case(args.videos, args.frames, dt_per_video=args.preds_per_video)
    print(f"synthetic case: {args.videos} videos x {args.frames} frames, {len(gt['annotations'])} GT tracks, "
          f"{len(results)} predictions (built in {time.perf_counter() - t0:.1f} s)")
    for r in range(args.repeat):
        t0 = time.perf_counter()
        g = load_ytvis_gt(gt)
        res = load_ytvis_results(results, g)
        t1 = time.perf_counter()
        stats = evaluate_ytvis(g, res)
        t2 = time.perf_counter()
        print(f"run {r}: load+validate {t1 - t0:.3f} s, AP/AR {t2 - t1:.3f} s, total {t2 - t0:.3f} s")
    print("metrics:", {k: round(v, 4) for k, v in stats.items()})
    if args.hota:
        from ..evaluation.hota import compute_hota

        for r in range(args.repeat):
            t0 = time.perf_counter()
            h = compute_hota(g, res)
            print(f"run {r}: HOTA {time.perf_counter() - t0:.3f} s")
        print("hota:", {k: round(v, 4) for k, v in h.items()})
    if args.process:
        time_cli_process(gt, results, args.repeat, args.hota)
    return 0


def time_cli_process(gt, results, repeat, hota=False):
    """Times the evaluation CLI as a process (what a user runs), and the import of the package alone."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # this checkout
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with tempfile.TemporaryDirectory() as tmp:
        gt_file, res_file = os.path.join(tmp, "gt.json"), os.path.join(tmp, "results.json")
        with open(gt_file, "w") as f:
            json.dump(gt, f)
        with open(res_file, "w") as f:
            json.dump(results, f)
        probe = ("import sys, time; t = time.perf_counter(); import stmask_d2.evaluation; "
                 "print(f'{time.perf_counter() - t:.3f}', 'torch' in sys.modules, 'detectron2' in sys.modules)")
        out = subprocess.run([sys.executable, "-c", probe], env=env, check=True, capture_output=True, text=True)
        secs, torch_loaded, d2_loaded = out.stdout.split()
        print(f"import stmask_d2.evaluation: {secs} s (torch imported: {torch_loaded}, detectron2 imported: "
              f"{d2_loaded})")
        cmd = [sys.executable, "-m", "stmask_d2.evaluation", "--gt", gt_file, "--results", res_file]
        if hota:
            cmd.append("--hota")
        for r in range(repeat):
            t0 = time.perf_counter()
            out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
            print(f"process run {r}: `python -m stmask_d2.evaluation` {time.perf_counter() - t0:.3f} s -> "
                  f"{out.stdout.strip()[:80]}...")


def main(argv=None):
    """``tools/benchmark_evaluator.py``; returns the exit code."""
    return run_cli(_benchmark_evaluator, argv, prog="benchmark_evaluator.py")
