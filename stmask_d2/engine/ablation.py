"""Seeded, resumable runner of the paper's ablation tables (CLI: ``tools/ablation.py``).

A *table* is a list of rows; a row is one of the repository's real configs (``configs/ablations/*.yaml``, R50/R101
at 384x640) and the paper's numbers for it. The runner trains and evaluates every row for N seeds with one budget:

1. data: any registered YouTube-VIS dataset pair (``train`` / ``test``), or the synthetic generator with the
   temporal-fusion knobs (:func:`prepare_synthetic`);
2. *small-model variants*: a row's distinguishing keys (anchors, FCA, FCB, TF; the backbone depth only when the
   table's rows differ in it, mapped R50 -> R18, R101 -> R34) are read from its real config and applied on top of a
   small base config (default ``configs/synthetic/STMask_R18_synthetic.yaml``); ``--full-configs`` uses the real
   configs unchanged (real data, GPU);
3. initialisation, as in the paper (every row starts from the same image-pretrained weights): ``init`` (a
   checkpoint) and / or an optional frame-level pretraining stage on the training videos' frames as images (the
   stand-in for COCO pretraining; the table's first row without TF), from which every row fine-tunes. As the
   released ``init_weights`` does with the Yolact++ COCO checkpoints, only the backbone, FPN, ProtoNet and the head's
   ``upfeature`` conv are taken from it (:data:`RELEASED_INIT_PREFIXES`); every prediction layer, tower, FCB and the
   TF head starts from its own seeded initialisation in every row, so that no row inherits trained prediction
   layers that others cannot load (``init_keep="all"`` keeps every parameter whose shape matches);
4. every (row, seed) run is a subprocess (``python -m stmask_d2.engine.ablation worker SPEC``) writing
   ``<out>/runs/<row>/seed<k>/metrics.json``; a run whose metrics.json exists for the same spec is skipped (the
   runner is resumable; an interrupted run resumes from its last checkpoint);
5. the table: mean ± std over seeds of AP, AP50, AP75, AR1, AR10, HOTA, AssA per row, the paper's AP / AP50 / AP75
   beside it (markdown, also written to ``<out>/table.md`` and ``summary.json``); progress with an ETA after the
   first run.
"""
import argparse
import copy
import functools
import hashlib
import json
import logging
import math
import os
import subprocess
import sys
import time
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple

from ..utils.errors import InputError, run_cli
from .setup import REPO_ROOT as ROOT  # the repository

__all__ = ["TABLES", "METRICS", "small_row_opts", "prepare_synthetic", "run_table", "format_table", "run_worker"]

logger = logging.getLogger(__name__)

METRICS = ("AP", "AP50", "AP75", "AR1", "AR10", "HOTA", "AssA")
SMALL_BASE = "configs/synthetic/STMask_R18_synthetic.yaml"

