"""Range checks of the numeric config keys, run before anything is written (train_net.py, demo, tools).

:func:`validate_config` raises :class:`~stmask_d2.engine.errors.ConfigError` with one line naming the first key
out of range and its allowed range, e.g. ``SOLVER.IMS_PER_BATCH = 0 is out of range: allowed an integer >= 1``.
Keys absent from the config (e.g. added by another extension) are skipped.
"""
import math
import numbers

__all__ = ["validate_config", "NUMERIC_RANGES"]

_INF = math.inf


def _num(lo=-_INF, hi=_INF, lo_open=False, hi_open=False, integer=False):
    return {"lo": lo, "hi": hi, "lo_open": lo_open, "hi_open": hi_open, "integer": integer}


def _int(lo=-_INF, hi=_INF):
    return _num(lo, hi, integer=True)


_PROB = _num(0.0, 1.0)
_POS = _num(0.0, lo_open=True)
_NONNEG = _num(0.0)

# key -> allowed range; a list / tuple value is checked element-wise (each element, or each number of nested
# lists such as KERNEL_SHAPES).
NUMERIC_RANGES = {
    # solver
    "SOLVER.IMS_PER_BATCH": _int(1),
    "SOLVER.MAX_ITER": _int(1),
    "SOLVER.BASE_LR": _POS,
    "SOLVER.MOMENTUM": _num(0.0, 1.0, hi_open=True),
    "SOLVER.WEIGHT_DECAY": _NONNEG,
    "SOLVER.WEIGHT_DECAY_NORM": _NONNEG,
    "SOLVER.GAMMA": _POS,
    "SOLVER.STEPS": _int(0),
    "SOLVER.WARMUP_ITERS": _int(0),
    "SOLVER.WARMUP_FACTOR": _num(0.0, 1.0),
    "SOLVER.CHECKPOINT_PERIOD": _int(1),
    "SOLVER.BIAS_LR_FACTOR": _POS,
    "SOLVER.CLIP_GRADIENTS.CLIP_VALUE": _POS,
    "SOLVER.CLIP_GRADIENTS.NORM_TYPE": _POS,
    "SOLVER.REFERENCE_WORLD_SIZE": _int(0),
    "TEST.EVAL_PERIOD": _int(0),
    "TEST.DETECTIONS_PER_IMAGE": _int(1),
    "DATALOADER.NUM_WORKERS": _int(0),
    "DATALOADER.REPEAT_THRESHOLD": _NONNEG,
    "VIS_PERIOD": _int(0),
    # input
    "INPUT.MIN_SIZE_TRAIN": _int(1),
    "INPUT.MAX_SIZE_TRAIN": _int(1),
    "INPUT.MIN_SIZE_TEST": _int(0),
    "INPUT.MAX_SIZE_TEST": _int(1),
    "INPUT.SAMPLING_FRAME_RANGE": _int(0),
    "INPUT.MAX_FRAME_PIXELS": _int(0),
    "MODEL.PIXEL_STD": _POS,
    # backbone / FPN / anchors
    "MODEL.BACKBONE.FREEZE_AT": _int(0, 5),
    "MODEL.RESNETS.DEPTH": _int(18, 152),
    "MODEL.RESNETS.NUM_GROUPS": _int(1),
    "MODEL.RESNETS.WIDTH_PER_GROUP": _int(1),
    "MODEL.RESNETS.RES2_OUT_CHANNELS": _int(1),
    "MODEL.RESNETS.DEFORM_NUM_GROUPS": _int(1),
    "MODEL.RESNETS.DEFORM_INTERVAL": _int(1),
    "MODEL.FPN.OUT_CHANNELS": _int(1),
    "MODEL.FPN.NUM_DOWNSAMPLE": _int(0),
    "MODEL.ANCHOR_GENERATOR.KERNEL_SHAPES": _int(1),
    "MODEL.ANCHOR_GENERATOR.BASE_CELLS": _POS,
    "MODEL.ANCHOR_GENERATOR.SCALES": _POS,
    "MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS": _POS,
    "MODEL.ANCHOR_GENERATOR.OFFSET": _num(0.0, 1.0, hi_open=True),
    # STMask
    "MODEL.STMASK.NUM_CLASSES": _int(1),
    "MODEL.STMASK.MASK_DIM": _int(1),
    "MODEL.STMASK.TRACK_DIM": _int(1),
    "MODEL.STMASK.HEAD.CONV_DIM": _int(1),
    "MODEL.STMASK.HEAD.NUM_TOWER_CONVS": _int(0),
    "MODEL.STMASK.PROTONET.CONV_DIM": _int(1),
    "MODEL.STMASK.PROTONET.NUM_CONVS": _int(0),
    "MODEL.STMASK.MATCHER.IOU_THRESHOLDS": _PROB,
    "MODEL.STMASK.LOSS.CLASS_WEIGHT": _NONNEG,
    "MODEL.STMASK.LOSS.OHEM_NEG_POS_RATIO": _POS,
    "MODEL.STMASK.LOSS.FOCAL_ALPHA": _PROB,
    "MODEL.STMASK.LOSS.FOCAL_GAMMA": _NONNEG,
    "MODEL.STMASK.LOSS.BOX_WEIGHT": _NONNEG,
    "MODEL.STMASK.LOSS.SMOOTH_L1_WEIGHT": _NONNEG,
    "MODEL.STMASK.LOSS.CENTERNESS_WEIGHT": _NONNEG,
    "MODEL.STMASK.LOSS.MASK_WEIGHT": _NONNEG,
    "MODEL.STMASK.LOSS.MASK_BOX_ENLARGE": _POS,
    "MODEL.STMASK.LOSS.TRACK_WEIGHT": _NONNEG,
    "MODEL.STMASK.LOSS.BOXSHIFT_WEIGHT": _NONNEG,
    "MODEL.STMASK.LOSS.MASKSHIFT_WEIGHT": _NONNEG,
    "MODEL.STMASK.TEST.SCORE_THRESH": _num(0.0, 1.0, hi_open=True),
    "MODEL.STMASK.TEST.NMS_TOP_K": _int(1),
    "MODEL.STMASK.TEST.NMS_THRESH": _PROB,
    "MODEL.STMASK.TEST.MAX_DETECTIONS": _int(1),
    "MODEL.STMASK.TEST.MASK_THRESH": _num(0.0, 1.0, hi_open=True),
    "MODEL.STMASK.TEST.MAX_TRACKS_PER_VIDEO": _int(0),  # 0 = every track (released)
    "MODEL.STMASK.TF.CORR_PATCH_SIZE": _int(1),
    "MODEL.STMASK.TF.ROI_SIZE": _int(1),
    "MODEL.STMASK.TF.CONV_DIMS": _int(1),
    "MODEL.STMASK.TF.ROI_BATCH_MULTIPLE": _int(0),
    "MODEL.STMASK.TRACKER.MASK_IOU_WEIGHT": _NONNEG,
    "MODEL.STMASK.TRACKER.BOX_IOU_WEIGHT": _NONNEG,
    "MODEL.STMASK.TRACKER.ALPHA": _NONNEG,
    "MODEL.STMASK.TRACKER.BETA": _NONNEG,
    "MODEL.STMASK.TRACKER.SCORE_DECAY": _num(0.0, 1.0),
    "MODEL.STMASK.TRACKER.MAX_MISSING_OUTPUT": _int(0),
    "MODEL.STMASK.TRACKER.MIN_MASK_PIXELS": _int(0),
}


