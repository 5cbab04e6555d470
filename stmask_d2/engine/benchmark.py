"""End-to-end online benchmark of STMask (and Detectron2's Mask R-CNN R50-FPN for comparison).

Library code of ``tools/benchmark.py``. Streams a procedural synthetic video (moving textured shapes on a textured
background, :func:`stmask_d2.data.synthetic.synthetic_video`, generated one frame at a time in memory; default
360x640) through ``model.track_frames`` + RLE encoding + per-track aggregation
(``VideoResults``) -- the full online path of the evaluator and the demo -- and prints a table:

* per-stage time (ms/frame and % of the total): backbone+FPN, head, NMS+masks, TF, tracker, paste+RLE, plus
  "other" (pre-processing, resize, Python glue = end-to-end time minus the timed stages);
* end-to-end FPS, peak memory (CPU: peak resident set size, VmHWM of /proc/self/status; CUDA:
  ``torch.cuda.max_memory_allocated``), detections and emitted tracks per frame;
* FLOPs of the frame-level network for one frame (fvcore ``FlopCountAnalysis`` on backbone+FPN, prediction head
  and ProtoNet; deformable convs are counted with a conv-like handle; other unsupported ops are listed);
* Mask R-CNN R50-FPN (model_zoo ``mask_rcnn_R_50_FPN_3x``, random init, ``SCORE_THRESH_TEST 0``,
  ``DETECTIONS_PER_IMAGE 100`` so its mask head runs on 100 boxes as in use) on the same frames resized the same
  way, timed over forward (incl. mask pasting at the frame size) + RLE encoding of its masks, and the ratio.

Untrained weights and detection load (``--dets-per-frame``, default 15): a randomly initialised STMask scores every
anchor near 1/(C+1), so with the configured threshold it yields either nothing or hundreds of boxes. The flag sets
``MODEL.STMASK.TEST.SCORE_THRESH 0``, ``NMS_TOP_K = max(200, 4 N)`` and ``MAX_DETECTIONS = N``: Fast NMS runs on the
best-scoring anchors and its best N survivors (``detect_frame`` caps the cross-class path at MAX_DETECTIONS) reach
mask assembly and the tracker, like a trained model on a busy YouTube-VIS frame. ``--dets-per-frame 0`` keeps the
config's own test settings (use it with trained ``--weights``). The mean detection and emitted-track counts are
printed so the load is visible.

    python tools/benchmark.py [--config-file configs/youtubevis_2019/STMask_R50_DCN_ada_TF.yaml] [--frames 20]
        [--warmup 3] [--device cpu|cuda] [--fp16] [--height 360 --width 640] [--weights PATH] [--skip-maskrcnn]
        [--long-video N] [--threads T] [--compile] [--compare nofold,channels_last,bf16 [--rounds 3]]
        [--no-calibration] [--opts KEY VALUE ...]

Calibration: unless ``--no-calibration``, the time of torchvision's ResNet-18 (fp32, batch 8, 224x224, forward, 2
CPU threads, median of 5; ``stmask_d2.utils.calibration``) is printed first (and, with ``--device cuda``, the same
network on the GPU), so that absolute times of two machines or two runs can be compared.

``--compare V1,V2,...`` measures, in the same run, the per-frame time of variants of the configured model against
it, alternating baseline and variant videos for ``--rounds`` rounds (median per-frame times, so that a load change
of a shared machine hits both): ``nofold`` (BatchNorm not folded), ``fold`` (folded), ``channels_last`` /
``contiguous`` (memory format), ``bf16`` / ``fp32`` (MODEL.STMASK.INFERENCE.DTYPE; bf16 only where the CPU has
native bf16), ``dcn_grid_sample`` / ``dcn_torchvision`` (the CPU deformable conv as grid_sample + matmul, the
previous fast path, or torchvision's own op, instead of the channels-last gather), ``compile`` (torch.compile of
the frame network).

A script that prints numbers; it never asserts timings.
"""
import argparse
import logging
import time
from contextlib import nullcontext

import numpy as np
import torch

