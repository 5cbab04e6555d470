"""Training-step benchmark (library code of ``tools/benchmark_train_step.py``): the time of one optimisation step
of a config (forward, losses, backward, optimizer; data loading excluded) against variants, in the same run.

Every setting starts from the same initial weights (``SEED``) and steps through the same pre-loaded batches of a
small synthetic YouTube-VIS dataset generated at the config's training size (in a temporary folder). The step is the
trainer's own (``NonFiniteSkippingTrainer`` / ``NonFiniteSkippingAMPTrainer`` with the config's optimizer), so what
is timed is what ``train_net.py`` runs. Each round builds every setting's model and optimizer, then the settings
take turns one step at a time (who goes first rotates), so that the machine's speed drifting during the run (seen
here: the same step 0.38-0.46 s within minutes) hits all settings alike; the median step time of each over the
``--rounds`` rounds is printed, with the loss after its last step (the fp32 variants reach the same loss to float
tolerance).

Variants (``--compare``, "+" combines): ``adamw_unfused`` (SOLVER.ADAMW_FUSED False), ``clip_per_param``
(SOLVER.CLIP_GRADIENTS.BATCHED False: Detectron2's one clip_grad_norm_ per parameter), ``dcn_gather_autograd``
(the CPU deformable conv's gather with autograd's backward of embedding_bag), ``dcn_grid_sample`` /
``dcn_torchvision`` (the CPU deformable conv as grid_sample + matmul, or torchvision's op), ``amp``
(SOLVER.AMP.ENABLED True: bf16 autocast on CPU, fp16 on CUDA), ``fp32`` (SOLVER.AMP.ENABLED False),
``head_per_level`` (MODEL.STMASK.HEAD.PACK_LEVELS False: the head level by level instead of on the packed levels),
``roi_align_torchvision`` (the TF head's RoIAlign as torchvision's CPU op instead of the separable form),
``max_pool_torch`` (the stem's max pool as ``F.max_pool2d`` on the contiguous map instead of
``stmask_d2.layers.max_pool2d``).

``--against CHECKOUT`` adds another stmask_d2 checkout's step (e.g. ``git worktree add /tmp/base 67b281d``, the
commit issue 12 was filed at) as one more setting: a subprocess (:mod:`stmask_d2.engine.train_step_worker`) builds
that checkout's model and step for its own copy of the config (same path, ``--against-opts`` added, e.g.
"SOLVER.AMP.ENABLED False") on the same synthetic data and takes its turns like the others, one computing at a
time. Besides the medians, every setting's median ratio of paired steps (same batch, same turn) to the configured
step is printed: on a machine whose speed drifts from step to step it is the steadier figure.

    python tools/benchmark_train_step.py [--config-file configs/synthetic/STMask_R18_synthetic_TF.yaml]
        [--steps 5] [--warmup 2] [--rounds 2] [--threads 2] [--compare adamw_unfused+dcn_grid_sample,amp]
        [--against CHECKOUT [--against-opts "KEY VALUE ..."]] [--no-calibration] [--opts KEY VALUE ...]

A script that prints numbers; it never asserts timings.
"""
import argparse
import itertools
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

from ..utils.errors import InputError, run_cli
from .setup import REPO_ROOT as ROOT  # the repository

__all__ = ["VARIANTS", "get_parser", "make_batches", "time_steps", "main"]

