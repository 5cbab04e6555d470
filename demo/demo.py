#!/usr/bin/env python
"""STMask demo: online video instance segmentation of a video file, a folder of frames or a webcam.

    python demo/demo.py --config-file configs/youtubevis_2019/STMask_R50_DCN_ada_TF.yaml \\
        --video-input my.mp4 --output out.mp4 --output-json results.json --opts MODEL.WEIGHTS model.pth
    python demo/demo.py --config-file ... --input frames_dir/ --output out_frames/ --fps 6 --opts ...
    python demo/demo.py --config-file ... --webcam --opts MODEL.WEIGHTS model.pth

Every option, the outputs and the error handling are described in ``stmask_d2.engine.demo`` (the library code;
``python demo/demo.py --help`` lists the options). User errors print one line on stderr and exit with code 2.
"""
import sys

from stmask_d2.engine.demo import main, setup_logging

if __name__ == "__main__":
    setup_logging()
    sys.exit(main())
