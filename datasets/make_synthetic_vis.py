#!/usr/bin/env python
"""Write the synthetic YouTube-VIS format dataset of moving textured shapes (CLI of
``stmask_d2.data.synthetic.make_synthetic_vis``; the knobs are documented there).

    python datasets/make_synthetic_vis.py --out datasets/synthetic_vis --videos 80 --frames 12 \\
        --height 360 --width 640
    python datasets/prepare_ytvis_split.py datasets/synthetic_vis/train.json   # train_sub / valid_sub
    # harder for temporal fusion: 3x motion, per-object motion blur, two occluders per video
    python datasets/make_synthetic_vis.py --out datasets/synthetic_hard --motion-scale 3 --object-blur 0.5 \\
        --occluders 2
"""
import argparse
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # this checkout's stmask_d2

from stmask_d2.data.synthetic import SHAPES, make_synthetic_vis  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=os.path.join(os.getenv("DETECTRON2_DATASETS", "datasets"), "synthetic_vis"))
    p.add_argument("--videos", type=int, default=80)
    p.add_argument("--frames", type=int, default=12)
    p.add_argument("--height", type=int, default=360)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--categories", type=int, default=5, help=f"number of shape classes (1..{len(SHAPES)})")
    p.add_argument("--instances", type=int, default=4, help="max objects per video")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--blur-prob", type=float, default=0.05, help="probability that a frame is motion-blurred")
    p.add_argument("--motion-scale", type=float, default=1.0, help="multiplier of every object's speed")
    p.add_argument("--object-blur", type=float, default=0.0,
                   help="per-object motion blur along its velocity, as a fraction of its per-frame displacement")
    p.add_argument("--occluders", type=int, default=0, help="unannotated occluding rectangles per video")
    p.add_argument("--occluder-size", type=float, default=0.3, help="occluder side as a fraction of min(H, W)")
    p.add_argument("--compressed-rle", action="store_true", help="write compressed RLE strings")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        path = make_synthetic_vis(args.out, num_videos=args.videos, num_frames=args.frames, height=args.height,
                                  width=args.width, num_categories=args.categories, max_instances=args.instances,
                                  seed=args.seed, blur_prob=args.blur_prob, compressed_rle=args.compressed_rle,
                                  motion_scale=args.motion_scale, object_blur=args.object_blur,
                                  occluders=args.occluders, occluder_size=args.occluder_size)
    except ValueError as e:
        p.exit(2, f"make_synthetic_vis.py: error: {e}\n")
    print(path)


if __name__ == "__main__":
    main()