def _describe(r):
    kind = "an integer" if r["integer"] else "a number"
    lo, hi = r["lo"], r["hi"]
    lo_s = f"{'>' if r['lo_open'] else '>='} {lo:g}" if lo > -_INF else ""
    hi_s = f"{'<' if r['hi_open'] else '<='} {hi:g}" if hi < _INF else ""
    if lo_s and hi_s:
        lb, rb = ("(" if r["lo_open"] else "["), (")" if r["hi_open"] else "]")
        return f"{kind} in {lb}{lo:g}, {hi:g}{rb}"
    return f"{kind} {lo_s or hi_s}".strip()


def _ok(v, r):
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        return False
    if not math.isfinite(float(v)):
        return False
    if r["integer"] and float(v) != int(v):
        return False
    lo_ok = v > r["lo"] if r["lo_open"] else v >= r["lo"]
    hi_ok = v < r["hi"] if r["hi_open"] else v <= r["hi"]
    return lo_ok and hi_ok


def _leaves(v):
    if isinstance(v, (list, tuple)):
        for x in v:
            yield from _leaves(x)
    else:
        yield v


def _get(cfg, key):
    node = cfg
    for part in key.split("."):
        if not hasattr(node, "get") or part not in node:
            return None, False
        node = node[part]
    return node, True