from ..data.synthetic import synthetic_video as _synthetic_video
from ..utils.errors import InputError
from ..utils.memory import current_memory_mib, peak_memory_mib

__all__ = ["get_parser", "main", "synthetic_video", "build_stmask", "build_mask_rcnn", "run_stmask", "run_mask_rcnn",
           "count_flops", "run_compare", "COMPARE_VARIANTS"]

STAGES = ["backbone+fpn", "head", "nms+masks", "tf", "tracker", "paste+rle"]
STAGE_TITLES = {"backbone+fpn": "backbone+FPN", "head": "head", "nms+masks": "NMS+masks", "tf": "TF",
                "tracker": "tracker", "paste+rle": "paste+RLE"}
DEFAULT_CONFIG = "configs/youtubevis_2019/STMask_R50_DCN_ada_TF.yaml"
MASK_RCNN_CONFIG = "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml"


def get_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", default=DEFAULT_CONFIG, metavar="FILE")
    p.add_argument("--frames", type=int, default=20, help="timed frames (one video)")
    p.add_argument("--warmup", type=int, default=3, help="untimed frames run first (a separate short video)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--fp16", action="store_true", help="CUDA autocast (float16) for both models")
    p.add_argument("--height", type=int, default=360)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--weights", default="", help="STMask weights (default: random init)")
    p.add_argument("--dets-per-frame", type=int, default=15,
                   help="force about N detections per frame for untrained weights (0: keep the config's)")
    p.add_argument("--skip-maskrcnn", action="store_true", help="do not time Mask R-CNN")
    p.add_argument("--skip-flops", action="store_true", help="do not count FLOPs")
    p.add_argument("--long-video", type=int, default=0, metavar="N",
                   help="also stream N frames and report peak memory at 100 and at N frames")
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: PyTorch's default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the frame network (backbone+FPN, prediction head, ProtoNet)")
    p.add_argument("--compare", default="", metavar="V1,V2",
                   help="variants timed against the configured model in the same run (see above)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds of --compare")
    p.add_argument("--no-calibration", action="store_true", help="do not time the ResNet-18 calibration")
    p.add_argument("--opts", default=[], nargs=argparse.REMAINDER, help="STMask config overrides KEY VALUE ...")
    return p


def synthetic_video(num_frames, height, width, seed=0, num_objects=8):
    """The benchmark's video: :func:`stmask_d2.data.synthetic.synthetic_video` with ``num_objects`` objects at a
    time (HxWx3 uint8 RGB frames, deterministic, one frame in memory at a time)."""
    return _synthetic_video(num_frames, height, width, seed=seed, num_objects=num_objects)


# ---------------------------------------------------------------------------------------------------------------
# models
# ---------------------------------------------------------------------------------------------------------------
def stmask_overrides(args):
    """The benchmark's settings over the config and ``--opts``: weights, device and (``--dets-per-frame N``) the
    detection load of a trained model on a busy frame."""
    out = {"MODEL.WEIGHTS": args.weights, "MODEL.DEVICE": args.device}
    if args.dets_per_frame > 0:
        out.update({"MODEL.STMASK.TEST.SCORE_THRESH": 0.0,
                    "MODEL.STMASK.TEST.NMS_TOP_K": max(200, 4 * args.dets_per_frame),
                    "MODEL.STMASK.TEST.MAX_DETECTIONS": args.dets_per_frame})
    return out


def build_stmask(args):
    """(cfg, model in eval mode) of ``--config-file`` + ``--opts`` + :func:`stmask_overrides`; a missing / corrupt
    weights file is a one-line user error of the checkpointer."""
    from detectron2.modeling import build_model

    from .. import register_all
    from .checkpoint import AtomicDetectionCheckpointer
    from .setup import get_stmask_cfg

    register_all()  # the model parts and the builtin dataset splits
    cfg = get_stmask_cfg(args.config_file, args.opts, stmask_overrides(args))
    model = build_model(cfg).eval()
    if args.weights:
        AtomicDetectionCheckpointer(model).load(args.weights)
    return cfg, model