DEFAULT_CONFIG = os.path.join(ROOT, "configs", "synthetic", "STMask_R18_synthetic_TF.yaml")
VARIANTS = ("adamw_unfused", "clip_per_param", "dcn_gather_autograd", "dcn_grid_sample", "dcn_torchvision", "amp",
            "fp32", "head_per_level", "roi_align_torchvision", "max_pool_torch")


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", default=DEFAULT_CONFIG, metavar="FILE",
                   help="training config (default: configs/synthetic/STMask_R18_synthetic_TF.yaml)")
    p.add_argument("--steps", type=int, default=5, help="timed steps per setting and round")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps before them (oneDNN primitives, caches)")
    p.add_argument("--rounds", type=int, default=2,
                   help="rounds, each with fresh models of every setting taking turns step by step")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (0: leave as is)")
    p.add_argument("--compare", default="adamw_unfused+dcn_grid_sample,amp", metavar="V1,V2+V3",
                   help=f"variants against the configured step, '+' combines ({', '.join(VARIANTS)}; '' for none)")
    p.add_argument("--against", default=None, metavar="CHECKOUT",
                   help="another stmask_d2 checkout (e.g. a git worktree of an older commit) whose training step "
                        "of the same config joins the comparison")
    p.add_argument("--against-opts", default="", metavar='"KEY VALUE ..."',
                   help="config overrides for the --against step (e.g. \"SOLVER.AMP.ENABLED False\")")
    p.add_argument("--no-calibration", action="store_true", help="do not time the ResNet-18 calibration")
    p.add_argument("--opts", default=[], nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    return p


def _parse_variants(text):
    variants = [v.strip() for v in text.split(",") if v.strip()]
    bad = sorted({part for v in variants for part in v.split("+")} - set(VARIANTS))
    if bad:
        raise InputError(f"--compare: unknown variant(s) {bad}; choose among {', '.join(VARIANTS)} ('+' combines).")
    return variants


def _variant_opts(variant):
    """(config KEY VALUE list, CPU implementations {"dcn": deformable conv, "roi_align": RoIAlign, "max_pool": max
    pool} or None for the defaults) of a '+'-combined variant."""
    opts, impls = [], {"dcn": None, "roi_align": None, "max_pool": None}
    for part in variant.split("+") if variant else []:
        if part == "adamw_unfused":
            opts += ["SOLVER.ADAMW_FUSED", False]
        elif part == "clip_per_param":
            opts += ["SOLVER.CLIP_GRADIENTS.BATCHED", False]
        elif part == "head_per_level":
            opts += ["MODEL.STMASK.HEAD.PACK_LEVELS", False]
        elif part in ("amp", "fp32"):
            opts += ["SOLVER.AMP.ENABLED", part == "amp"]
        elif part == "roi_align_torchvision":
            impls["roi_align"] = "torchvision"
        elif part == "max_pool_torch":
            impls["max_pool"] = "torch"
        elif part.startswith("dcn_"):
            impls["dcn"] = part[4:]
    return opts, impls


def make_batches(cfg, count, folder):
    """``count`` training batches of ``cfg`` (its mapper and batch size) from a synthetic dataset written to
    ``folder`` at the config's training size."""
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.utils.env import seed_all_rng

    from ..data import register_ytvis_instances
    from ..data.synthetic import SHAPES, make_synthetic_vis
    from .trainer import STMaskTrainer

    height = int(min(cfg.INPUT.MIN_SIZE_TRAIN))
    width = int(cfg.INPUT.MAX_SIZE_TRAIN) if cfg.INPUT.MAX_SIZE_TRAIN > 0 else height * 16 // 9
    json_file = make_synthetic_vis(folder, num_videos=4, num_frames=6, height=height, width=width,
                                   num_categories=min(int(cfg.MODEL.STMASK.NUM_CLASSES), len(SHAPES)), seed=0)
    name = f"_benchmark_train_step_{os.getpid()}"
    if name in DatasetCatalog.list():  # a second run in this process: its data is in a new folder
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    register_ytvis_instances(name, {}, json_file, os.path.join(folder, "JPEGImages"))
    data_cfg = cfg.clone()
    data_cfg.defrost()
    data_cfg.DATASETS.TRAIN = (name,)
    data_cfg.DATALOADER.NUM_WORKERS = 0
    seed_all_rng(cfg.SEED if cfg.SEED >= 0 else 0)  # the same batches in every process (--against)
    loader = iter(STMaskTrainer.build_train_loader(data_cfg))
    return [next(loader) for _ in range(count)]


def _build_loop(cfg, batches):
    """The trainer's step object (model, optimizer, non-finite skip, AMP) of ``cfg`` over ``batches`` (cycled)."""
    import torch
    from detectron2.modeling import build_model

    from .train_loop import NonFiniteSkippingAMPTrainer, NonFiniteSkippingTrainer
    from .trainer import STMaskTrainer

    torch.manual_seed(cfg.SEED if cfg.SEED >= 0 else 0)
    model = build_model(cfg)
    model.train()
    optimizer = STMaskTrainer.build_optimizer(cfg, model)
    data = itertools.cycle(batches)
    if cfg.SOLVER.AMP.ENABLED:
        return NonFiniteSkippingAMPTrainer(model, data, optimizer, precision=cfg.SOLVER.AMP.PRECISION)
    return NonFiniteSkippingTrainer(model, data, optimizer)


def _use_impls(impls):
    """Set the CPU implementations of ``impls`` ({"dcn", "roi_align", "max_pool"}: name or None for the default);
    returns the previous ones (to restore with this function)."""
    from ..layers.deform_conv import CPU_IMPL as DCN_IMPL
    from ..layers.pooling import CPU_IMPL as MAX_POOL_IMPL
    from ..layers.roi_align import CPU_IMPL as ROI_ALIGN_IMPL

    impls = impls or {}
    return {key: switch.select(impls.get(key) or switch.default)
            for key, switch in (("dcn", DCN_IMPL), ("roi_align", ROI_ALIGN_IMPL), ("max_pool", MAX_POOL_IMPL))}


WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "train_step_worker.py")


