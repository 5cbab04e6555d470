"""The main job (`make demo`): synthetic data -> training -> evaluation -> demo video, on CPU in minutes (library
code of ``tools/main_job.py``).

Steps (each prints its wall time; outputs under ``output/``):
1. generate the synthetic YouTube-VIS-format dataset (``stmask_d2.data.synthetic``) under
   ``$DETECTRON2_DATASETS/synthetic_vis`` and split it by video into train_sub / valid_sub (skipped when present
   with the same generation settings);
2. train ``configs/synthetic/STMask_R18w32_synthetic_TF.yaml`` (STMask with FCA, FCB(ada) and temporal fusion on a
   half-width ResNet-18; bf16 autocast where the CPU computes bf16 natively, fp16 on CUDA) into ``output/main_job``
   (skipped when ``model_final.pth`` of the same settings exists; ``--retrain`` forces it);
3. evaluate it on the held-out ``synthetic_vis_valid_sub`` (AP table + HOTA) -> ``output/demo/metrics.json``;
4. run ``demo/demo.py`` with the job's config (``output/main_job/main_job_config.yaml``) on a held-out video ->
   ``output/demo/demo.mp4``, ``output/demo/results.json`` and ``output/demo/contact_sheet.png``.

    python tools/main_job.py [--iters N] [--retrain] [--output output] [KEY VALUE ...]
"""
import argparse
import json
import os
import subprocess
import sys
import time

from ..utils.errors import run_cli
from .setup import REPO_ROOT as ROOT  # the repository

__all__ = ["make_data", "job_cfg", "train", "iteration_time", "evaluate", "pick_demo_video", "contact_sheet",
           "get_parser", "main"]


CONFIG = os.path.join(ROOT, "configs", "synthetic", "STMask_R18w32_synthetic_TF.yaml")
# Generation settings of the synthetic dataset (frames at 128x224, the config's input size).
DATA = dict(num_videos=80, num_frames=12, height=128, width=224, num_categories=5, max_instances=4, seed=1)
VALID_FRACTION = 0.15


def step(title):
    print(f"\n=== {title} ===", flush=True)
    return time.perf_counter()


def done(t0):
    print(f"    ({time.perf_counter() - t0:.1f} s)", flush=True)


def make_data(root):
    from ..data.split import split_ytvis_json
    from ..data.synthetic import make_synthetic_vis

    out = os.path.join(root, "synthetic_vis")
    stamp = os.path.join(out, "main_job_settings.json")
    want = dict(DATA, valid_fraction=VALID_FRACTION)
    if os.path.isfile(stamp) and json.load(open(stamp)) == want and os.path.isfile(os.path.join(out, "valid_sub.json")):
        print(f"    dataset already at {out}")
        return out
    json_file = make_synthetic_vis(out, **DATA)
    split_ytvis_json(json_file, out_dir=out, valid_fraction=VALID_FRACTION, seed=0)
    with open(stamp, "w") as f:
        json.dump(want, f)
    return out


def amp_available(device):
    """True when mixed precision speeds training up on ``device`` ("cpu" / "cuda"): CUDA, or a CPU that computes
    bf16 natively (AVX512-BF16 / AMX); elsewhere bf16 is emulated and slower than fp32."""
    if device.startswith("cuda"):
        return True
    from ..modeling.inference_opts import cpu_has_native_bf16

    return cpu_has_native_bf16()


