#!/usr/bin/env python
"""The main job (`make demo`): synthetic data -> training -> evaluation -> demo video, on CPU in minutes.

    python tools/main_job.py [--iters N] [--retrain] [--output output] [KEY VALUE ...]

The steps and their outputs are described in ``stmask_d2.engine.main_job`` (the library code).
"""
import sys

from stmask_d2.engine.main_job import main

if __name__ == "__main__":
    sys.exit(main())
