"""Library code of ``train_net.py``: train and evaluate STMask with Detectron2 (see that script's docstring for
the command lines). :func:`cli` runs under the project's one command-line wrapper
(:func:`stmask_d2.utils.errors.run_cli`): bad input is one line on stderr with exit code 2 before anything is
written, ``STMASK_DEBUG=1`` shows the traceback, other errors keep theirs.
"""
import os
import socket
import sys
from urllib.parse import urlparse

from ..utils.errors import (USER_ERROR_EXIT_CODE, ConfigError, debug_enabled, is_user_error, report_user_error,
                            run_cli)
from ..utils.io import install_sigterm_handler

__all__ = ["main", "get_parser", "check_dist_url", "cli", "STMaskTrainer"]

PROG = "train_net.py"


from .. import register_all
from .checkpoint import AtomicDetectionCheckpointer, check_output_dir, check_weights_file
from .launch import launch
from .setup import build_cfg, setup_cfg
from .trainer import STMaskTrainer, check_datasets

register_all()  # the model parts and the builtin dataset splits


def main(args):
    """Train (or, with ``--eval-only``, evaluate) in this process; returns the results of the evaluation."""
    from detectron2.evaluation import verify_results

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
    from detectron2.engine import default_argument_parser

    from ..data import add_register_ytvis_argument

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


def _worker(args):
    """``main`` in a process started by ``launch``: a user error prints one line (rank 0) and exits with code 2
    instead of a traceback per process."""
    from detectron2.utils import comm

    try:
        return main(args)
    except Exception as e:
        if debug_enabled() or not is_user_error(e):
            raise
        if comm.get_rank() == 0:
            report_user_error(e, PROG)
        sys.exit(USER_ERROR_EXIT_CODE)


def _check_then_launch(argv):
    """Every check that can fail on bad input (config, datasets, OUTPUT_DIR, weights, DDP port) before any
    process is started, then Detectron2's ``launch``."""
    args = get_parser().parse_args(argv)
    world_size = args.num_gpus * args.num_machines
    check_dist_url(args, world_size)
    cfg = build_cfg(args)  # config errors before any process is started
    check_datasets(cfg, eval_only=args.eval_only)  # malformed annotations, missing / empty frame files
    if cfg.OUTPUT_DIR:
        check_output_dir(cfg.OUTPUT_DIR, resume=args.resume, start_over=args.start_over, eval_only=args.eval_only)
    resuming = args.resume and not args.start_over and cfg.OUTPUT_DIR and os.path.isfile(
        os.path.join(cfg.OUTPUT_DIR, "last_checkpoint"))
    if not resuming:
        check_weights_file(cfg.MODEL.WEIGHTS)  # missing / corrupt / unsafe weights before anything is written
    import torch.multiprocessing as mp

    try:
        launch(_worker if world_size > 1 else main, args.num_gpus, num_machines=args.num_machines,
               machine_rank=args.machine_rank, dist_url=args.dist_url, args=(args,), device=cfg.MODEL.DEVICE)
    except mp.ProcessExitedException as e:
        if e.exit_code == USER_ERROR_EXIT_CODE and not debug_enabled():
            sys.exit(USER_ERROR_EXIT_CODE)  # a worker already printed the one-line message
        raise


def cli(argv=None):
    """The command line of train_net.py: exits with code 2 after one line on stderr for bad input."""
    install_sigterm_handler()
    code = run_cli(_check_then_launch, argv, prog=PROG)
    if code:
        sys.exit(code)
