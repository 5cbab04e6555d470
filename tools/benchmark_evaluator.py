#!/usr/bin/env python
"""Time the YouTube-VIS evaluator on a large synthetic case (prints numbers; not a test). Library code and the
options: ``stmask_d2.engine.benchmark_evaluator``.

    python tools/benchmark_evaluator.py [--videos 300] [--frames 36] [--hota] [--process]
"""
import sys

from stmask_d2.engine.benchmark_evaluator import main

if __name__ == "__main__":
    sys.exit(main())
