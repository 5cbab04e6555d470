#!/usr/bin/env python
"""Run the rows of a paper ablation table for N seeds with one budget and print mean ± std beside the paper's numbers
(library: ``stmask_d2.engine.ablation``; resumable: finished runs are skipped).

Synthetic data (generated once; small-model variants of the rows on the small synthetic base config)::

    python tools/ablation.py --table table4 --synthetic output/ablation_data --videos 160 --valid-videos 40 \\
        --motion-scale 2 --object-blur 0.5 --occluders 1 --seeds 0 1 2 --iters 400 --pretrain-iters 600 \\
        --output output/ablation_table4

Inference-time experiments on finished runs (evaluation only, e.g. a TF model evaluated without TF)::

    python tools/ablation.py --table table4 --rows "+FCA +FCB(ada) +TF" ...same data flags... \
        --eval-variant no-TF-at-test MODEL.STMASK.TF.ENABLED False

Any registered dataset pair (``--register-ytvis NAME JSON ROOT`` for your own)::

    python tools/ablation.py --table table5 --train ytvis_2019_train_sub --test ytvis_2019_valid_sub \\
        --full-configs --init yolact_plus_base_converted.pth --iters 20000 --seeds 0 1 2 --output output/t5
"""
import argparse
import functools
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # this checkout's stmask_d2


def main(argv=None):
    from stmask_d2.engine.ablation import SMALL_BASE, TABLES

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--table", required=True, choices=sorted(TABLES))
    p.add_argument("--rows", nargs="+", default=None, help="row names to run (default: all rows of the table)")
    p.add_argument("--list-rows", action="store_true", help="print the table's rows and exit")
    p.add_argument("--output", default=None, help="output folder (default output/ablation_<table>)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--iters", type=int, default=400, help="fine-tuning iterations per run")
    p.add_argument("--pretrain-iters", type=int, default=0,
                   help="frame-level pretraining on the training frames as images first (0: none)")
    p.add_argument("--init", default=None, help="checkpoint every row (or the pretraining) starts from")
    p.add_argument("--init-keep", choices=("released", "all"), default="released",
                   help="what rows take from the init / pretrained weights: 'released' = backbone, FPN, ProtoNet and "
                        "the head's upfeature conv, as the authors' init_weights (default); 'all' = every parameter "
                        "whose shape matches")
    d = p.add_argument_group("data: a registered train / test pair, or the synthetic generator")
    d.add_argument("--train", default=None, help="registered training dataset")
    d.add_argument("--test", default=None, help="registered held-out dataset")
    d.add_argument("--register-ytvis", nargs=3, action="append", metavar=("NAME", "JSON", "IMAGE_ROOT"), default=[])
    d.add_argument("--synthetic", default=None, metavar="DIR", help="generate the synthetic data into DIR (once)")
    d.add_argument("--videos", type=int, default=160)
    d.add_argument("--valid-videos", type=int, default=40, help="held-out videos (>= 40 for the issue's protocol)")
    d.add_argument("--frames", type=int, default=12)
    d.add_argument("--height", type=int, default=128)
    d.add_argument("--width", type=int, default=224)
    d.add_argument("--data-seed", type=int, default=1)
    d.add_argument("--motion-scale", type=float, default=2.0)
    d.add_argument("--object-blur", type=float, default=0.5)
    d.add_argument("--occluders", type=int, default=1)
    m = p.add_argument_group("model")
    m.add_argument("--base-config", default=SMALL_BASE, help="small base config the rows' keys are applied to")
    m.add_argument("--full-configs", action="store_true", help="use the rows' real configs unchanged")
    m.add_argument("--threads", type=int, default=2, help="torch threads per run (runs are sequential)")
    p.add_argument("--eval-variant", nargs="+", action="append", default=[], metavar="NAME [KEY VALUE ...]",
                   help="also evaluate every finished run (no training) with these options, shown as the row "
                        "'<row> [NAME]'; repeatable, e.g. --eval-variant no-TF-at-test MODEL.STMASK.TF.ENABLED False")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="extra KEY VALUE pairs for every run")
    args = p.parse_args(argv)

    if args.list_rows:
        for r in TABLES[args.table]:
            print(f"{r['name']!r:28} {r['config']}  paper {r['paper']}")
        return 0
    os.environ.setdefault("DETECTRON2_DATASETS", os.path.join(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), "datasets"))
    from stmask_d2.engine.ablation import prepare_synthetic, run_table

    register = [tuple(r) for r in args.register_ytvis]
    try:
        if args.synthetic:
            register += prepare_synthetic(args.synthetic, num_videos=args.videos, valid_videos=args.valid_videos,
                                          seed=args.data_seed, num_frames=args.frames, height=args.height,
                                          width=args.width, motion_scale=args.motion_scale,
                                          object_blur=args.object_blur, occluders=args.occluders)
            train, test = register[-2][0], register[-1][0]
            size_opts = ["INPUT.MIN_SIZE_TRAIN", (args.height,), "INPUT.MAX_SIZE_TRAIN", args.width,
                         "INPUT.MIN_SIZE_TEST", args.height, "INPUT.MAX_SIZE_TEST", args.width]
        elif args.train and args.test:
            train, test, size_opts = args.train, args.test, []
        else:
            p.exit(2, "ablation.py: error: give --synthetic DIR, or --train and --test (registered dataset names)\n")
        if args.init and not os.path.isfile(args.init):
            p.exit(2, f"ablation.py: error: --init {args.init!r} does not exist\n")
        md = run_table(args.table, args.output or os.path.join("output", f"ablation_{args.table}"), train=train,
                       test=test, register=register, seeds=args.seeds, iters=args.iters,
                       pretrain_iters=args.pretrain_iters, init=args.init, rows=args.rows,
                       base_config=args.base_config, full_configs=args.full_configs,
                       opts=size_opts + list(args.opts), threads=args.threads, init_keep=args.init_keep,
                       eval_variants=[(v[0], v[1:]) for v in args.eval_variant],
                       print_fn=functools.partial(print, flush=True))
    except ValueError as e:
        p.exit(2, f"ablation.py: error: {e}\n")
    except RuntimeError as e:  # a run failed: its log is in its folder; finished runs are kept (re-run resumes)
        p.exit(1, f"ablation.py: {e}\n")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
