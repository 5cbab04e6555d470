#!/usr/bin/env python
"""Export STMask's frame network (backbone + FPN, prediction head, ProtoNet; the TF head as a second graph) to
TorchScript or ONNX for one input size; tracking and post-processing stay in Python (``demo/demo.py --exported``).

    python tools/export_model.py --config-file configs/youtubevis_2019/STMask_R50_DCN_ada_TF.yaml \\
        --format onnx --output output/stmask.onnx [--height 384 --width 640] [--check] --opts MODEL.WEIGHTS model.pth

Library code and the options: ``stmask_d2.engine.export_model``. Bad input or an operator that cannot be exported:
one line on stderr, exit code 2.
"""
import sys

from stmask_d2.engine.export_model import main

if __name__ == "__main__":
    sys.exit(main())
