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
import argparse
import logging
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from stmask_d2.engine.errors import is_user_error, one_line  # noqa: E402
from stmask_d2.engine.released_checkpoint import convert_checkpoint  # noqa: E402


def get_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("input", metavar="IN.pth", help="checkpoint downloaded from the authors' links")
    p.add_argument("output", metavar="OUT.pth", help="Detectron2 checkpoint to write (for MODEL.WEIGHTS)")
    p.add_argument("--config", metavar="CONFIG",
                   help="config the output is for (default: the configs/released/ config of the detected variant); "
                        "with it, parts that do not fit are left out with a warning (initialisation weights)")
    return p


def main(argv=None):
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="WARNING: %(message)s")
    t0 = time.perf_counter()
    try:
        if os.path.abspath(args.input) == os.path.abspath(args.output):
            raise ValueError("OUT.pth must differ from IN.pth (the authors' file is kept unchanged).")
        res = convert_checkpoint(args.input, args.output, args.config)
    except Exception as e:  # user errors (incl. an unwritable OUT.pth): one line, exit 2
        if not (is_user_error(e) or isinstance(e, (ValueError, OSError))):
            raise
        print(f"convert_stmask_checkpoint: {one_line(e)}", file=sys.stderr)
        return 2
    cfg = os.path.relpath(res["config"])
    status = "exact match" if res["exact"] else (
        f"initialisation: {len(res['dropped'])} tensors left out, {len(res['missing'])} parameters not initialised")
    print(f"{args.input}: {res['variant'].describe()} -> {args.output} ({len(res['kept'])} tensors, {status}, "
          f"{time.perf_counter() - t0:.1f} s)")
    opts = " ".join(res["opts"] + ["MODEL.WEIGHTS", args.output])
    print(f"Use it with: --config-file {cfg} --opts {opts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