# The paper's numbers (YouTube-VIS 2019 valid, R101-DCN unless the row says otherwise): main paper Tables 1, 2, 4, 5
# and supplement Table 1 (/work/shared/paper). None = the paper has no such row / value.
_A = "configs/ablations/"
TABLES: Dict[str, List[dict]] = {
    "table1": [
        dict(name="{3:3,3:3,3:3}", config=_A + "table1_yolact_baseline.yaml", paper=dict(AP=28.9, AP50=45.8, AP75=30.1)),
        dict(name="{3:3,3:2,2:3}", config=_A + "table1_fca_3x3_3x2_2x3.yaml", paper=dict(AP=29.9, AP50=48.9, AP75=31.2)),
        dict(name="{3:3,3:5,5:3}", config=_A + "table1_fca_3x3_3x5_5x3.yaml", paper=dict(AP=30.8, AP50=49.8, AP75=31.0)),
    ],
    # Table 2 gives AP(ada) and AP(ali) per branch set. In the paper's flattened text the first row has only the
    # Baseline+FCA mark, the second all three branch marks and rows 3-5 two each; which two is not recoverable from
    # the text, the order class+mask, class+track, mask+track is assumed. It agrees with the text for FCB(ali)
    # (mask+track: 33.1, Table 4's FCB(ali)); for FCB(ada) the text says "all three branches" (33.7 here) while
    # Table 4 gives FCB(ada) 34.4 (class+mask here): the paper disagrees with itself.
    "table2": [
        dict(name="FCA", config=_A + "table1_fca_3x3_3x5_5x3.yaml", paper=dict(AP=30.8)),
        dict(name="ada class+mask+track", config=_A + "table2_fcb_ada_class_mask_track.yaml", paper=dict(AP=33.7)),
        dict(name="ada class+mask", config=_A + "table2_fcb_ada_class_mask.yaml", paper=dict(AP=34.4)),
        dict(name="ada class+track", config=_A + "table2_fcb_ada_class_track.yaml", paper=dict(AP=34.3)),
        dict(name="ada mask+track", config=_A + "table2_fcb_ada_mask_track.yaml", paper=dict(AP=32.5)),
        dict(name="ali class+mask+track", config=_A + "table2_fcb_ali_class_mask_track.yaml", paper=dict(AP=31.7)),
        dict(name="ali class+mask", config=_A + "table2_fcb_ali_class_mask.yaml", paper=dict(AP=31.7)),
        dict(name="ali class+track", config=_A + "table2_fcb_ali_class_track.yaml", paper=dict(AP=32.4)),
        dict(name="ali mask+track", config=_A + "table2_fcb_ali_mask_track.yaml", paper=dict(AP=33.1)),
    ],
    "table4": [
        dict(name="baseline", config=_A + "table4_1_baseline.yaml", paper=dict(AP=28.9, AP50=45.8, AP75=30.1)),
        dict(name="baseline +TF", config=_A + "table4_1_baseline_TF.yaml", paper={}),
        dict(name="+FCA", config=_A + "table4_2_fca.yaml", paper=dict(AP=30.8, AP50=49.8, AP75=31.0)),
        dict(name="+FCA +TF", config=_A + "table4_2_fca_TF.yaml", paper={}),
        dict(name="+FCA +FCB(ada)", config=_A + "table4_3_fca_fcb_ada.yaml", paper=dict(AP=34.4, AP50=53.0, AP75=34.6)),
        dict(name="+FCA +FCB(ali)", config=_A + "table4_4_fca_fcb_ali.yaml", paper=dict(AP=33.1, AP50=51.4, AP75=35.2)),
        dict(name="+FCA +FCB(ada) +TF", config=_A + "table4_3_fca_fcb_ada_TF.yaml",
             paper=dict(AP=36.8, AP50=56.8, AP75=38.0)),
        dict(name="+FCA +FCB(ali) +TF", config=_A + "table4_4_fca_fcb_ali_TF.yaml",
             paper=dict(AP=36.3, AP50=55.2, AP75=39.9)),
    ],
    "table5": [
        dict(name="baseline", config=_A + "table4_1_baseline.yaml", paper=dict(AP=28.9)),
        dict(name="+FCA", config=_A + "table5_fca.yaml", paper=dict(AP=30.8)),
        dict(name="+FCB(ada)", config=_A + "table5_fcb_ada.yaml", paper=dict(AP=31.2)),
        dict(name="+FCB(ali)", config=_A + "table5_fcb_ali.yaml", paper=dict(AP=31.3)),
        dict(name="+TF", config=_A + "table5_tf.yaml", paper=dict(AP=34.1)),
        dict(name="+FCA +TF", config=_A + "table5_fca_TF.yaml", paper={}),
        dict(name="+FCB(ada) +TF", config=_A + "table5_fcb_ada_TF.yaml", paper={}),
        dict(name="+FCB(ali) +TF", config=_A + "table5_fcb_ali_TF.yaml", paper={}),
    ],
    "supp_table1": [
        dict(name=f"{bb} {n} anchors{tf}", config=_A + f"supp_table1_{bb.replace('-', '_')}_{n}anchors{tf.replace(' +', '_')}.yaml",
             paper=dict(AP=ap))
        for bb, rows in (("R50-DCN", ((3, 25.2, 29.1), (6, 26.6, 29.9), (9, 26.7, 32.2))),
                         ("R101-DCN", ((3, 28.9, 34.1), (6, 30.7, 37.2), (9, 31.1, 36.4))))
        for n, base, with_tf in rows
        for tf, ap in (("", base), (" +TF", with_tf))
    ],
}

