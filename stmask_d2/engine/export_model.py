"""Export STMask's frame network (backbone + FPN, prediction head, ProtoNet; the TF head as a second graph) to
TorchScript or ONNX for one input size; tracking and post-processing stay in Python (``demo/demo.py --exported``).
Library code of ``tools/export_model.py``.

    python tools/export_model.py --config-file configs/youtubevis_2019/STMask_R50_DCN_ada_TF.yaml \\
        --format onnx --output output/stmask.onnx [--height 384 --width 640] [--check] --opts MODEL.WEIGHTS model.pth

``--height/--width`` is the padded network input (multiples of 32); the default is the size a video of
``--video-size HxW`` (default 360x640) gets after the config's test resize and padding. ONNX writes FILE.onnx and,
with temporal fusion, FILE.tf.onnx. ``--check`` runs the exported graphs (onnxruntime / TorchScript) on a random
input against the eager model and prints the largest differences. Bad input or an operator that cannot be
exported: one line on stderr, exit code 2.
"""
import argparse
import os

from ..utils.errors import run_cli

__all__ = ["get_parser", "build_model", "input_size_for_video", "check_exported", "benchmark_exported", "main"]


def get_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config-file", default="configs/youtubevis_2019/STMask_R50_DCN_ada_TF.yaml", metavar="FILE")
    p.add_argument("--format", choices=["torchscript", "onnx"], required=True)
    p.add_argument("--output", required=True, metavar="FILE", help="e.g. model.onnx or model.pt")
    p.add_argument("--height", type=int, default=0, help="padded network input height (multiple of 32)")
    p.add_argument("--width", type=int, default=0, help="padded network input width (multiple of 32)")
    p.add_argument("--video-size", default="360x640", help="HxW of the videos (sets --height/--width when unset)")
    p.add_argument("--check", action="store_true", help="compare the exported graphs with the eager model")
    p.add_argument("--benchmark", type=int, default=0, metavar="N",
                   help="time N runs of the exported frame network against the eager one (median, same input)")
    p.add_argument("--threads", type=int, default=0, help="torch / onnxruntime intra-op threads (0: default)")
    p.add_argument("--opts", default=[], nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    return p


def input_size_for_video(model, video_hw):
    """The padded network input of a (h, w) video: the model's test resize, then padding to size divisibility."""
    import numpy as np

    h, w = video_hw
    tfm = model.test_resize.get_transform(np.zeros((h, w, 3), np.uint8))
    rh, rw = tfm.new_h, tfm.new_w
    d = model.backbone.size_divisibility or 1
    return -(-rh // d) * d, -(-rw // d) * d


def build_model(config_file, opts):
    """(cfg, model in eval mode on the CPU) of ``config_file`` + ``opts``; MODEL.WEIGHTS loaded when set. Bad
    config input or weights: one-line user errors."""
    from detectron2.modeling import build_model as d2_build

    from .checkpoint import AtomicDetectionCheckpointer
    from .setup import get_stmask_cfg

    cfg = get_stmask_cfg(config_file, opts, {"MODEL.DEVICE": "cpu"})
    model = d2_build(cfg).eval()
    if cfg.MODEL.WEIGHTS:
        AtomicDetectionCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    return cfg, model


def check_exported(model, path):
    """Largest |exported - eager| of each output on a random input, and of the TF graph. Returns the max."""
    import torch

    from ..export import ExportedNetwork, FrameNetwork, TFNetwork

    net = ExportedNetwork(path)
    h, w = net.input_size
    x = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ref = dict(zip(FrameNetwork(model).output_names, FrameNetwork(model)(x)))
    got = net.run(x)
    worst = 0.0
    for k, v in ref.items():
        d = (got[k] - v).abs().max().item()
        worst = max(worst, d / max(1.0, v.abs().max().item()))
        print(f"    {k:16s} {tuple(v.shape)}  max |exported - eager| {d:.2e}")
    if net.has_tf:
        boxes = torch.tensor([[4.0, 6.0, w * 0.6, h * 0.5], [w * 0.2, h * 0.3, w * 0.9, h * 0.95]])
        args = (ref["tf_map"], ref["tf_map"].roll(1, -1), ref["tf_up"], ref["tf_up"].roll(1, -1), boxes)
        with torch.inference_mode():
            rd, rc = TFNetwork(model.tf_head)(*args)
        d, c = net.run_tf(*args)
        for k, a, b in (("box_deltas", d, rd), ("coeff_deltas", c, rc)):
            e = (a - b).abs().max().item()
            worst = max(worst, e / max(1.0, b.abs().max().item()))
            print(f"    TF {k:13s} {tuple(b.shape)}  max |exported - eager| {e:.2e}")
    return worst


def benchmark_exported(model, path, runs, threads=0):
    """Median seconds of the exported frame network and of the eager one (inference mode) on one input."""
    import statistics
    import time

    import torch

    from ..export import ExportedNetwork, FrameNetwork

    net = ExportedNetwork(path, threads=threads)
    h, w = net.input_size
    x = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(2))
    eager = FrameNetwork(model).eval()
    times = {"exported": [], "eager": []}
    with torch.inference_mode():
        for r in range(runs + 1):  # alternating; the first round warms up
            for name, fn in (("exported", lambda: net.run(x)), ("eager", lambda: eager(x))):
                t0 = time.perf_counter()
                fn()
                if r:
                    times[name].append(time.perf_counter() - t0)
    return statistics.median(times["exported"]), statistics.median(times["eager"]), net.kind


def _export_cli(argv):
    args = get_parser().parse_args(argv)
    if args.threads > 0:
        import torch

        torch.set_num_threads(args.threads)
    from ..export import ExportError, export_model

    cfg, model = build_model(args.config_file, args.opts)
    if args.height <= 0 or args.width <= 0:
        try:
            vh, vw = (int(v) for v in args.video_size.lower().split("x"))
        except ValueError:
            raise ExportError(f"--video-size must be HxW, e.g. 360x640, got {args.video_size!r}.") from None
        args.height, args.width = input_size_for_video(model, (vh, vw))
    files = export_model(model, args.output, args.format, args.height, args.width)
    for f in files:
        print(f"wrote {f} ({os.path.getsize(f) / 2**20:.1f} MiB), input 1x3x{args.height}x{args.width}")
    if args.check:
        worst = check_exported(model, args.output)
        print(f"largest difference relative to each output's scale: {worst:.2e}")
    if args.benchmark > 0:
        from ..utils.calibration import format_calibration, resnet18_calibration

        print(format_calibration(resnet18_calibration()))
        ex, ea, kind = benchmark_exported(model, args.output, args.benchmark, args.threads)
        print(f"frame network {args.height}x{args.width}, median of {args.benchmark}: {kind} {1000 * ex:.1f} ms, "
              f"eager PyTorch {1000 * ea:.1f} ms, ratio {ex / ea:.2f}")
    return 0



def main(argv=None):
    """``tools/export_model.py``; returns the exit code (2: bad input or an operator that cannot be exported,
    printed as one line)."""
    return run_cli(_export_cli, argv, prog="export_model.py")