def validate_config(cfg, training=True):
    """Check every key of :data:`NUMERIC_RANGES` present in ``cfg`` and a few relations between keys; raise
    ``ConfigError`` with one line for the first problem. ``training=False`` skips the solver keys."""
    from .utils.errors import ConfigError

    for key, r in NUMERIC_RANGES.items():
        if not training and key.startswith(("SOLVER.", "DATALOADER.REPEAT")):
            continue
        v, present = _get(cfg, key)
        if not present:
            continue
        for x in _leaves(v):
            if not _ok(x, r):
                shown = v if not isinstance(v, (list, tuple)) else f"{list(v)} (element {x!r})"
                raise ConfigError(f"{key} = {shown} is out of range: allowed {_describe(r)}"
                                  + (" (each element)" if isinstance(v, (list, tuple)) else "") + ".")
    _relations(cfg, training, ConfigError)


def _relations(cfg, training, ConfigError):
    thr, present = _get(cfg, "MODEL.STMASK.MATCHER.IOU_THRESHOLDS")
    labels, _ = _get(cfg, "MODEL.STMASK.MATCHER.IOU_LABELS")
    if present and list(thr) != sorted(thr):
        raise ConfigError(f"MODEL.STMASK.MATCHER.IOU_THRESHOLDS = {list(thr)} must be increasing (e.g. [0.4, 0.5]).")
    if present and labels is not None and len(labels) != len(thr) + 1:
        raise ConfigError(f"MODEL.STMASK.MATCHER.IOU_LABELS has {len(labels)} entries; it needs one more than "
                          f"MODEL.STMASK.MATCHER.IOU_THRESHOLDS ({len(thr)}).")
    shapes, present = _get(cfg, "MODEL.ANCHOR_GENERATOR.KERNEL_SHAPES")
    if present and (not len(shapes) or any(not isinstance(s, (list, tuple)) or len(s) != 2 for s in shapes)):
        raise ConfigError(f"MODEL.ANCHOR_GENERATOR.KERNEL_SHAPES = {shapes} must be a non-empty list of [h, w] "
                          f"pairs of integers >= 1, e.g. [[3, 3], [3, 5], [5, 3]].")
    patch, present = _get(cfg, "MODEL.STMASK.TF.CORR_PATCH_SIZE")
    if present and patch % 2 == 0:
        raise ConfigError(f"MODEL.STMASK.TF.CORR_PATCH_SIZE = {patch} is out of range: allowed an odd integer >= 1.")
    if training:
        steps, present = _get(cfg, "SOLVER.STEPS")
        if present and list(steps) != sorted(steps):
            raise ConfigError(f"SOLVER.STEPS = {list(steps)} must be increasing.")
    mn, _ = _get(cfg, "INPUT.MIN_SIZE_TEST")
    mx, present = _get(cfg, "INPUT.MAX_SIZE_TEST")
    if present and mn and mn > mx:
        raise ConfigError(f"INPUT.MIN_SIZE_TEST = {mn} is larger than INPUT.MAX_SIZE_TEST = {mx}; allowed "
                          f"MIN_SIZE_TEST <= MAX_SIZE_TEST.")
