#!/usr/bin/env python
"""Train and evaluate STMask with Detectron2.

    python train_net.py --config-file configs/youtubevis_2019/STMask_R50_DCN_ada_TF.yaml --num-gpus 8
    python train_net.py --config-file ... --eval-only MODEL.WEIGHTS output/model_final.pth
    python train_net.py --config-file ... --resume                      # continue from OUTPUT_DIR/last_checkpoint
    python train_net.py --register-ytvis my_train my/train.json my/JPEGImages \\
        --config-file configs/youtubevis_2019/STMask_R50_DCN_ada_TF.yaml DATASETS.TRAIN '("my_train",)'

Several machines: add --num-machines N --machine-rank R --dist-url tcp://HOST:PORT (Detectron2's `launch`).
"""
import sys

from detectron2.checkpoint import DetectionCheckpointer  # noqa: F401  (re-exported for users' scripts)
from detectron2.engine import default_argument_parser, launch
from detectron2.evaluation import verify_results

import stmask_d2  # noqa: F401  (registers the model parts and datasets)
from stmask_d2.data import add_register_ytvis_argument
from stmask_d2.engine import AtomicDetectionCheckpointer, STMaskTrainer, setup_cfg


def main(args):
    cfg = setup_cfg(args)
    if args.eval_only:
        model = STMaskTrainer.build_model(cfg)
        AtomicDetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=args.resume
        )
        res = STMaskTrainer.test(cfg, model)
        if cfg.TEST.AUG.ENABLED:
            raise NotImplementedError("Test-time augmentation is not supported by STMask.")
        verify_results(cfg, res)
        return res
    trainer = STMaskTrainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def get_parser():
    parser = default_argument_parser()
    add_register_ytvis_argument(parser)
    return parser


def cli(argv=None):
    args = get_parser().parse_args(argv)
    try:
        launch(
            main,
            args.num_gpus,
            num_machines=args.num_machines,
            machine_rank=args.machine_rank,
            dist_url=args.dist_url,
            args=(args,),
        )
    except (FileNotFoundError, KeyError, ValueError) as e:
        # User errors (missing files, misspelt config keys, malformed datasets): one line, no traceback.
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        print(f"train_net.py: error: {msg}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    cli()
