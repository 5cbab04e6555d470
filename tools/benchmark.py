#!/usr/bin/env python
"""End-to-end online benchmark of STMask (and Detectron2's Mask R-CNN R50-FPN for comparison); the library code,
the options and what is measured are described in ``stmask_d2.engine.benchmark`` (``--help`` lists the options).

    python tools/benchmark.py [--config-file configs/youtubevis_2019/STMask_R50_DCN_ada_TF.yaml] [--frames 20]
        [--warmup 3] [--device cpu|cuda] [--fp16] [--height 360 --width 640] [--weights PATH] [--skip-maskrcnn]
        [--long-video N] [--threads T] [--compile] [--compare nofold,channels_last,bf16 [--rounds 3]]
        [--no-calibration] [--opts KEY VALUE ...]

A script that prints numbers; it never asserts timings. Bad input: one line on stderr, exit code 2.
"""
import sys

from stmask_d2.engine.benchmark import main
from stmask_d2.utils.errors import run_cli

if __name__ == "__main__":
    sys.exit(run_cli(main, prog="benchmark.py"))
