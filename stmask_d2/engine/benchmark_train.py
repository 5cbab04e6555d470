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

    python tools/benchmark_train_step.py [--config-file configs/synthetic/STMask_R18_synthetic_TF.yaml]
        [--steps 5] [--warmup 2] [--rounds 2] [--threads 2] [--compare adamw_unfused+dcn_grid_sample,amp]
        [--no-calibration] [--opts KEY VALUE ...]

A script that prints numbers; it never asserts timings.
"""
import argparse
import itertools
import os
import statistics
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
    from detectron2.data import DatasetCatalog

    from ..data import register_ytvis_instances
    from ..data.synthetic import SHAPES, make_synthetic_vis
    from .trainer import STMaskTrainer

    height = int(min(cfg.INPUT.MIN_SIZE_TRAIN))
    width = int(cfg.INPUT.MAX_SIZE_TRAIN) if cfg.INPUT.MAX_SIZE_TRAIN > 0 else height * 16 // 9
    json_file = make_synthetic_vis(folder, num_videos=4, num_frames=6, height=height, width=width,
                                   num_categories=min(int(cfg.MODEL.STMASK.NUM_CLASSES), len(SHAPES)), seed=0)
    name = f"_benchmark_train_step_{os.getpid()}"
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
    register_ytvis_instances(name, {}, json_file, os.path.join(folder, "JPEGImages"))
    data_cfg = cfg.clone()
    data_cfg.defrost()
    data_cfg.DATASETS.TRAIN = (name,)
    data_cfg.DATALOADER.NUM_WORKERS = 0
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


def time_steps(settings, batches, steps, warmup):
    """Time training steps of several settings on the same batches, interleaved step by step so that a drift of
    the machine's speed hits every setting alike.

    Args:
        settings: {name: (cfg, impls)}, impls as :func:`_variant_opts` returns (None: the defaults).
        batches: the batches every setting steps through (cycled).
        steps, warmup: timed steps per setting after ``warmup`` untimed ones (each setting's own model and
            optimizer, built first from the same seed).
    Returns:
        {name: (median seconds per step, total loss of its last step)}.
    """
    from detectron2.utils.events import EventStorage

    loops = {}
    for name, (cfg, impls) in settings.items():
        prev = _use_impls(impls)
        try:
            loops[name] = _build_loop(cfg, batches)
        finally:
            _use_impls(prev)
    names = list(settings)
    times = {n: [] for n in names}
    storages = {n: EventStorage(0) for n in names}
    for i in range(warmup + steps):
        order = names[i % len(names):] + names[:i % len(names)]  # who goes first rotates
        for name in order:
            loop, storage = loops[name], storages[name]
            prev = _use_impls(settings[name][1])
            try:
                with storage:
                    loop.storage = storage
                    loop.iter = storage.iter = i
                    start = time.perf_counter()
                    loop.run_step()
                    elapsed = time.perf_counter() - start
            finally:
                _use_impls(prev)
            if i >= warmup:
                times[name].append(elapsed)
    out = {}
    for name in names:
        st = storages[name]
        loss = st.history("total_loss").latest() if "total_loss" in st.histories() else float("nan")
        out[name] = (statistics.median(times[name]), float(loss))
    return out


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
    times = {k: [] for k in cfgs}
    losses = {}
    with tempfile.TemporaryDirectory(prefix="stmask_train_step_") as folder:
        batches = make_batches(cfg, args.warmup + args.steps, folder)
        for _ in range(args.rounds):
            for name, (t, loss) in time_steps(cfgs, batches, args.steps, args.warmup).items():
                times[name].append(t)
                losses[name] = loss
    ref = statistics.median(times["configured"])
    print(f"{'setting':40s} {'s/step':>8s} {'/ configured':>13s} {'last loss':>10s}")
    for name in cfgs:
        t = statistics.median(times[name])
        print(f"{name:40s} {t:8.3f} {t / ref:13.3f} {losses[name]:10.4f}")
    return 0


def main(argv=None):
    """``tools/benchmark_train_step.py``; returns the exit code."""
    return run_cli(_benchmark_train_step, argv, prog="benchmark_train_step.py")

