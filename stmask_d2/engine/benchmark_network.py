"""CPU (or CUDA) forward time of STMask's network parts: backbone+FPN, prediction head, ProtoNet (library code of
``tools/benchmark_network_forward.py``).

Default: configs/youtubevis_2019/STMask_R50_DCN_ada.yaml (R50-DCN, FCA with FCB ada on the class branch), one
360x640 frame padded to 384x640, under ``torch.inference_mode()``. Prints the median of ``--iters`` runs per stage,
for each FCA_IMPL.

    python tools/benchmark_network_forward.py [--config-file CFG] [--depth 50] [--fcb ada] [--size 360x640]
        [--iters 5] [--threads 2] [--device cpu]
"""
import argparse
import os
import statistics
import time

import torch
from detectron2.layers import ShapeSpec

from ..modeling.backbone import build_stmask_resnet_fpn_backbone
from ..modeling.heads import build_prediction_head, build_protonet
from ..utils.errors import UserError, run_cli
from .setup import REPO_ROOT as ROOT  # the repository
from .setup import get_stmask_cfg

__all__ = ["get_parser", "main"]

DEFAULT_CONFIG = os.path.join(ROOT, "configs", "youtubevis_2019", "STMask_R50_DCN_ada.yaml")


def _time(fn, iters, device):
    ts = []
    for _ in range(iters):
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        out = fn()
        if device == "cuda":
            torch.cuda.synchronize()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts), out


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", default=DEFAULT_CONFIG, metavar="FILE",
                   help="model config (default: configs/youtubevis_2019/STMask_R50_DCN_ada.yaml)")
    p.add_argument("--depth", type=int, default=None, help="MODEL.RESNETS.DEPTH (default: the config's)")
    p.add_argument("--interval", type=int, default=None, help="MODEL.RESNETS.DEFORM_INTERVAL (default: the config's)")
    p.add_argument("--fcb", default=None, choices=["none", "ada", "ali"], help="MODEL.STMASK.FCB.MODE")
    p.add_argument("--size", default="360x640", help="frame HxW; padded to the size divisibility (default 360x640)")
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: leave as is)")
    p.add_argument("--device", default="cpu")
    return p


def _benchmark_network(argv):
    args = get_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    try:
        h, w = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        h = w = 0
    if h <= 0 or w <= 0:
        raise UserError(f"--size {args.size!r}: give the frame as HxW with positive integers, e.g. 360x640.")
    overrides = {k: v for k, v in (("MODEL.RESNETS.DEPTH", args.depth), ("MODEL.RESNETS.DEFORM_INTERVAL",
                 args.interval), ("MODEL.STMASK.FCB.MODE", args.fcb)) if v is not None}
    cfg = get_stmask_cfg(args.config_file, (), overrides, validate=False, freeze=False)
    dev = torch.device(args.device)
    backbone = build_stmask_resnet_fpn_backbone(cfg, ShapeSpec(channels=3)).to(dev).eval()
    shapes = backbone.output_shape()
    feats_in = [shapes[f] for f in cfg.MODEL.STMASK.IN_FEATURES]
    protonet = build_protonet(cfg, shapes[cfg.MODEL.STMASK.PROTONET.IN_FEATURE]).to(dev).eval()

    div = max(int(backbone.size_divisibility), 1)
    ph, pw = -(-h // div) * div, -(-w // div) * div
    x = torch.zeros(1, 3, ph, pw, device=dev)
    x[:, :, :h, :w] = torch.randn(1, 3, h, w, device=dev)  # the frame, zero-padded to the size divisibility
    print(f"R{cfg.MODEL.RESNETS.DEPTH} (deform {list(cfg.MODEL.RESNETS.DEFORM_ON_PER_STAGE)}, interval "
          f"{cfg.MODEL.RESNETS.DEFORM_INTERVAL}), FCB {cfg.MODEL.STMASK.FCB.MODE}, input 1x3x{ph}x{pw}, device "
          f"{args.device}, threads {torch.get_num_threads()}, median of {args.iters}")
    with torch.inference_mode():
        _time(lambda: backbone(x), 1, args.device)  # warm-up
        t_bb, feats = _time(lambda: backbone(x), args.iters, args.device)
        levels = [feats[f] for f in cfg.MODEL.STMASK.IN_FEATURES]
        t_proto, _ = _time(lambda: protonet(feats[cfg.MODEL.STMASK.PROTONET.IN_FEATURE]), args.iters, args.device)
        print(f"  backbone+FPN      {1000 * t_bb:8.1f} ms")
        print(f"  protonet          {1000 * t_proto:8.1f} ms")
        t_heads = {}
        for impl in ("separate", "grouped"):
            cfg.MODEL.STMASK.HEAD.FCA_IMPL = impl
            torch.manual_seed(0)
            head = build_prediction_head(cfg, feats_in).to(dev).eval()
            _time(lambda: head(levels), 1, args.device)
            t_heads[impl], _ = _time(lambda: head(levels), args.iters, args.device)
            print(f"  head ({impl:8s})  {1000 * t_heads[impl]:8.1f} ms")
        best = min(t_heads, key=t_heads.get)
        print(f"  total ({best})   {1000 * (t_bb + t_proto + t_heads[best]):8.1f} ms per frame")
    return 0


def main(argv=None):
    """``tools/benchmark_network_forward.py``; returns the exit code."""
    return run_cli(_benchmark_network, argv, prog="benchmark_network_forward.py")