class RemoteStep:
    """Another checkout's training step in a subprocess (:mod:`stmask_d2.engine.train_step_worker`), timed there.

    Args:
        checkout: root of the other stmask_d2 checkout.
        config: its config file.
        json_file, image_root: the synthetic training data (YouTube-VIS JSON and frames).
        threads: torch threads of the subprocess (0: its default).
        batches: batches it preloads and cycles through.
        opts: config overrides (KEY VALUE list).
    Raises:
        InputError (one line): not a checkout, no such config, or the subprocess could not build the step.
    """

    def __init__(self, checkout, config, json_file, image_root, threads, batches, opts=()):
        if not os.path.isdir(os.path.join(checkout, "stmask_d2")):
            raise InputError(f"--against {checkout!r}: not a stmask_d2 checkout (no stmask_d2/ folder); make one "
                             f"with e.g. 'git worktree add /tmp/base COMMIT'.")
        if not os.path.isfile(config):
            raise InputError(f"--against {checkout!r}: it has no config {config!r}; pass a --config-file both "
                             f"checkouts have.")
        self.checkout = checkout
        self._log = tempfile.TemporaryFile(mode="w+")
        # -P: not the worker's own folder first on the import path; PYTHONPATH: the other checkout's stmask_d2
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [os.path.abspath(checkout)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
        self._proc = subprocess.Popen(
            [sys.executable, "-P", WORKER, checkout, json_file, image_root, config, str(threads), str(batches),
             *[str(o) for o in opts]],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, text=True, cwd=checkout, env=env)
        line = self._line()
        if not line.startswith("ready"):
            self.close()
            raise InputError(f"--against {checkout!r}: its training step could not be built: {line}")

    def _line(self):
        line = self._proc.stdout.readline().strip()
        if line and not line.startswith("error"):
            return line
        self._proc.wait()
        if not line:
            self._log.seek(0)
            tail = [s for s in self._log.read().splitlines() if s.strip()]
            line = "error " + (tail[-1] if tail else f"exit code {self._proc.returncode}")
        return line

    def timed_step(self):
        """One step there: (seconds, total loss)."""
        self._proc.stdin.write("step\n")
        self._proc.stdin.flush()
        line = self._line()
        if line.startswith("error"):
            raise InputError(f"--against {self.checkout!r}: its training step failed: {line[6:]}")
        seconds, loss = line.split()
        return float(seconds), float(loss)

    def close(self):
        if self._proc.poll() is None:
            self._proc.stdin.close()
            try:
                self._proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        self._log.close()


def time_steps(settings, batches, steps, warmup, remotes=None):
    """Time training steps of several settings on the same batches, interleaved step by step so that a drift of
    the machine's speed hits every setting alike.

    Args:
        settings: {name: (cfg, impls)}, impls as :func:`_variant_opts` returns (None: the defaults).
        batches: the batches every setting steps through (cycled).
        steps, warmup: timed steps per setting after ``warmup`` untimed ones (each setting's own model and
            optimizer, built first from the same seed).
        remotes: optional {name: callable returning a :class:`RemoteStep`}: further settings stepping in
            subprocesses (built for this call, closed at its end).
    Returns:
        {name: (list of step seconds in turn order, total loss of its last step)}.
    """
    from detectron2.utils.events import EventStorage

    loops = {}
    for name, (cfg, impls) in settings.items():
        prev = _use_impls(impls)
        try:
            loops[name] = _build_loop(cfg, batches)
        finally:
            _use_impls(prev)
    remote_loops = {}
    try:
        for name, make in (remotes or {}).items():
            remote_loops[name] = make()
        names = list(settings) + list(remote_loops)
        times = {n: [] for n in names}
        losses = {n: float("nan") for n in names}
        storages = {n: EventStorage(0) for n in settings}
        for i in range(warmup + steps):
            order = names[i % len(names):] + names[:i % len(names)]  # who goes first rotates
            for name in order:
                if name in remote_loops:
                    elapsed, losses[name] = remote_loops[name].timed_step()
                else:
                    elapsed = _local_step(loops[name], storages[name], settings[name][1], i)
                if i >= warmup:
                    times[name].append(elapsed)
    finally:
        for remote in remote_loops.values():
            remote.close()
    for name in settings:
        st = storages[name]
        if "total_loss" in st.histories():
            losses[name] = float(st.history("total_loss").latest())
    return {name: (times[name], losses[name]) for name in names}


def _local_step(loop, storage, impls, i):
    """Step ``i`` of an in-process setting with its CPU implementations; returns its seconds."""
    prev = _use_impls(impls)
    try:
        with storage:
            loop.storage = storage
            loop.iter = storage.iter = i
            start = time.perf_counter()
            loop.run_step()
            return time.perf_counter() - start
    finally:
        _use_impls(prev)


def _benchmark_train_step(argv):
    args = get_parser().parse_args(argv)
    if args.steps < 1 or args.warmup < 0 or args.rounds < 1:
        raise InputError("--steps and --rounds must be >= 1 and --warmup >= 0.")
    variants = _parse_variants(args.compare)
    import torch

    from .. import register_all
    from ..utils.calibration import format_calibration, resnet18_calibration
    from .setup import get_stmask_cfg

    if not args.no_calibration:
        print(format_calibration(resnet18_calibration()), flush=True)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    register_all()
    base = ["MODEL.DEVICE", "cpu", *args.opts]
    cfg = get_stmask_cfg(args.config_file, base, validate=True, training=True)
    cfgs = {"configured": (cfg, None)}
    for v in variants:
        opts, impls = _variant_opts(v)
        cfgs[v] = (get_stmask_cfg(args.config_file, base + opts, validate=True, training=True), impls)
    print(f"training step of {args.config_file}: batch {cfg.SOLVER.IMS_PER_BATCH}, input "
          f"{min(cfg.INPUT.MIN_SIZE_TRAIN)}/{cfg.INPUT.MAX_SIZE_TRAIN}, optimizer {cfg.SOLVER.OPTIMIZER} "
          f"(ADAMW_FUSED {cfg.SOLVER.ADAMW_FUSED}), AMP {cfg.SOLVER.AMP.ENABLED}, "
          f"torch threads {torch.get_num_threads()}; {args.rounds} round(s) of {args.warmup}+{args.steps} steps per "
          f"setting, the settings alternating step by step", flush=True)
    remotes = {}
    if args.against:
        checkout = os.path.abspath(args.against)
        rel = os.path.relpath(os.path.abspath(args.config_file), ROOT)
        config = os.path.join(checkout, rel) if not rel.startswith("..") else os.path.abspath(args.config_file)
        against_opts = shlex.split(args.against_opts)
        if len(against_opts) % 2:
            raise InputError(f"--against-opts {args.against_opts!r}: KEY VALUE pairs expected.")
        remotes[f"against {os.path.basename(checkout.rstrip(os.sep))}"] = (checkout, config, against_opts)
        print(f"against: {checkout} ({config}{', ' + args.against_opts if args.against_opts else ''})", flush=True)
    times = {k: [] for k in list(cfgs) + list(remotes)}
    paired = {k: [] for k in times}
    losses = {}
    with tempfile.TemporaryDirectory(prefix="stmask_train_step_") as folder:
        batches = make_batches(cfg, args.warmup + args.steps, folder)
        makers = {name: (lambda c=c, f=f, o=o: RemoteStep(
            c, f, os.path.join(folder, "train.json"), os.path.join(folder, "JPEGImages"), args.threads,
            args.warmup + args.steps, o)) for name, (c, f, o) in remotes.items()}
        for _ in range(args.rounds):
            result = time_steps(cfgs, batches, args.steps, args.warmup, makers)
            for name, (ts, loss) in result.items():
                times[name].append(statistics.median(ts))
                paired[name] += [t / r for t, r in zip(ts, result["configured"][0])]
                losses[name] = loss
    ref = statistics.median(times["configured"])
    print(f"{'setting':40s} {'s/step':>8s} {'/ configured':>13s} {'paired':>8s} {'last loss':>10s}")
    for name in times:
        t = statistics.median(times[name])
        print(f"{name:40s} {t:8.3f} {t / ref:13.3f} {statistics.median(paired[name]):8.3f} {losses[name]:10.4f}")
    return 0


def main(argv=None):
    """``tools/benchmark_train_step.py``; returns the exit code."""
    return run_cli(_benchmark_train_step, argv, prog="benchmark_train_step.py")