def build_mask_rcnn(args, stmask_cfg):
    from detectron2 import model_zoo
    from detectron2.modeling import build_model

    cfg = model_zoo.get_config(MASK_RCNN_CONFIG)
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.DEVICE = args.device
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.0
    cfg.TEST.DETECTIONS_PER_IMAGE = 100
    cfg.INPUT.MIN_SIZE_TEST = stmask_cfg.INPUT.MIN_SIZE_TEST  # same resize as STMask
    cfg.INPUT.MAX_SIZE_TEST = stmask_cfg.INPUT.MAX_SIZE_TEST
    cfg.freeze()
    return cfg, build_model(cfg).eval()


class _FrameNet(torch.nn.Module):
    """backbone+FPN -> prediction head + ProtoNet of STMask, for FLOP counting."""

    def __init__(self, model):
        super().__init__()
        self.m = model

    def forward(self, x):
        feats = self.m.backbone(x)
        # as run at inference: without the mask / track maps when they are computed at the detections only
        lazy = getattr(self.m.head, "supports_lazy_branches", False)
        head = self.m.head([feats[f] for f in self.m.in_features], **({"dense_branches": False} if lazy else {}))
        protos = self.m.protonet(feats[self.m.protonet_in_feature])
        outs = [protos] + [v for k, v in sorted(head.items()) if isinstance(v, torch.Tensor)]
        for v in head.values():
            if isinstance(v, (list, tuple)):
                outs.extend(t for t in v if isinstance(t, torch.Tensor))
        return tuple(outs)


def _deform_conv_flop(inputs, outputs):
    """torchvision::deform_conv2d(input, weight, offset, mask, bias, ...): count it as the conv it computes
    (one multiply-add per weight per output position; bilinear sampling not counted)."""
    from fvcore.nn.jit_handles import get_shape

    w = get_shape(inputs[1])  # (Cout, Cin/groups, kh, kw)
    out = get_shape(outputs[0])  # (N, Cout, Ho, Wo)
    return int(np.prod(out)) * int(np.prod(w[1:]))


def count_flops(model, image_tensor):
    """(GFLOPs, {unsupported op: count}) of the frame-level network for one preprocessed frame."""
    from fvcore.nn import FlopCountAnalysis

    net = _FrameNet(model).eval()
    with torch.no_grad():
        fca = FlopCountAnalysis(net, (image_tensor,))
        fca.set_op_handle("torchvision::deform_conv2d", _deform_conv_flop)
        fca.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
        total = fca.total()
        return total / 1e9, dict(fca.unsupported_ops())


def count_flops_mask_rcnn(model, frame_bgr_chw, h, w):
    from detectron2.utils.analysis import FlopCountAnalysis

    with torch.no_grad():
        fca = FlopCountAnalysis(model, [{"image": frame_bgr_chw, "height": h, "width": w}])
        fca.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
        return fca.total() / 1e9, dict(fca.unsupported_ops())


# ---------------------------------------------------------------------------------------------------------------
# runs
# ---------------------------------------------------------------------------------------------------------------
def _sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def _autocast(args):
    return torch.autocast("cuda", dtype=torch.float16) if args.fp16 else nullcontext()


class _TimedFrames:
    """Wraps a frame generator, accumulating the time spent generating frames (excluded from the model's time)."""

    def __init__(self, frames, to_bgr):
        self.frames, self.to_bgr, self.gen_s, self.count = frames, to_bgr, 0.0, 0

    def __iter__(self):
        it = iter(self.frames)
        while True:
            t = time.perf_counter()
            try:
                f = next(it)
            except StopIteration:
                return
            if self.to_bgr:
                f = np.ascontiguousarray(f[:, :, ::-1])
            self.gen_s += time.perf_counter() - t
            self.count += 1
            yield f