def job_cfg(args, output_dir):
    """The job's config: CONFIG, its schedule rescaled to ``--iters``, the job's datasets / output / evaluation
    settings, SOLVER.AMP.ENABLED where :func:`amp_available`, no data-loader workers on CPU, then the user's
    ``KEY VALUE`` pairs (one config path: :func:`stmask_d2.engine.setup.get_stmask_cfg`)."""
    from ..config import resolve_device
    from .setup import get_stmask_cfg

    base = get_stmask_cfg(CONFIG, validate=False)
    device = "cpu" if args.cpu else resolve_device(base.MODEL.DEVICE)
    schedule = []
    if args.iters:  # rescale the config's schedule to another length
        scale = args.iters / base.SOLVER.MAX_ITER
        schedule = ["SOLVER.MAX_ITER", args.iters, "SOLVER.STEPS", tuple(int(s * scale) for s in base.SOLVER.STEPS)]
    job = schedule + [
        "OUTPUT_DIR", output_dir,
        "SOLVER.CHECKPOINT_PERIOD", max(100, (args.iters or base.SOLVER.MAX_ITER) // 4),
        "TEST.EVAL_PERIOD", 0,
        "DATASETS.TRAIN", ("synthetic_vis_train_sub",),
        "DATASETS.TEST", ("synthetic_vis_valid_sub",),
        "TEST.YTVIS_HOTA", True,
        "MODEL.DEVICE", "cpu" if args.cpu else base.MODEL.DEVICE,
        "SOLVER.AMP.ENABLED", amp_available(device),
        # on CPU a loader process competes with the training threads for the cores: 1200 iterations took 519 s with
        # the data loaded in the training process and 599 s with one worker (2 cores; README)
        "DATALOADER.NUM_WORKERS", 0 if device == "cpu" else base.DATALOADER.NUM_WORKERS,
    ]
    return get_stmask_cfg(CONFIG, job + list(args.opts), validate=True, training=True)


def train(cfg, retrain):
    from .trainer import STMaskTrainer

    final = os.path.join(cfg.OUTPUT_DIR, "model_final.pth")
    stamp = os.path.join(cfg.OUTPUT_DIR, "main_job_config.yaml")
    if not retrain and os.path.isfile(final) and os.path.isfile(stamp) and open(stamp).read() == cfg.dump():
        print(f"    trained model already at {final} (use --retrain to train again)")
        return final
    os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    train_cfg = cfg.clone()
    train_cfg.defrost()
    train_cfg.DATASETS.TEST = ()  # evaluated once, in step 3 (DefaultTrainer would also evaluate at the end)
    train_cfg.freeze()
    trainer = STMaskTrainer(train_cfg)
    trainer.resume_or_load(resume=not retrain)
    start_iter, t0 = trainer.start_iter, time.perf_counter()
    trainer.train()
    n = trainer.max_iter - start_iter
    if n > 0:
        print(f"    training: {n} iterations in {time.perf_counter() - t0:.0f} s, "
              f"{iteration_time(cfg.OUTPUT_DIR, start_iter):.3f} s/iteration (median of metrics.json 'time')",
              flush=True)
    with open(stamp, "w") as f:
        f.write(cfg.dump())
    return final


def iteration_time(output_dir, start_iter=0):
    """Median training-step time (s) of the records of metrics.json from ``start_iter`` on (Detectron2's
    "time" of the step, data loading excluded), or nan."""
    import statistics

    times = []
    try:
        with open(os.path.join(output_dir, "metrics.json")) as f:
            for line in f:
                try:
                    r = json.loads(line)
                except ValueError:
                    continue
                if r.get("iteration", -1) >= start_iter and "time" in r:
                    times.append(float(r["time"]))
    except OSError:
        pass
    return statistics.median(times) if times else float("nan")


def evaluate(cfg, weights, out_dir):
    from .checkpoint import AtomicDetectionCheckpointer
    from .trainer import STMaskTrainer

    model = STMaskTrainer.build_model(cfg)
    AtomicDetectionCheckpointer(model).load(weights)
    res = STMaskTrainer.test(cfg, model)
    metrics = dict(res.get("segm", res))
    with open(os.path.join(out_dir, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=1)
    return metrics


def pick_demo_video(data_dir):
    with open(os.path.join(data_dir, "valid_sub.json")) as f:
        gt = json.load(f)
    # the held-out video with the most annotated instances
    counts = {}
    for a in gt.get("annotations") or []:
        counts[a["video_id"]] = counts.get(a["video_id"], 0) + 1
    video = max(gt["videos"], key=lambda v: (counts.get(v["id"], 0), -v["id"]))
    frames_dir = os.path.join(data_dir, "JPEGImages", os.path.dirname(video["file_names"][0]))
    return video, frames_dir


def contact_sheet(video_path, out_png, num=6, scale=2):
    import cv2
    import numpy as np

    cap = cv2.VideoCapture(video_path)
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    want = set(np.linspace(0, max(total - 1, 0), num).astype(int).tolist())
    tiles, i = [], 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if i in want:
            frame = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
            cv2.putText(frame, f"frame {i}", (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1)
            tiles.append(frame)
        i += 1
    cap.release()
    if not tiles:
        raise RuntimeError(f"could not read frames back from {video_path}")
    cols = 3
    while len(tiles) % cols:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.concatenate(tiles[r : r + cols], axis=1) for r in range(0, len(tiles), cols)]
    cv2.imwrite(out_png, np.concatenate(rows, axis=0))


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iters", type=int, default=None,
                        help="training iterations (default: the config's SOLVER.MAX_ITER; steps are rescaled)")
    parser.add_argument("--retrain", action="store_true", help="train again even if a trained model exists")
    parser.add_argument("--output", default=os.path.join(ROOT, "output"), help="output root (default output/)")
    parser.add_argument("--cpu", action="store_true", help="run on CPU even when CUDA is available")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="extra config KEY VALUE pairs")
    return parser


