#!/usr/bin/env python
"""Peak RSS of the demo (and so of the evaluation path: same tracking, pasting and RLE code) by frame size; prints
one JSON line. Run one size per process (library code: ``stmask_d2.engine.frame_size_memory``):

    python tools/frame_size_memory.py --size 1000 [--output-video] [--opts KEY VALUE ...]
    python tools/frame_size_memory.py --size 4000
    python tools/frame_size_memory.py --size 4000 --eval   # the evaluation path: model.inference_video
"""
import sys

from stmask_d2.engine.frame_size_memory import main

if __name__ == "__main__":
    sys.exit(main())