def run_stmask(model, args, num_frames, seed, on_frame=None):
    """Streams one synthetic video through the full online path. Returns (wall seconds excl. frame generation,
    frames, detections per frame, emitted tracks per frame)."""
    from ..layers import encode_masks_rle
    from ..tracking import VideoResults

    frames = _TimedFrames(synthetic_video(num_frames, args.height, args.width, seed), model.input_format == "BGR")
    results = VideoResults()
    emitted = []
    _sync(args.device)
    start = time.perf_counter()
    with _autocast(args):
        for t, inst in enumerate(model.track_frames(frames, args.height, args.width)):
            with model.timer("paste+rle"):
                rles = encode_masks_rle(inst.pred_masks) if len(inst) else []
                results.add_frame(t, inst.track_ids, inst.scores, inst.pred_classes, rles)
            emitted.append(len(inst))
            if on_frame is not None:
                on_frame(t + 1)
    _sync(args.device)
    wall = time.perf_counter() - start - frames.gen_s
    results.finalize(frames.count, model.max_tracks_per_video)
    return wall, frames.count, emitted


def run_mask_rcnn(model, args, num_frames, seed):
    """Times Mask R-CNN on the benchmark's frames. Returns (seconds, frames, detections per frame)."""
    from ..layers import encode_masks_rle

    total, n, dets = 0.0, 0, []
    with _autocast(args), torch.inference_mode():
        for frame in synthetic_video(num_frames, args.height, args.width, seed):
            image = torch.as_tensor(np.ascontiguousarray(frame[:, :, ::-1].transpose(2, 0, 1)))  # BGR CHW
            _sync(args.device)
            t = time.perf_counter()
            # Detectron2's DefaultPredictor resizes outside the model: do it here, inside the timed region
            inp = _resize_like_d2(image, model_cfg=args._mrcnn_cfg)
            out = model([{"image": inp, "height": args.height, "width": args.width}])[0]["instances"]
            encode_masks_rle(out.pred_masks)
            _sync(args.device)
            total += time.perf_counter() - t
            n += 1
            dets.append(len(out))
    return total, n, dets


def _resize_like_d2(image_chw, model_cfg):
    from detectron2.data import transforms as T

    aug = T.ResizeShortestEdge(model_cfg.INPUT.MIN_SIZE_TEST, model_cfg.INPUT.MAX_SIZE_TEST)
    hwc = image_chw.numpy().transpose(1, 2, 0)
    out = aug.get_transform(hwc).apply_image(hwc)
    return torch.as_tensor(np.ascontiguousarray(out.transpose(2, 0, 1)))