def _main_job(argv):
    args = get_parser().parse_args(argv)

    os.environ.setdefault("DETECTRON2_DATASETS", os.path.join(ROOT, "datasets"))
    from detectron2.utils.logger import setup_logger

    from .. import register_all
    from ..data.builtin import register_all_ytvis

    register_all()  # the model parts and the builtin dataset splits

    setup_logger(name="detectron2")
    setup_logger(name="stmask_d2")
    register_all_ytvis(os.environ["DETECTRON2_DATASETS"])
    from ..utils.calibration import format_calibration, resnet18_calibration

    # the machine's speed, printed so that the job's times on two machines can be compared (not part of the job)
    print(format_calibration(resnet18_calibration()), flush=True)
    start = time.perf_counter()
    train_dir = os.path.join(args.output, "main_job")
    demo_dir = os.path.join(args.output, "demo")
    os.makedirs(demo_dir, exist_ok=True)

    t = step("1/4 synthetic YouTube-VIS dataset")
    data_dir = make_data(os.environ["DETECTRON2_DATASETS"])
    done(t)

    cfg = job_cfg(args, train_dir)
    from detectron2.utils.env import seed_all_rng

    seed_all_rng(cfg.SEED if cfg.SEED >= 0 else None)  # same numbers on every run (config SEED)
    from ..config import resolve_device
    from .train_loop import amp_dtype

    device = resolve_device(cfg.MODEL.DEVICE)
    precision = str(amp_dtype(cfg.SOLVER.AMP.PRECISION, device.split(":")[0])) if cfg.SOLVER.AMP.ENABLED else "fp32"
    amp = precision.replace("torch.", "AMP ")
    t = step(f"2/4 training {os.path.relpath(CONFIG, ROOT)} for {cfg.SOLVER.MAX_ITER} iterations on {device}, "
             f"{amp}")
    weights = train(cfg, args.retrain)
    done(t)

    t = step("3/4 evaluation on the held-out split synthetic_vis_valid_sub")
    metrics = evaluate(cfg, weights, demo_dir)
    print("    " + json.dumps({k: round(v, 2) for k, v in metrics.items()}))
    done(t)

    t = step("4/4 demo on a held-out video")
    video, frames_dir = pick_demo_video(data_dir)
    cmd = [
        sys.executable, os.path.join(ROOT, "demo", "demo.py"),
        "--config-file", os.path.join(cfg.OUTPUT_DIR, "main_job_config.yaml"),  # the job's model, user's keys too
        "--input", frames_dir,
        "--output", os.path.join(demo_dir, "demo.mp4"),
        "--output-json", os.path.join(demo_dir, "results.json"),
        "--opts", "MODEL.WEIGHTS", weights, "MODEL.DEVICE", cfg.MODEL.DEVICE,
    ]
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))  # this stmask_d2
    subprocess.run(cmd, check=True, env=env)
    contact_sheet(os.path.join(demo_dir, "demo.mp4"), os.path.join(demo_dir, "contact_sheet.png"))
    done(t)

    print(f"\nmain job done in {time.perf_counter() - start:.0f} s. Outputs in {demo_dir}:")
    for name in ("demo.mp4", "results.json", "contact_sheet.png", "metrics.json"):
        print(f"    {os.path.join(demo_dir, name)}")
    print(f"held-out AP {metrics.get('AP', float('nan')):.1f}  AP50 {metrics.get('AP50', float('nan')):.1f}  "
          f"HOTA {metrics.get('HOTA', float('nan')):.1f}")
    return 0


def main(argv=None):
    """``tools/main_job.py`` (``make demo``); returns the exit code (2: bad input, one line)."""
    return run_cli(_main_job, argv, prog="main_job.py")
