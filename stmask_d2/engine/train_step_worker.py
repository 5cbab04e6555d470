"""Training-step server for ``tools/benchmark_train_step.py --against CHECKOUT``: run as a script with another
stmask_d2 checkout first on the import path (``python -P train_step_worker.py`` with ``PYTHONPATH=CHECKOUT``), it
builds that checkout's model, optimizer and training step for a config
and steps on request, so that one run can time this checkout's step against another commit's (e.g. the one an
issue was filed at) on the same machine, taking turns step by step.

It only uses what every stmask_d2 commit has: ``stmask_d2.config.add_stmask_config``,
``stmask_d2.data.register_ytvis_instances``, ``STMaskTrainer.build_train_loader`` / ``build_optimizer`` and the
trainer's step classes (``NonFiniteSkippingTrainer``, and ``NonFiniteSkippingAMPTrainer`` where
``SOLVER.AMP.ENABLED``); so it repeats the few lines of ``benchmark_train.make_batches`` / ``_build_loop``, which
older commits lack, instead of importing them. Protocol (one line each): it prints ``ready PARAMS`` once built
(or ``error MESSAGE``), then answers every ``step`` line with ``SECONDS LOSS`` (the step's own time, as the
in-process settings are timed) and stops at end of input.

    python train_step_worker.py CHECKOUT JSON IMAGE_ROOT CONFIG THREADS BATCHES [KEY VALUE ...]
"""
import itertools
import os
import sys
import time


def _serve(argv):
    root, json_file, image_root, config, threads, count, *opts = argv
    import torch
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model
    from detectron2.utils.env import seed_all_rng
    from detectron2.utils.events import EventStorage

    import stmask_d2
    from stmask_d2.config import add_stmask_config
    from stmask_d2.data import register_ytvis_instances
    from stmask_d2.engine import train_loop
    from stmask_d2.engine.trainer import STMaskTrainer

    if not os.path.abspath(stmask_d2.__file__).startswith(os.path.abspath(root) + os.sep):
        raise RuntimeError(f"imported stmask_d2 from {stmask_d2.__file__}, not from {root}")
    if int(threads) > 0:
        torch.set_num_threads(int(threads))
    if hasattr(stmask_d2, "register_all"):
        stmask_d2.register_all()
    cfg = get_cfg()
    add_stmask_config(cfg)
    cfg.merge_from_file(config)
    register_ytvis_instances("_train_step_worker", {}, json_file, image_root)
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "DATALOADER.NUM_WORKERS", 0,
                         "DATASETS.TRAIN", ("_train_step_worker",)] + opts)
    seed_all_rng(cfg.SEED if cfg.SEED >= 0 else 0)  # as the benchmark's own batches
    loader = iter(STMaskTrainer.build_train_loader(cfg))
    batches = [next(loader) for _ in range(int(count))]
    torch.manual_seed(cfg.SEED if cfg.SEED >= 0 else 0)
    model = build_model(cfg)
    model.train()
    optimizer = STMaskTrainer.build_optimizer(cfg, model)
    data = itertools.cycle(batches)
    if cfg.SOLVER.AMP.ENABLED:
        if not hasattr(train_loop, "NonFiniteSkippingAMPTrainer"):
            raise RuntimeError(f"the checkout {root} has no AMP training step; pass SOLVER.AMP.ENABLED False")
        loop = train_loop.NonFiniteSkippingAMPTrainer(model, data, optimizer, precision=cfg.SOLVER.AMP.PRECISION)
    else:
        loop = train_loop.NonFiniteSkippingTrainer(model, data, optimizer)
    print(f"ready {sum(p.numel() for p in model.parameters())}", flush=True)
    storage = EventStorage(0)
    with storage:
        loop.storage = storage
        for i, line in enumerate(sys.stdin):
            if line.strip() != "step":
                break
            loop.iter = storage.iter = i
            start = time.perf_counter()
            loop.run_step()
            elapsed = time.perf_counter() - start
            print(f"{elapsed:.6f} {storage.history('total_loss').latest():.6f}", flush=True)


if __name__ == "__main__":
    try:
        _serve(sys.argv[1:])
    except Exception as e:  # reported to the benchmark as one line
        print("error " + " ".join(f"{type(e).__name__}: {e}".split()), flush=True)
        sys.exit(2)