# ---------------------------------------------------------------------------------------------------------------
def _fmt_table(rows, header):
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    line = "  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths)))
    out = [line, "-" * len(line)]
    for r in rows:
        out.append("  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    return "\n".join(out)


COMPARE_VARIANTS = ("nofold", "fold", "channels_last", "contiguous", "bf16", "fp32", "dcn_grid_sample",
                    "dcn_torchvision", "compile")


def compile_frame_network(model):
    """torch.compile (in place, ``nn.Module.compile``) the backbone+FPN, the prediction head and ProtoNet."""
    for m in (model.backbone, model.head, model.protonet):
        m.compile()


def _set_variant(model, variant, on):
    """Switches ``model`` to ``variant`` (on=True) or back to the configured model (on=False); returns a note."""
    from ..modeling.fold_bn import disable_bn_folding, enable_bn_folding
    from ..modeling.inference_opts import cpu_has_native_bf16

    base = model._bench_base
    if variant in ("nofold", "fold"):
        want = (variant == "fold") if on else base["fold"]
        (enable_bn_folding if want else disable_bn_folding)(model.backbone)
    elif variant in ("channels_last", "contiguous"):
        want = (variant == "channels_last") if on else base["channels_last"]
        model.channels_last = want
        if not want and model._channels_last_params:
            with torch.inference_mode(False), torch.no_grad():
                for m in (model.backbone, model.head, model.protonet, model.tf_head):
                    if m is not None:
                        m.to(memory_format=torch.contiguous_format)
            model._channels_last_params = False
    elif variant in ("bf16", "fp32"):
        model.inference_dtype = ("bfloat16" if variant == "bf16" else "float32") if on else base["dtype"]
        if variant == "bf16" and on and model.device.type == "cpu" and not cpu_has_native_bf16():
            return "no native bf16 on this CPU: runs fp32"
    elif variant in ("dcn_grid_sample", "dcn_torchvision"):
        from ..layers.deform_conv import cpu_deform_conv_impl

        cpu_deform_conv_impl(variant[4:] if on else base["dcn"])
    elif variant == "compile":
        if on and not base.get("compiled"):
            compile_frame_network(model)
            base["compiled"] = True
        # nn.Module.compile is not undone: the baseline after this runs compiled too, so compile goes last
    return ""


def run_compare(model, args, variants):
    """Median per-frame times of the configured model and of each variant, alternating videos."""
    import statistics

    from ..layers.deform_conv import cpu_deform_conv_impl
    from ..utils.timer import NullTimer

    model.timer = NullTimer()
    model._bench_base = {"fold": any("forward" in m.__dict__ for m in model.backbone.modules()),
                         "channels_last": model.channels_last, "dtype": model.inference_dtype,
                         "dcn": cpu_deform_conv_impl()}
    variants = sorted(variants, key=lambda v: v == "compile")  # compile cannot be undone: last
    rows = []
    for v in variants:
        base_t, var_t, note = [], [], ""
        for r in range(max(1, args.rounds)):
            for which in ("base", "variant"):
                note = _set_variant(model, v, which == "variant") or note
                if r == 0:  # warm-up of this setting (caches, oneDNN primitives, compilation)
                    run_stmask(model, args, 2, seed=args.seed + 2000)
                wall, n, _ = run_stmask(model, args, args.frames, seed=args.seed)
                (base_t if which == "base" else var_t).append(1000.0 * wall / n)
        _set_variant(model, v, False)
        b, t = statistics.median(base_t), statistics.median(var_t)
        rows.append([v + (f" ({note})" if note else ""), f"{b:.1f}", f"{t:.1f}", f"{t / b:.3f}"])
    print()
    print(f"variants against the configured model, same run ({args.rounds} alternating rounds of {args.frames} "
          f"frames, median ms/frame):")
    print(_fmt_table(rows, ["variant", "configured ms", "variant ms", "variant / configured"]))


# ---------------------------------------------------------------------------------------------------------------
# main, in named steps
# ---------------------------------------------------------------------------------------------------------------
def check_args(args):
    """The flags that cannot work, as one-line user errors; returns the ``--compare`` variants."""
    if args.device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda but CUDA is not available (use --device cpu)")
    if args.fp16 and args.device != "cuda":
        raise InputError("--fp16 needs --device cuda (autocast float16 is a CUDA feature here)")
    if args.frames < 1 or args.warmup < 0 or args.height < 32 or args.width < 32:
        raise InputError("--frames must be >= 1, --warmup >= 0, --height/--width >= 32")
    variants = [v for v in args.compare.split(",") if v]
    bad = [v for v in variants if v not in COMPARE_VARIANTS]
    if bad:
        raise InputError(f"--compare: unknown variant(s) {bad}; choose among {', '.join(COMPARE_VARIANTS)}")
    return variants


def print_calibration(args):
    """The machine's speed (ResNet-18 time; on the GPU too with ``--device cuda``), unless --no-calibration."""
    if args.no_calibration:
        return
    from ..utils.calibration import format_calibration, resnet18_calibration

    print(format_calibration(resnet18_calibration("cpu", threads=2)), flush=True)
    if args.device == "cuda":
        print(format_calibration(resnet18_calibration("cuda"), device=torch.cuda.get_device_name()), flush=True)


def count_detections(model):
    """Wrap the model's frame-level detector so that it appends its number of detections to the returned list
    (no change to what it computes)."""
    counts = []
    detect = model._detect

    def counting_detect(*a, **k):
        d = detect(*a, **k)
        counts.append(len(d))
        return d

    model._detect = counting_detect
    return counts


def time_stmask(model, args, det_counts):
    """Warm-up video, then the timed video with the per-stage timer. Returns (timer, wall seconds, frames, emitted
    tracks per frame, peak memory MiB)."""
    from ..utils.timer import StageTimer

    if args.warmup:
        model.timer = StageTimer(cuda_sync=args.device == "cuda")
        run_stmask(model, args, args.warmup, seed=args.seed + 1000)
    det_counts.clear()
    timer = StageTimer(cuda_sync=args.device == "cuda")
    model.timer = timer
    wall, n, emitted = run_stmask(model, args, args.frames, seed=args.seed)
    return timer, wall, n, emitted, peak_memory_mib(args.device)


def _mem_kind(args):
    return "peak GPU memory allocated" if args.device == "cuda" else "peak RSS"


def report_stmask(cfg, args, timer, wall, n, emitted, det_counts, peak, mem_start):
    """The settings, the per-stage table, FPS and peak memory of the timed STMask video."""
    ms = lambda s: 1000.0 * s / n  # noqa: E731
    timed = sum(timer.totals.get(s, 0.0) for s in STAGES)
    other = max(wall - timed, 0.0)
    rows = []
    for s in STAGES:
        v = timer.totals.get(s, 0.0)
        rows.append([STAGE_TITLES[s], f"{ms(v):.1f}", f"{100 * v / wall:.1f}%"])
    rows.append(["other (preprocess, glue)", f"{ms(other):.1f}", f"{100 * other / wall:.1f}%"])
    rows.append(["total", f"{ms(wall):.1f}", "100.0%"])

    th, tw = cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST
    print(f"STMask benchmark: {args.config_file}  weights: {args.weights or 'random init'}")
    inf = cfg.MODEL.STMASK.INFERENCE
    print(f"inference options: FOLD_BN {inf.FOLD_BN}  CHANNELS_LAST {inf.CHANNELS_LAST}  DTYPE {inf.DTYPE}"
          f"{'  torch.compile' if args.compile else ''}")
    print(f"device: {args.device}{' fp16' if args.fp16 else ''}  torch threads: {torch.get_num_threads()}  "
          f"frames: {n} (+{args.warmup} warm-up)  video: {args.height}x{args.width} "
          f"(resize shortest edge {th}, max {tw})")
    if args.dets_per_frame > 0:
        print(f"detection load: SCORE_THRESH 0, NMS_TOP_K {cfg.MODEL.STMASK.TEST.NMS_TOP_K}, "
              f"MAX_DETECTIONS {args.dets_per_frame} "
              f"(--dets-per-frame; untrained weights)")
    print(f"detections/frame: {np.mean(det_counts) if det_counts else 0:.1f}   "
          f"emitted tracks/frame: {np.mean(emitted) if emitted else 0:.1f}")
    print()
    print(_fmt_table(rows, ["stage", "ms/frame", "% total"]))
    print()
    print(f"STMask end-to-end: {n / wall:.2f} FPS ({ms(wall):.1f} ms/frame)")
    print(f"STMask {_mem_kind(args)}: {peak:.0f} MiB (process before the run: {mem_start:.0f} MiB)")


def _first_line(e):
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"


def report_stmask_flops(model, args):
    """GFLOPs of STMask's frame network on one preprocessed frame (informative: a failure prints n/a)."""
    try:
        frame = next(synthetic_video(1, args.height, args.width, args.seed))
        if model.input_format == "BGR":
            frame = np.ascontiguousarray(frame[:, :, ::-1])
        tfm = model.test_resize.get_transform(frame)
        images = model.preprocess([model._frame_tensor(frame, tfm)])
        gflops, unsupported = count_flops(model, images.tensor)
        h, w = images.tensor.shape[-2:]
        note = f"; not counted: {', '.join(f'{k} x{v}' for k, v in sorted(unsupported.items()))}" \
            if unsupported else ""
        lazy = getattr(model.head, "supports_lazy_branches", False)
        print(f"STMask frame network (backbone+FPN+head+ProtoNet) at {h}x{w}: {gflops:.1f} GFLOPs/frame "
              f"(fvcore, 1 FLOP = 1 multiply-add; deform convs counted as convs{note}"
              f"{'; mask/track branches run at the detections only, not counted' if lazy else ''})")
    except Exception as e:  # FLOP counting is informative only
        print(f"STMask FLOPs: n/a ({_first_line(e)})")


def compare_mask_rcnn(args, cfg, stmask_ms):
    """Time (and count the FLOPs of) Mask R-CNN R50-FPN on the same frames; prints the ratio to STMask."""
    mcfg, mrcnn = build_mask_rcnn(args, cfg)
    args._mrcnn_cfg = mcfg
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    if args.warmup:
        run_mask_rcnn(mrcnn, args, args.warmup, seed=args.seed + 1000)
    m_total, m_n, m_dets = run_mask_rcnn(mrcnn, args, args.frames, seed=args.seed)
    m_ms = 1000.0 * m_total / m_n
    print()
    print(f"Mask R-CNN R50-FPN ({MASK_RCNN_CONFIG}, random init, DETECTIONS_PER_IMAGE 100, forward incl. "
          f"resize + mask paste + RLE): {m_ms:.1f} ms/frame, {m_n / m_total:.2f} FPS, "
          f"{sum(m_dets) / max(len(m_dets), 1):.1f} detections/frame (its mask head runs on each)")
    if args.device == "cuda":
        print(f"Mask R-CNN peak GPU memory allocated: {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")
    if not args.skip_flops:
        try:
            frame = next(synthetic_video(1, args.height, args.width, args.seed))
            img = _resize_like_d2(torch.as_tensor(np.ascontiguousarray(frame[:, :, ::-1].transpose(2, 0, 1))), mcfg)
            gf, unsup = count_flops_mask_rcnn(mrcnn, img, args.height, args.width)
            print(f"Mask R-CNN FLOPs (detectron2.utils.analysis, whole model): {gf:.1f} GFLOPs/frame"
                  + (f"; not counted: {', '.join(sorted(unsup))}" if unsup else ""))
        except Exception as e:
            print(f"Mask R-CNN FLOPs: n/a ({_first_line(e)})")
    print(f"ratio STMask / Mask R-CNN time per frame: {stmask_ms / m_ms:.2f}")


def report_long_video(model, args):
    """Stream ``--long-video`` frames; memory after 100 frames and at the end must be about the same."""
    from ..utils.timer import StageTimer

    marks = {}
    checkpoints = {min(100, args.long_video), args.long_video}

    def on_frame(t):
        if t in checkpoints:
            marks[t] = (peak_memory_mib(args.device), current_memory_mib(args.device))

    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    model.timer = StageTimer(cuda_sync=False)
    lw, ln, _ = run_stmask(model, args, args.long_video, seed=args.seed + 1, on_frame=on_frame)
    print()
    print(f"long video: {ln} frames, {ln / lw:.2f} FPS")
    for t in sorted(marks):
        print(f"  after {t:6d} frames: {_mem_kind(args)} {marks[t][0]:.0f} MiB, current {marks[t][1]:.0f} MiB")


def main(argv=None):
    """The benchmark (see the module docstring); returns 0. Bad flags / config / weights raise user errors."""
    args = get_parser().parse_args(argv)
    variants = check_args(args)
    print_calibration(args)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    logging.getLogger("detectron2").setLevel(logging.ERROR)

    cfg, model = build_stmask(args)
    if args.compile:
        compile_frame_network(model)
    mem_start = current_memory_mib(args.device)
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    det_counts = count_detections(model)
    timer, wall, n, emitted, peak = time_stmask(model, args, det_counts)
    report_stmask(cfg, args, timer, wall, n, emitted, det_counts, peak, mem_start)
    if not args.skip_flops:
        report_stmask_flops(model, args)
    if not args.skip_maskrcnn:
        compare_mask_rcnn(args, cfg, 1000.0 * wall / n)
    if variants:
        run_compare(model, args, variants)
    if args.long_video > 0:
        report_long_video(model, args)
    return 0
