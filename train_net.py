#!/usr/bin/env python
"""Train and evaluate STMask with Detectron2.

    python train_net.py --config-file configs/youtubevis_2019/STMask_R50_DCN_ada_TF.yaml --num-gpus 8
    python train_net.py --config-file ... --eval-only MODEL.WEIGHTS output/model_final.pth
    python train_net.py --config-file ... --resume                      # continue from OUTPUT_DIR/last_checkpoint
    python train_net.py --register-ytvis my_train my/train.json my/JPEGImages \\
        --config-file configs/youtubevis_2019/STMask_R50_DCN_ada_TF.yaml DATASETS.TRAIN '("my_train",)'

Several machines: add --num-machines N --machine-rank R --dist-url tcp://HOST:PORT (Detectron2's `launch`).
Several CPU processes (gloo): --num-gpus N MODEL.DEVICE cpu [--dist-url auto].

Bad input (config typo or value out of range, unregistered or malformed dataset, missing frame files, missing /
corrupt / unsafe weights, unwritable OUTPUT_DIR, DDP port in use) is reported as one line on stderr with exit
code 2 before anything is written; STMASK_DEBUG=1 shows the traceback. Other errors keep theirs.

A trained model is never overwritten by accident: a new run into an OUTPUT_DIR that holds model_final.pth or
checkpoints is refused, and so is a --resume whose last_checkpoint is missing, empty or unreadable; pass
--start-over to train from MODEL.WEIGHTS over them. SIGTERM removes the temporaries being written.
"""
import os
import socket
import sys
from urllib.parse import urlparse

from detectron2.engine import default_argument_parser
from detectron2.evaluation import verify_results
from detectron2.utils import comm

import stmask_d2
from stmask_d2.data import add_register_ytvis_argument
from stmask_d2.engine import AtomicDetectionCheckpointer, STMaskTrainer, setup_cfg
from stmask_d2.engine.checkpoint import check_output_dir, check_weights_file
from stmask_d2.engine.errors import ConfigError, is_user_error, one_line
from stmask_d2.engine.launch import launch
from stmask_d2.engine.trainer import build_cfg, check_datasets
from stmask_d2.utils.io import install_sigterm_handler

stmask_d2.register_all()  # the model parts and the builtin dataset splits

USER_ERROR_EXIT_CODE = 2


def main(args):
    install_sigterm_handler()  # in every process: temporaries being written are removed on SIGTERM
    cfg = setup_cfg(args)
    resume = args.resume and not getattr(args, "start_over", False)
    if args.eval_only:
        if cfg.TEST.AUG.ENABLED:
            raise NotImplementedError("Test-time augmentation is not supported by STMask (set TEST.AUG.ENABLED False).")
        model = STMaskTrainer.build_model(cfg)
        AtomicDetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(cfg.MODEL.WEIGHTS, resume=resume)
        res = STMaskTrainer.test(cfg, model)
        verify_results(cfg, res)
        return res
    trainer = STMaskTrainer(cfg)
    trainer.resume_or_load(resume=resume)
    return trainer.train()


def get_parser():
    parser = default_argument_parser()
    add_register_ytvis_argument(parser)
    parser.add_argument(
        "--start-over", action="store_true",
        help="train from MODEL.WEIGHTS even if OUTPUT_DIR holds a trained model or checkpoints (they are "
             "overwritten), or if --resume cannot find / read its checkpoint",
    )
    return parser


def _local_host(host):
    if host in ("localhost", "127.0.0.1", "::1", "0.0.0.0", ""):
        return True
    try:
        return socket.gethostbyname(host) in ("127.0.0.1", socket.gethostbyname(socket.gethostname()))
    except OSError:
        return False


def check_dist_url(args, world_size):
    """A ``tcp://HOST:PORT`` rendezvous that this process would open (machine rank 0 on this host) must be
    free; otherwise one line with the fix (``--dist-url auto``) instead of a traceback per process."""
    if world_size <= 1 or args.machine_rank != 0 or not args.dist_url or args.dist_url == "auto":
        return
    url = urlparse(args.dist_url)
    if url.scheme != "tcp" or not url.port or not _local_host(url.hostname or ""):
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port in TIME_WAIT is usable: only a listener fails
        try:
            s.bind(("" if url.hostname in ("0.0.0.0", "") else "127.0.0.1", url.port))
        except OSError as e:
            hint = " --dist-url auto" if args.num_machines == 1 else " another free port in --dist-url"
            raise ConfigError(f"--dist-url {args.dist_url}: port {url.port} is already in use ({e.strerror or e}; "
                              f"another training?); pass{hint}.") from None


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
    install_sigterm_handler()
    try:
        check_dist_url(args, world_size)
        cfg = build_cfg(args)  # config errors before any process is started
        check_datasets(cfg, eval_only=args.eval_only)  # malformed annotations, missing / empty frame files
        if cfg.OUTPUT_DIR:
            check_output_dir(cfg.OUTPUT_DIR, resume=args.resume, start_over=args.start_over,
                             eval_only=args.eval_only)
        resuming = args.resume and not args.start_over and cfg.OUTPUT_DIR and os.path.isfile(
            os.path.join(cfg.OUTPUT_DIR, "last_checkpoint"))
        if not resuming:
            check_weights_file(cfg.MODEL.WEIGHTS)  # missing / corrupt / unsafe weights before anything is written
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