# keys that make a row what it is; copied from the row's real config onto the small base config
_ROW_KEYS = (
    "MODEL.ANCHOR_GENERATOR.MODE", "MODEL.ANCHOR_GENERATOR.KERNEL_SHAPES", "MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS",
    "MODEL.ANCHOR_GENERATOR.SCALES", "MODEL.ANCHOR_GENERATOR.BASE_CELLS", "MODEL.STMASK.HEAD.USE_FCA",
    "MODEL.STMASK.FCB.MODE", "MODEL.STMASK.FCB.BRANCHES", "MODEL.STMASK.TF.ENABLED",
)
_SMALL_DEPTH = {50: 18, 101: 34, 18: 18, 34: 34}
# parameters every row takes from the image-pretrained weights (the released init_weights copies the backbone, FPN,
# ProtoNet and the head's upfeature conv from the Yolact++ COCO checkpoints; everything else is initialised anew)
RELEASED_INIT_PREFIXES = ("backbone.", "protonet.", "head.upfeature.")


def filter_init_checkpoint(src: str, dst: str, prefixes: Sequence[str] = RELEASED_INIT_PREFIXES) -> str:
    """Write (atomically) to ``dst`` the model parameters of checkpoint ``src`` whose names start with one of
    ``prefixes`` (no trainer state, no iteration); returns ``dst``. Loads tensors only (``weights_only``)."""
    import torch

    from ..utils.io import atomic_write

    ckpt = torch.load(src, map_location="cpu", weights_only=True)
    model = ckpt.get("model", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(model, dict):
        raise InputError(f"{src} holds no state dict (expected a Detectron2 checkpoint with a 'model' entry)")
    kept = {k: v for k, v in model.items() if k.startswith(tuple(prefixes))}
    if not kept:
        raise InputError(f"{src}: no parameter starts with {list(prefixes)}; is it an STMask checkpoint?")
    atomic_write(dst, lambda f: torch.save({"model": kept}, f))
    return dst


def _get(cfg, key):
    node = cfg
    for k in key.split("."):
        node = node[k]
    return node


def load_cfg(path):
    """The config of ``path`` (relative paths: to the repository root), unfrozen, without range checks."""
    from .setup import get_stmask_cfg

    return get_stmask_cfg(path if os.path.isabs(path) else os.path.join(ROOT, path), validate=False, freeze=False)


def small_row_opts(table_rows: Sequence[dict], row: dict) -> List:
    """KEY VALUE list turning the small base config into the small variant of ``row`` (see the module docstring)."""
    cfg = load_cfg(row["config"])
    opts = []
    for key in _ROW_KEYS:
        v = _get(cfg, key)
        opts += [key, copy.deepcopy(list(v) if isinstance(v, tuple) else v)]
    depths = {load_cfg(r["config"]).MODEL.RESNETS.DEPTH for r in table_rows}
    if len(depths) > 1:
        opts += ["MODEL.RESNETS.DEPTH", _SMALL_DEPTH[cfg.MODEL.RESNETS.DEPTH]]
    return opts


def _row_dir(name):
    keep = "".join(c if c.isalnum() else "_" for c in name).strip("_")
    return "_".join(filter(None, keep.split("_")))


# ---------------------------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------------------------
def prepare_synthetic(out_dir, num_videos=120, valid_videos=40, seed=0, **gen_kwargs):
    """Generate (once) the synthetic dataset with ``gen_kwargs`` (e.g. motion_scale, object_blur, occluders,
    height, width, num_frames) and split it by video so that ``valid_videos`` are held out. Returns
    [(name, json, image_root)] for the train and test split (names derived from the settings)."""
    from ..data.split import split_ytvis_json
    from ..data.synthetic import make_synthetic_vis

    settings = dict(num_videos=num_videos, valid_videos=valid_videos, seed=seed, **gen_kwargs)
    tag = hashlib.md5(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
    stamp = os.path.join(out_dir, "settings.json")
    train, valid = os.path.join(out_dir, "train_sub.json"), os.path.join(out_dir, "valid_sub.json")
    if not (os.path.isfile(stamp) and json.load(open(stamp)) == settings and os.path.isfile(valid)):
        if not 0 < valid_videos < num_videos:
            raise InputError(f"valid_videos must be in 1..{num_videos - 1}, got {valid_videos}")
        json_file = make_synthetic_vis(out_dir, num_videos=num_videos, seed=seed, **gen_kwargs)
        # split_ytvis_json rounds the fraction up: ask for exactly valid_videos
        split_ytvis_json(json_file, out_dir=out_dir, valid_fraction=(valid_videos - 0.5) / num_videos, seed=seed)
        with open(stamp, "w") as f:
            json.dump(settings, f)
    root = os.path.join(out_dir, "JPEGImages")
    return [(f"ablation_{tag}_train", train, root), (f"ablation_{tag}_valid", valid, root)]


def _register(registrations):
    from ..data import register_ytvis_instances

    for name, json_file, root in registrations or ():
        register_ytvis_instances(name, {}, json_file, root)


# ---------------------------------------------------------------------------------------------------------------
# one run (in a subprocess)
# ---------------------------------------------------------------------------------------------------------------
def _schedule_opts(iters, base_cfg):
    scale = iters / base_cfg.SOLVER.MAX_ITER
    steps = tuple(sorted({int(s * scale) for s in base_cfg.SOLVER.STEPS} - {0}))
    steps = tuple(s for s in steps if s < iters)  # the lr schedule needs steps inside the run
    warm = min(base_cfg.SOLVER.WARMUP_ITERS, max(1, iters // 10))
    return ["SOLVER.MAX_ITER", iters, "SOLVER.STEPS", steps, "SOLVER.WARMUP_ITERS", warm,
            "SOLVER.CHECKPOINT_PERIOD", max(50, iters // 2)]


def run_worker(spec: dict) -> dict:
    """Train (unless ``spec["iters"]`` is 0) and evaluate one run described by ``spec`` (see :func:`_run_spec`);
    writes ``metrics.json`` (atomically) into ``spec["output_dir"]`` and returns the metrics."""
    import torch
    from detectron2.utils.env import seed_all_rng
    from detectron2.utils.logger import setup_logger

    import stmask_d2  # noqa: F401  (registers the parts)
    from ..data import register_ytvis_frames
    from ..utils.io import atomic_write
    from .checkpoint import AtomicDetectionCheckpointer
    from .trainer import STMaskTrainer

    out = spec["output_dir"]
    os.makedirs(out, exist_ok=True)
    setup_logger(output=os.path.join(out, "log.txt"), name="detectron2")
    setup_logger(output=os.path.join(out, "log.txt"), name="stmask_d2")
    torch.set_num_threads(int(spec.get("threads", 1)))
    _register(spec.get("register"))
    cfg = load_cfg(spec["config"])
    cfg.merge_from_list(list(spec["opts"]))
    train_name = spec["train"]
    if spec.get("frames"):  # frame-level pretraining on the training videos' frames as images
        register_ytvis_frames(train_name + "_frames", train_name)
        train_name += "_frames"
    cfg.merge_from_list(["OUTPUT_DIR", out, "DATASETS.TRAIN", (train_name,), "DATASETS.TEST", (spec["test"],),
                         "SEED", int(spec["seed"]), "TEST.YTVIS_HOTA", True, "TEST.EVAL_PERIOD", 0,
                         "MODEL.WEIGHTS", spec.get("init") or ""])
    cfg.merge_from_list(_schedule_opts(int(spec["iters"]), cfg) if spec["iters"] else [])
    cfg.freeze()
    seed_all_rng(cfg.SEED)
    t0 = time.perf_counter()
    if spec["iters"]:
        train_cfg = cfg.clone()
        train_cfg.defrost()
        train_cfg.DATASETS.TEST = ()
        train_cfg.freeze()
        trainer = STMaskTrainer(train_cfg)
        trainer.resume_or_load(resume=True)
        trainer.train()
        weights = os.path.join(out, "model_final.pth")
    else:
        weights = cfg.MODEL.WEIGHTS
    t_train = time.perf_counter() - t0
    metrics = {}
    if not spec.get("frames"):
        model = STMaskTrainer.build_model(cfg)
        AtomicDetectionCheckpointer(model).load(weights)
        res = STMaskTrainer.test(cfg, model)
        metrics = {k: float(v) for k, v in dict(res.get("segm", res)).items()}
    metrics.update(train_s=t_train, total_s=time.perf_counter() - t0, weights=weights, spec_hash=spec["hash"])
    atomic_write(os.path.join(out, "metrics.json"), lambda f: json.dump(metrics, f, indent=1), mode="w")
    return metrics


def _spec_hash(spec):
    keep = {k: v for k, v in spec.items() if k not in ("output_dir", "threads", "hash")}
    return hashlib.md5(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _run_spec(**spec):
    spec["hash"] = _spec_hash(spec)
    return spec


def _done(spec):
    path = os.path.join(spec["output_dir"], "metrics.json")
    if not os.path.isfile(path):
        return None
    try:
        m = json.load(open(path))
    except ValueError:
        return None
    return m if m.get("spec_hash") == spec["hash"] else None


class RunFailedError(RuntimeError):
    """A (row, seed) run exited with an error; its log is ``<run folder>/stdout.txt``."""


def _launch(spec, log=None):
    os.makedirs(spec["output_dir"], exist_ok=True)
    path = os.path.join(spec["output_dir"], "spec.json")
    with open(path, "w") as f:
        json.dump(spec, f, indent=1, default=str)
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", str(spec.get("threads", 1)))
    with open(os.path.join(spec["output_dir"], "stdout.txt"), "w") as out:
        rc = subprocess.call([sys.executable, "-m", "stmask_d2.engine.ablation", "worker", path], cwd=ROOT, env=env,
                             stdout=out, stderr=subprocess.STDOUT)
    if rc != 0:
        tail = open(os.path.join(spec["output_dir"], "stdout.txt")).read().strip().splitlines()[-5:]
        raise RunFailedError(f"run {spec['output_dir']} failed (exit {rc}): " + " | ".join(tail))
    return _done(spec)


# ---------------------------------------------------------------------------------------------------------------
# the table
# ---------------------------------------------------------------------------------------------------------------
def _mean_std(values):
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return None, None
    mean = sum(vals) / len(vals)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    return mean, std


def _paired_delta(runs, ref_runs, metric="AP"):
    """Mean ± std over seeds of run[k] - ref[k] (runs of the same seeds in the same order), or None."""
    if not runs or len(runs) != len(ref_runs):
        return None
    diffs = [a.get(metric) - b.get(metric) for a, b in zip(runs, ref_runs)
             if a.get(metric) is not None and b.get(metric) is not None]
    return _mean_std(diffs) if len(diffs) == len(runs) else None


def format_table(title, rows: List[dict], results: Dict[str, List[dict]]) -> str:
    """Markdown table: per row mean ± std over seeds of METRICS, the paper's AP / AP50 / AP75, and the paired AP
    gain over the reference row (the row above; for an evaluation variant "<row> [name]", its row): the mean ± std
    over seeds of the per-seed difference, seed k against seed k (same data order, same initial weights of the
    shared parts), which is far less noisy than comparing two means."""
    head = ["row", "seeds"] + list(METRICS) + ["paper AP", "paper AP50", "paper AP75", "paired ΔAP (vs)"]
    lines = [f"**{title}**", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    prev = None
    for row in rows:
        runs = results.get(row["name"], [])
        cells = [row["name"], str(len(runs))]
        for m in METRICS:
            mean, std = _mean_std([r.get(m) for r in runs])
            cells.append("—" if mean is None else f"{mean:.1f} ± {std:.1f}")
        for m in ("AP", "AP50", "AP75"):
            v = row.get("paper", {}).get(m)
            cells.append("—" if v is None else f"{v:.1f}")
        is_variant = row["name"].endswith("]") and " [" in row["name"]
        ref = row["name"].rsplit(" [", 1)[0] if is_variant else prev
        delta = _paired_delta(runs, results.get(ref, [])) if ref else None
        cells.append("—" if delta is None or delta[0] is None else f"{delta[0]:+.1f} ± {delta[1]:.1f} ({ref})")
        if not is_variant:
            prev = row["name"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_table(
    table: str,
    out_dir: str,
    *,
    train: str,
    test: str,
    register=None,
    seeds: Sequence[int] = (0, 1, 2),
    iters: int = 400,
    pretrain_iters: int = 0,
    init: Optional[str] = None,
    rows: Optional[Sequence[str]] = None,
    base_config: str = SMALL_BASE,
    full_configs: bool = False,
    opts: Sequence = (),
    threads: int = 1,
    init_keep: str = "released",
    eval_variants: Sequence[Tuple[str, Sequence]] = (),
    print_fn=print,
) -> str:
    """Run (or resume) ``table`` and return its markdown (also written to ``out_dir``/table.md, summary.json).

    Args:
        table: a key of :data:`TABLES`.
        train, test: registered dataset names (``register``: [(name, json, image_root)] registered in each run).
        seeds: one run per seed per row (the config's SEED).
        iters: fine-tuning iterations per run (the base config's schedule is rescaled to it).
        pretrain_iters: > 0: first train the table's first row (TF off) on the training frames as images for this
            many iterations; every row then starts from it.
        init: checkpoint every row (or the pretraining) starts from.
        init_keep: "released" (rows take only the backbone, FPN, ProtoNet and upfeature conv from the init /
            pretrained weights, see :data:`RELEASED_INIT_PREFIXES`) or "all" (every parameter whose shape matches).
        rows: subset of row names (default: all).
        base_config: the small base config; ``full_configs`` uses each row's real config instead.
        opts: extra KEY VALUE pairs for every run (e.g. INPUT sizes).
        eval_variants: [(name, KEY VALUE list)]: every finished run is also evaluated (no training) with these
            extra options, e.g. ("no TF at test", ["MODEL.STMASK.TF.ENABLED", False]); each variant is a row
            "<row> [name]" of the table, its runs in ``runs/<row>/seed<k>/variant_<name>``.
    """
    if table not in TABLES:
        raise InputError(f"unknown table {table!r}; choose one of {sorted(TABLES)}")
    all_rows = TABLES[table]
    chosen = [r for r in all_rows if rows is None or r["name"] in rows]
    if rows is not None and len(chosen) != len(set(rows)):
        unknown = sorted(set(rows) - {r["name"] for r in all_rows})
        raise InputError(f"unknown rows {unknown} for {table}; its rows are {[r['name'] for r in all_rows]}")
    for vname, vopts in eval_variants:
        if not _row_dir(vname or ""):
            raise InputError(f"an evaluation variant needs a name with letters or digits, got {vname!r}")
        if len(vopts) % 2:
            raise InputError(f"evaluation variant {vname!r}: options must be KEY VALUE pairs, got {list(vopts)}")
    os.makedirs(out_dir, exist_ok=True)
    common = dict(train=train, test=test, register=[list(r) for r in (register or [])], threads=threads)

    def row_config(row):
        if full_configs:
            return row["config"], list(opts)
        return base_config, small_row_opts(all_rows, row) + list(opts)

    if pretrain_iters > 0:
        cfg_path, row_opts = row_config(all_rows[0])
        spec = _run_spec(config=cfg_path, opts=row_opts + ["MODEL.STMASK.TF.ENABLED", False,
                                                           "INPUT.MASK_FORMAT", "bitmask"], seed=0,
                         iters=pretrain_iters, init=init, frames=True, **common,
                         output_dir=os.path.join(out_dir, "pretrain"))
        if _done(spec) is None:
            print_fn(f"pretraining {all_rows[0]['name']} (TF off) on the frames of {train} for {pretrain_iters} "
                     f"iterations ...")
            t0 = time.perf_counter()
            _launch(spec, print_fn)
            print_fn(f"pretraining done in {time.perf_counter() - t0:.0f} s")
        init = _done(spec)["weights"]
    if init_keep not in ("released", "all"):
        raise InputError(f"init_keep must be 'released' or 'all', got {init_keep!r}")
    if init and init_keep == "released":
        filtered = os.path.join(out_dir, "init_released.pth")
        src_stamp = f"{os.path.abspath(init)} {os.path.getmtime(init)} {os.path.getsize(init)}"
        stamp_file = filtered + ".source"
        if not (os.path.isfile(filtered) and os.path.isfile(stamp_file) and open(stamp_file).read() == src_stamp):
            filter_init_checkpoint(init, filtered)
            with open(stamp_file, "w") as f:
                f.write(src_stamp)
        init = filtered

    runs = []
    for row in chosen:
        cfg_path, row_opts = row_config(row)
        for seed in seeds:
            runs.append((row, seed, _run_spec(
                config=cfg_path, opts=row_opts, seed=int(seed), iters=int(iters), init=init, frames=False, **common,
                output_dir=os.path.join(out_dir, "runs", _row_dir(row["name"]), f"seed{seed}"))))
    results: Dict[str, List[dict]] = OrderedDict()
    durations = []
    t_start = time.perf_counter()
    for k, (row, seed, spec) in enumerate(runs, 1):
        m = _done(spec)
        if m is not None:
            print_fn(f"[{k}/{len(runs)}] {row['name']} seed {seed}: done before (AP {m.get('AP', float('nan')):.1f})")
        else:
            t0 = time.perf_counter()
            m = _launch(spec, print_fn)
            durations.append(time.perf_counter() - t0)
            left = sum(1 for _, _, sp in runs[k:] if _done(sp) is None)
            eta = left * sum(durations) / len(durations)
            print_fn(f"[{k}/{len(runs)}] {row['name']} seed {seed}: AP {m.get('AP', float('nan')):.1f} "
                     f"HOTA {m.get('HOTA', float('nan')):.1f} in {durations[-1]:.0f} s; {left} runs left, "
                     f"ETA {eta / 60:.1f} min")
        results.setdefault(row["name"], []).append(m)
    for vname, vopts in eval_variants:
        for row, seed, spec in runs:
            base = results[row["name"]][list(seeds).index(seed)]
            vspec = _run_spec(config=spec["config"], opts=list(spec["opts"]) + list(vopts), seed=spec["seed"],
                              iters=0, init=base["weights"], frames=False, **common,
                              output_dir=os.path.join(spec["output_dir"], "variant_" + _row_dir(vname)))
            m = _done(vspec)
            if m is None:
                t0 = time.perf_counter()
                m = _launch(vspec, print_fn)
                print_fn(f"[{vname}] {row['name']} seed {seed}: AP {m.get('AP', float('nan')):.1f} "
                         f"HOTA {m.get('HOTA', float('nan')):.1f} (evaluation only, {time.perf_counter() - t0:.0f} s)")
            results.setdefault(f"{row['name']} [{vname}]", []).append(m)
    shown = [r for row in chosen for r in [row] + [dict(name=f"{row['name']} [{vname}]", paper={})
                                                   for vname, _ in eval_variants]]
    md = format_table(f"{table}: mean ± std over {len(seeds)} seed(s), {iters} iterations per run"
                      + (f", pretrained {pretrain_iters} iterations" if pretrain_iters else ""), shown, results)
    with open(os.path.join(out_dir, "table.md"), "w") as f:
        f.write(md + "\n")
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump({"table": table, "seeds": list(seeds), "iters": iters, "pretrain_iters": pretrain_iters,
                   "wall_s": time.perf_counter() - t_start, "rows": {r["name"]: results.get(r["name"], [])
                                                                     for r in shown}}, f, indent=1)
    return md


def get_parser():
    """The options of ``tools/ablation.py`` (its docstring has the command lines)."""
    p = argparse.ArgumentParser(description="Run the rows of a paper ablation table for N seeds with one budget and "
                                            "print mean +- std beside the paper's numbers (resumable)")
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
    p.add_argument("--eval-variant", nargs="+", action="append", default=[], metavar="NAME [KEY VALUE ...]",
                   help="also evaluate every finished run (no training) with these options, shown as the row "
                        "'<row> [NAME]'; repeatable, e.g. --eval-variant no-TF-at-test MODEL.STMASK.TF.ENABLED False")
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
    p.add_argument("opts", nargs=argparse.REMAINDER,
                   help="extra KEY VALUE pairs for every run (after '--' when --eval-variant comes before them)")
    return p


def cli_opts(args) -> List:
    """The KEY VALUE list of the command line (a leading '--', which ends an --eval-variant list, dropped)."""
    opts = list(args.opts)
    return opts[1:] if opts[:1] == ["--"] else opts


def _data_args(args):
    """(train, test, registrations, size opts) of the command line: a registered pair or the synthetic data."""
    register = [tuple(r) for r in args.register_ytvis]
    if args.synthetic:
        register += prepare_synthetic(args.synthetic, num_videos=args.videos, valid_videos=args.valid_videos,
                                      seed=args.data_seed, num_frames=args.frames, height=args.height,
                                      width=args.width, motion_scale=args.motion_scale, object_blur=args.object_blur,
                                      occluders=args.occluders)
        size_opts = ["INPUT.MIN_SIZE_TRAIN", (args.height,), "INPUT.MAX_SIZE_TRAIN", args.width,
                     "INPUT.MIN_SIZE_TEST", args.height, "INPUT.MAX_SIZE_TEST", args.width]
        return register[-2][0], register[-1][0], register, size_opts
    if args.train and args.test:
        return args.train, args.test, register, []
    raise InputError("give --synthetic DIR, or --train and --test (registered dataset names)")


def _ablation_cli(argv):
    args = get_parser().parse_args(argv)
    if args.list_rows:
        for r in TABLES[args.table]:
            print(f"{r['name']!r:28} {r['config']}  paper {r['paper']}")
        return 0
    os.environ.setdefault("DETECTRON2_DATASETS", os.path.join(ROOT, "datasets"))
    train, test, register, size_opts = _data_args(args)
    if args.init and not os.path.isfile(args.init):
        raise InputError(f"--init {args.init!r} does not exist")
    try:
        md = run_table(args.table, args.output or os.path.join("output", f"ablation_{args.table}"), train=train,
                       test=test, register=register, seeds=args.seeds, iters=args.iters,
                       pretrain_iters=args.pretrain_iters, init=args.init, rows=args.rows,
                       base_config=args.base_config, full_configs=args.full_configs,
                       opts=size_opts + cli_opts(args), threads=args.threads, init_keep=args.init_keep,
                       eval_variants=[(v[0], v[1:]) for v in args.eval_variant],
                       print_fn=functools.partial(print, flush=True))
    except RunFailedError as e:  # its log is in its folder; finished runs are kept (re-run resumes)
        print(f"ablation.py: {e}", file=sys.stderr)
        return 1
    print(md)
    return 0


def main(argv=None):
    """``tools/ablation.py``; returns the exit code (2: bad input, one line; 1: a run failed)."""
    return run_cli(_ablation_cli, argv, prog="ablation.py")


def _worker_main(argv):
    if len(argv) != 2 or argv[0] != "worker":
        raise SystemExit("usage: python -m stmask_d2.engine.ablation worker SPEC.json")
    with open(argv[1]) as f:
        spec = json.load(f)
    run_worker(spec)


if __name__ == "__main__":
    _worker_main(sys.argv[1:])
