#!/usr/bin/env python
"""Train and evaluate STMask with Detectron2.

    python train_net.py --config-file configs/youtubevis_2019/STMask_R50_DCN_ada_TF.yaml --num-gpus 8
    python train_net.py --config-file ... --eval-only MODEL.WEIGHTS output/model_final.pth
    python train_net.py --config-file ... --resume                      # continue from OUTPUT_DIR/last_checkpoint
    python train_net.py --register-ytvis my_train my/train.json my/JPEGImages \\
        --config-file configs/youtubevis_2019/STMask_R50_DCN_ada_TF.yaml DATASETS.TRAIN '("my_train",)'

Several machines: add --num-machines N --machine-rank R --dist-url tcp://HOST:PORT (Detectron2's `launch`).
Several CPU processes (gloo): --num-gpus N MODEL.DEVICE cpu [--dist-url auto].

Bad input (config typo, unregistered or malformed dataset, missing / corrupt weights, unwritable OUTPUT_DIR) is
reported as one line on stderr with exit code 2; STMASK_DEBUG=1 shows the traceback. Other errors keep theirs.
"""
import os
import sys

from detectron2.engine import default_argument_parser
from detectron2.evaluation import verify_results
from detectron2.utils import comm

import stmask_d2
from stmask_d2.data import add_register_ytvis_argument
from stmask_d2.engine import AtomicDetectionCheckpointer, STMaskTrainer, setup_cfg
from stmask_d2.engine.errors import is_user_error, one_line
from stmask_d2.engine.launch import launch
from stmask_d2.engine.trainer import build_cfg

stmask_d2.register_all()  # the model parts and the builtin dataset splits

USER_ERROR_EXIT_CODE = 2


def main(args):
    cfg = setup_cfg(args)
    if args.eval_only:
        if cfg.TEST.AUG.ENABLED:
            raise NotImplementedError("Test-time augmentation is not supported by STMask (set TEST.AUG.ENABLED False).")
        model = STMaskTrainer.build_model(cfg)
        AtomicDetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=args.resume
        )
        res = STMaskTrainer.test(cfg, model)
        verify_results(cfg, res)
        return res
    trainer = STMaskTrainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def get_parser():
    parser = default_argument_parser()
    add_register_ytvis_argument(parser)
    return parser


def _debug():
    return os.environ.get("STMASK_DEBUG", "") not in ("", "0")


def _report_user_error(e):
    print(f"train_net.py: error: {one_line(e)}", file=sys.stderr, flush=True)


def _worker(args):
    """``main`` in a process started by ``launch``: a user error prints one line (rank 0) and exits with code 2
    instead of a traceback per process."""
    try:
        return main(args)
    except Exception as e:
        if _debug() or not is_user_error(e):
            raise
        if comm.get_rank() == 0:
            _report_user_error(e)
        sys.exit(USER_ERROR_EXIT_CODE)


def cli(argv=None):
    args = get_parser().parse_args(argv)
    world_size = args.num_gpus * args.num_machines
    try:
        cfg = build_cfg(args)  # config errors before any process is started
        launch(
            _worker if world_size > 1 else main,
            args.num_gpus,
            num_machines=args.num_machines,
            machine_rank=args.machine_rank,
            dist_url=args.dist_url,
            args=(args,),
            device=cfg.MODEL.DEVICE,
        )
    except Exception as e:
        if _debug():
            raise
        if is_user_error(e):
            _report_user_error(e)
            sys.exit(USER_ERROR_EXIT_CODE)
        import torch.multiprocessing as mp

        if isinstance(e, mp.ProcessExitedException) and e.exit_code == USER_ERROR_EXIT_CODE:
            sys.exit(USER_ERROR_EXIT_CODE)  # a worker already printed the one-line message
        raise


if __name__ == "__main__":
    cli()
