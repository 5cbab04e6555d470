#!/usr/bin/env python
"""Memory of online inference on a long video stream: peak / current RSS and the tracker's memory size
(library code: ``stmask_d2.engine.long_video``).

    python tools/long_video_memory.py --frames 2000 [--height 64 --width 96] [--opts KEY VALUE ...]
"""
import sys

from stmask_d2.engine.long_video import main
from stmask_d2.utils.errors import run_cli

if __name__ == "__main__":
    sys.exit(run_cli(main, prog="long_video_memory.py"))
