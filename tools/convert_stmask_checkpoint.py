#!/usr/bin/env python
"""Convert a checkpoint released by the STMask authors (or a Yolact / Yolact++ COCO checkpoint) into a Detectron2
checkpoint of stmask_d2.

    python tools/convert_stmask_checkpoint.py STMask_plus_resnet50_ada.pth STMask_plus_resnet50_ada_d2.pth
    python tools/convert_stmask_checkpoint.py yolact_plus_base_54_800000.pth init_r101.pth \\
        --config configs/youtubevis_2019/STMask_R101_DCN_ada_TF.yaml

Without --config the variant (R50/R101, FCB none/ali/ada, TF, classes, COCO or video) is detected from the keys and
shapes, the matching ``configs/released/*.yaml`` is chosen, and the output must load into it with zero missing and
zero unexpected keys. With --config (initialisation) whatever does not fit that config is left out and listed in one
warning. The config to use is printed. The files are read with ``torch.load(weights_only=True)``; a file that is not
understood prints one line naming the first unknown key and exits with code 2, writing nothing.
The library code is ``stmask_d2.engine.released_checkpoint``.
"""
import sys

from stmask_d2.engine.released_checkpoint import main

if __name__ == "__main__":
    sys.exit(main())
