"""STMask prediction head: shared towers + FCA per-kernel prediction convs (+ optional FCB) (docs/METHOD.md §3, §5).

One module shared by all FPN levels. Per level x (N, 256, H, W):
    u = ReLU(conv3x3(x))                                   ``upfeature`` (returned as "upfeatures" for TF)
    class / box / mask / track towers: NUM_TOWER_CONVS x [conv3x3 + ReLU] on u
    FCA: per anchor kernel (kh, kw) and branch, one conv of that shape (size-preserving padding; an even kernel's
         extra row / column is below / right, see :func:`same_padding`) that predicts
         the outputs of that kernel's anchors only: box 4 + centerness 1 (one conv), class C+1 (C for focal),
         mask coefficients k, track embedding D.
    FCB (optional): the class / mask / track prediction conv of a kernel is replaced, for each anchor j the kernel
         predicts, by an ``FCB`` driven by that anchor's own (detached) box deltas (Table 5: 3 Yolact anchors, one
         3x3 kernel -> 3 FCBs per branch; FCA with one anchor per kernel -> one FCB per kernel).

Channel layout of every per-kernel conv: anchor-major, (n anchors of the kernel) x (channels of the branch); the
kernels' outputs are concatenated on the channel axis, so after NCHW -> NHWC and a reshape the anchor order is
location-major, anchor-minor with a = kernel_index * n + scale_index, i.e. the order of ``FCAAnchorGenerator``.

Inference fast path (same function as the dense path, float tolerance; tests/test_inference_equivalence.py):

``forward(features, dense_branches=False)`` skips the mask and track branches (towers + prediction convs) when
they are not FCB-calibrated; :meth:`STMaskPredictionHead.predict_at` then computes them only at the anchors that
survive NMS, on receptive-field patches of ``u`` (valid convs, activations outside the map zeroed after every
conv so the dense path's zero padding is reproduced exactly). (Fusing the towers' first convs into one conv was
measured: no gain on CPU, so the towers run separately.)

``FCA_IMPL``: "separate" runs one conv per kernel; "grouped" runs one conv with the bounding kernel
(max kh x max kw) whose weight is the per-kernel weights zero-padded (centred) and concatenated on the output
axis. Both keep the same per-kernel parameters (identical state dicts) and compute the same function.
"""
import logging
from functools import partial
from typing import Callable, Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from torch import nn

from .build import PREDICTION_HEAD_REGISTRY, build_fcb
from ..init_scope import init_scope
from .fcb import FCB
from .level_packing import level_packing

__all__ = ["AlignedConv2d", "FCAConvs", "STMaskPredictionHead", "same_padding"]

logger = logging.getLogger(__name__)

_FCB_BRANCHES = ("class", "mask", "track")


def same_padding(kh: int, kw: int):
    """(left, right, top, bottom) zero padding that keeps the spatial size for a (kh, kw) kernel.

    Taps of a kernel of size k along an axis sit at offsets -(k-1)//2 .. k//2 from the output location: odd
    kernels are centred, an even kernel's extra row goes *below* and its extra column to the *right* (its centre
    is half a cell below / right of the location; ``FCAAnchorGenerator`` shifts that kernel's anchors by the same
    half cell, so the anchor box is exactly the kernel's block of cells).
    """
    return (kw - 1) // 2, kw // 2, (kh - 1) // 2, kh // 2


class AlignedConv2d(nn.Conv2d):
    """Stride-1 ``nn.Conv2d`` whose output keeps the input size for any (kh, kw), odd or even (padding of
    :func:`same_padding`: symmetric for odd sizes, the extra row / column below / right for even ones).
    Parameters and state-dict names are those of ``nn.Conv2d``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Sequence[int]):
        kh, kw = int(kernel_size[0]), int(kernel_size[1])
        self.pad4 = same_padding(kh, kw)
        self.symmetric = kh % 2 == 1 and kw % 2 == 1
        super().__init__(in_channels, out_channels, (kh, kw), padding=((kh - 1) // 2, (kw - 1) // 2)
                         if self.symmetric else 0)

    def forward(self, x):
        if self.symmetric:
            return super().forward(x)
        return super().forward(F.pad(x, self.pad4))


class FCAConvs(nn.Module):
    """The per-kernel prediction convs of one branch.

    forward(x: (N, Cin, H, W)) -> (N, G * out_channels, H, W), kernel-major channels (G = len(kernel_shapes)).
    Parameters: ``convs.{g}.weight`` (out_channels, Cin, kh_g, kw_g) and ``convs.{g}.bias``.
    Kernels may be odd or even (paper Table 1 {3:3, 3:2, 2:3}); see :func:`same_padding` for where an even
    kernel's extra row / column goes.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_shapes: Sequence[Sequence[int]],
                 impl: str = "separate"):
        super().__init__()
        assert impl in ("grouped", "separate"), f"MODEL.STMASK.HEAD.FCA_IMPL must be grouped|separate, got {impl!r}"
        self.kernel_shapes = [tuple(int(k) for k in s) for s in kernel_shapes]
        for kh, kw in self.kernel_shapes:
            assert kh >= 1 and kw >= 1, f"FCA kernel shapes must be positive, got {(kh, kw)}"
        self.impl = impl
        self.convs = nn.ModuleList([AlignedConv2d(in_channels, out_channels, k) for k in self.kernel_shapes])
        # odd bounding kernel: (2 * max_g(kh_g // 2) + 1) x (2 * max_g(kw_g // 2) + 1), centred on the location
        self.half = (max(k[0] // 2 for k in self.kernel_shapes), max(k[1] // 2 for k in self.kernel_shapes))
        self.bound = (2 * self.half[0] + 1, 2 * self.half[1] + 1)
        for c in self.convs:
            nn.init.xavier_uniform_(c.weight)
            nn.init.zeros_(c.bias)

    def grouped_weight(self):
        """(G * out_channels, Cin, KH, KW) weight and (G * out_channels,) bias of the bounding-kernel conv (odd
        KH, KW; each kernel's taps placed at their offsets from the centre, zeros elsewhere)."""
        hh, hw = self.half
        ws = []
        for conv, (kh, kw) in zip(self.convs, self.kernel_shapes):
            top, bottom = hh - (kh - 1) // 2, hh - kh // 2
            left, right = hw - (kw - 1) // 2, hw - kw // 2
            ws.append(F.pad(conv.weight, (left, right, top, bottom)) if top or bottom or left or right
                      else conv.weight)
        return torch.cat(ws, 0), torch.cat([c.bias for c in self.convs], 0)

    def forward(self, x):
        if len(self.convs) == 1:
            return self.convs[0](x)
        if self.impl == "separate":
            return torch.cat([c(x) for c in self.convs], 1)
        weight, bias = self.grouped_weight()
        return F.conv2d(x, weight, bias, padding=self.half)


def _tower(channels: int, num_convs: int) -> nn.Sequential:
    layers = []
    for _ in range(num_convs):
        layers += [nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


def _gather_patches(up: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor, rh: int, rw: int):
    """up (C, H, W); ys, xs (M,) -> patches (M, C, 2rh+1, 2rw+1) centred on (ys, xs), zeros beyond the map, and
    ``inside`` (M, 2rh+1, 2rw+1) bool, True where the patch lies in the map."""
    hgt, wid = up.shape[-2:]
    padded = F.pad(up, (rw, rw, rh, rh))
    rows = ys[:, None] + torch.arange(2 * rh + 1, device=up.device)  # (M, Ph) in padded coordinates
    cols = xs[:, None] + torch.arange(2 * rw + 1, device=up.device)  # (M, Pw)
    patch = padded[:, rows[:, :, None], cols[:, None, :]].transpose(0, 1)  # (M, C, Ph, Pw)
    in_rows = ((rows - rh) >= 0) & ((rows - rh) < hgt)
    in_cols = ((cols - rw) >= 0) & ((cols - rw) < wid)
    inside = in_rows[:, :, None] & in_cols[:, None, :]
    return patch, inside


def _to_anchors(t: torch.Tensor, channels: int) -> torch.Tensor:
    """(N, A_loc * channels, H, W) -> (N, H * W * A_loc, channels), location-major, anchor-minor."""
    n = t.shape[0]
    return t.permute(0, 2, 3, 1).reshape(n, -1, channels)


@PREDICTION_HEAD_REGISTRY.register()
class STMaskPredictionHead(nn.Module):
    """Dense per-anchor predictions on every FPN level (shared weights).

    forward(features: list of (N, C_in, H_l, W_l), P3..P7) -> dict:
        "pred_logits": (N, A, C+1) softmax logits, background = index C ((N, A, C) for focal),
        "pred_deltas": (N, A, 4) raw (tx, ty, tw, th),
        "pred_coeffs": (N, A, k) raw mask coefficients,
        "pred_embeds": (N, A, D) L2-normalised track embeddings,
        "pred_centerness": (N, A) tanh (only when ``use_centerness``),
        "upfeatures": list of (N, conv_dim, H_l, W_l), the ``upfeature`` output per level.
    A = sum_l H_l * W_l * num_anchors, levels in input order, location-major, anchor-minor.
    With ``dense_branches=False`` (only when :attr:`supports_lazy_branches`) "pred_coeffs" and "pred_embeds" are
    left out; get them for chosen anchors with :meth:`predict_at`.
    """

    @configurable
    def __init__(
        self,
        *,
        in_channels: int,
        num_classes: int,
        kernel_shapes: Sequence[Sequence[int]] = ((3, 3), (3, 5), (5, 3)),
        anchors_per_kernel: int = 1,
        conv_dim: int = 256,
        num_tower_convs: int = 2,
        mask_dim: int = 32,
        track_dim: int = 128,
        focal: bool = False,
        use_centerness: bool = True,
        centerness_order_bug: bool = False,
        fcb_mode: str = "none",
        fcb_branches: Sequence[str] = ("class",),
        fca_impl: str = "separate",
        anchor_cells: Optional[Sequence[Sequence[float]]] = None,
        fcb_builder: Optional[Callable[..., nn.Module]] = None,
        pack_levels: bool = True,
    ):
        """
        Args:
            in_channels: channels of every input level (256).
            num_classes: C foreground classes.
            kernel_shapes: (kh, kw) of each prediction-conv kernel; kernel g predicts anchors
                g * anchors_per_kernel ... (g + 1) * anchors_per_kernel - 1 of each location.
            anchors_per_kernel: anchors predicted by each kernel (len(SCALES) in "kernel" mode).
            conv_dim: channels of ``upfeature`` and the towers.
            num_tower_convs: 3x3 conv+ReLU layers per tower.
            mask_dim: k, mask coefficients per anchor.
            track_dim: D, track embedding size.
            focal: class outputs are C sigmoid logits instead of C+1 softmax logits.
            use_centerness: predict the centerness (tanh) with the box deltas.
            centerness_order_bug: reproduce the released code's centerness order (docs/METHOD.md §12 item 10).
            fcb_mode: "none", "ada" or "ali"; FCB replaces the prediction convs of ``fcb_branches``.
            fcb_branches: subset of ("class", "mask", "track").
            fca_impl: "grouped" or "separate" (same function, see the module docstring).
            anchor_cells: (h, w) in feature cells of each of the num_kernels * anchors_per_kernel anchors of a
                location (FCB "ali" spreads each anchor's taps over its own predicted box); None = each anchor is
                its kernel's block of cells.
            fcb_builder: ``(in_channels, out_channels, kernel_size, anchor_cells) -> module`` building one FCB of
                an FCB-calibrated branch (from a config: :func:`build_fcb` with MODEL.STMASK.FCB.NAME); None =
                :class:`FCB` with ``fcb_mode``.
            pack_levels: on CPU, run all levels as one packed map (:mod:`.level_packing`; the same function, fewer
                and larger convs) instead of level by level.
        """
        super().__init__()
        self.kernel_shapes = [tuple(int(k) for k in s) for s in kernel_shapes]
        self.num_kernels = len(self.kernel_shapes)
        self.anchors_per_kernel = int(anchors_per_kernel)
        self.num_anchors = self.num_kernels * self.anchors_per_kernel
        self.num_classes = num_classes
        self.num_class_channels = num_classes if focal else num_classes + 1
        self.mask_dim = mask_dim
        self.track_dim = track_dim
        self.use_centerness = use_centerness
        self.centerness_order_bug = centerness_order_bug
        self.box_channels = 5 if use_centerness else 4
        assert fcb_mode in ("none", "ada", "ali"), f"MODEL.STMASK.FCB.MODE must be none|ada|ali, got {fcb_mode!r}"
        self.fcb_mode = fcb_mode
        self.fcb_branches = set(fcb_branches) if fcb_mode != "none" else set()
        unknown = self.fcb_branches - set(_FCB_BRANCHES)
        assert not unknown, f"MODEL.STMASK.FCB.BRANCHES must be a subset of {_FCB_BRANCHES}, got {sorted(unknown)}"
        if anchor_cells is not None:
            anchor_cells = [tuple(float(v) for v in c) for c in anchor_cells]
            assert len(anchor_cells) == self.num_anchors, (
                f"anchor_cells needs one (h, w) per anchor ({self.num_anchors}), got {len(anchor_cells)}"
            )
        self.anchor_cells = anchor_cells
        self.pack_levels = bool(pack_levels)
        # zero cells between packed levels: the largest reach of a conv of the head (3x3: 1; FCA 3x5 / 5x3: 2)
        self.packing_gap = max([1] + [k // 2 for s in self.kernel_shapes for k in s])
        if fcb_builder is None:
            fcb_builder = partial(FCB, mode=fcb_mode)

        # every part in its own init_scope: a part's initial weights do not depend on whether another part is
        # FCB-calibrated (an FCB draws other random numbers than a plain conv)
        parts = {"upfeature": lambda: nn.Sequential(nn.Conv2d(in_channels, conv_dim, 3, padding=1), nn.ReLU(True))}
        for name in ("class_tower", "box_tower", "mask_tower", "track_tower"):
            parts[name] = lambda: _tower(conv_dim, num_tower_convs)
        for name, make in parts.items():
            with init_scope(name):
                seq = make()
                for m in seq:
                    if isinstance(m, nn.Conv2d):
                        nn.init.xavier_uniform_(m.weight)
                        nn.init.zeros_(m.bias)
                setattr(self, name, seq)

        a = self.anchors_per_kernel
        with init_scope("box_pred"):
            self.box_pred = FCAConvs(conv_dim, a * self.box_channels, self.kernel_shapes, fca_impl)
        with init_scope("class_pred"):
            self.class_pred = self._branch("class", conv_dim, a * self.num_class_channels, fca_impl, fcb_builder)
        with init_scope("coeff_pred"):
            self.coeff_pred = self._branch("mask", conv_dim, a * mask_dim, fca_impl, fcb_builder)
        with init_scope("track_pred"):
            self.track_pred = self._branch("track", conv_dim, a * track_dim, fca_impl, fcb_builder)

    def _branch(self, name, in_channels, out_channels, impl, fcb_builder):
        """FCAConvs of a branch, or (FCB-calibrated branch) one ``FCB`` per anchor of a location: module
        g * anchors_per_kernel + j is kernel g's conv for its anchor j, driven by that anchor's own box deltas
        (``out_channels`` is then split evenly over the anchors of a kernel)."""
        if name in self.fcb_branches:
            a = self.anchors_per_kernel
            per_anchor = out_channels // a
            mods = []
            for g, k in enumerate(self.kernel_shapes):
                for j in range(a):
                    cells = None if self.anchor_cells is None else self.anchor_cells[g * a + j]
                    mods.append(fcb_builder(in_channels, per_anchor, k, anchor_cells=cells))
            return nn.ModuleList(mods)
        return FCAConvs(in_channels, out_channels, self.kernel_shapes, impl)

    @classmethod
    def from_config(cls, cfg, input_shape: List[ShapeSpec]):
        channels = {s.channels for s in input_shape}
        assert len(channels) == 1, f"STMaskPredictionHead is shared by all levels; got channels {channels}"
        h = cfg.MODEL.STMASK.HEAD
        # the anchor layout is the anchor generator's (built here only to read it; it has no parameters)
        from detectron2.modeling import build_anchor_generator

        ag = build_anchor_generator(cfg, [ShapeSpec(stride=s.stride or 1) for s in input_shape])
        if not hasattr(ag, "prediction_kernels"):
            raise ValueError(f"STMaskPredictionHead needs MODEL.ANCHOR_GENERATOR.NAME 'FCAAnchorGenerator', got "
                             f"{cfg.MODEL.ANCHOR_GENERATOR.NAME!r}")
        kernel_shapes, per_kernel = ag.prediction_kernels(h.USE_FCA)
        cells = ag.cell_sizes  # (h, w) in cells of every anchor of a location, in the head's order
        return {
            "in_channels": channels.pop(),
            "num_classes": cfg.MODEL.STMASK.NUM_CLASSES,
            "kernel_shapes": kernel_shapes,
            "anchors_per_kernel": per_kernel,
            "conv_dim": h.CONV_DIM,
            "num_tower_convs": h.NUM_TOWER_CONVS,
            "mask_dim": cfg.MODEL.STMASK.MASK_DIM,
            "track_dim": cfg.MODEL.STMASK.TRACK_DIM,
            "focal": cfg.MODEL.STMASK.LOSS.CLASS_TYPE == "focal",
            "use_centerness": h.USE_CENTERNESS,
            "centerness_order_bug": h.CENTERNESS_ORDER_BUG,
            "fcb_mode": cfg.MODEL.STMASK.FCB.MODE,
            "fcb_branches": list(cfg.MODEL.STMASK.FCB.BRANCHES),
            "fca_impl": h.FCA_IMPL,
            "anchor_cells": cells,
            "fcb_builder": partial(build_fcb, cfg),
            "pack_levels": h.PACK_LEVELS,
        }

    def _predict(self, pred, x, deltas, packing=None):
        """Run a branch's prediction: FCAConvs, or per-anchor FCB modules, each fed with its anchor's box deltas
        (outputs concatenated anchor-major, the FCAConvs channel layout)."""
        if isinstance(pred, FCAConvs):
            return pred(x)
        if packing is not None:
            return torch.cat([fcb(x, d, packing=packing) for fcb, d in zip(pred, deltas)], 1)
        return torch.cat([fcb(x, d) for fcb, d in zip(pred, deltas)], 1)

    @staticmethod
    def _tower(tower, x, packing=None):
        """A tower (conv + ReLU layers) on ``x``; with a ``packing``, the gaps zeroed after every ReLU."""
        if packing is None:
            return tower(x)
        for layer in tower:
            x = layer(x)
            if isinstance(layer, nn.ReLU):
                x = x * packing.mask(x)
        return x

    def _level_packing(self, features: List[torch.Tensor]):
        """The :class:`LevelPacking` to run ``features`` as one map, or None to run them level by level: packing is
        on (``pack_levels``), there are several levels, on CPU, not traced / exported, and every FCB module
        packs (:meth:`FCB.packs_levels`)."""
        if not self.pack_levels or len(features) < 2 or features[0].device.type != "cpu":
            return None
        if torch.jit.is_tracing() or torch.jit.is_scripting():
            return None
        for pred in (self.class_pred, self.coeff_pred, self.track_pred):
            if not isinstance(pred, FCAConvs):
                for fcb in pred:
                    packs = getattr(fcb, "packs_levels", None)
                    if packs is None or not packs(features[0]):
                        return None
        return level_packing([tuple(f.shape[-2:]) for f in features], self.packing_gap)

    def _maps(self, x, dense_branches: bool = True, packing=None) -> Dict[str, torch.Tensor]:
        """x: (N, C_in, H, W) one level, or the levels packed by ``packing`` -> the raw maps "up" (N, conv_dim, H, W),
        "box" (N, G * a * B, H, W), "logits", and with ``dense_branches`` "coeffs" and "embeds"."""
        up = self._tower(self.upfeature, x, packing)  # conv + ReLU
        box = self.box_pred(self._tower(self.box_tower, up, packing))  # (N, G * a * B, H, W)
        deltas = None
        if self.fcb_branches:  # anchor a = g * anchors_per_kernel + j: its deltas are channels [a*B, a*B+4)
            b = self.box_channels
            deltas = [box[:, i * b: i * b + 4] for i in range(self.num_anchors)]
        maps = {"up": up, "box": box,
                "logits": self._predict(self.class_pred, self._tower(self.class_tower, up, packing), deltas, packing)}
        if dense_branches:
            maps["coeffs"] = self._predict(self.coeff_pred, self._tower(self.mask_tower, up, packing), deltas,
                                           packing)
            maps["embeds"] = self._predict(self.track_pred, self._tower(self.track_tower, up, packing), deltas,
                                           packing)
        return maps

    @property
    def supports_lazy_branches(self) -> bool:
        """True when the mask and track branches do not depend on the box deltas (not FCB-calibrated), so they can
        be computed at chosen anchors only (:meth:`predict_at`)."""
        return not ({"mask", "track"} & self.fcb_branches)

    def forward_level(self, x, dense_branches: bool = True) -> Dict[str, torch.Tensor]:
        """x: (N, C_in, H, W) -> per-level outputs, see ``forward`` (A_l = H * W * num_anchors)."""
        return self._level_outputs(self._maps(x, dense_branches))

    def _level_outputs(self, maps: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """One level's raw maps (:meth:`_maps`) -> its outputs (anchor-major tensors, see ``forward``)."""
        box = maps["box"]
        n, _, hgt, wid = box.shape
        box_a = _to_anchors(box, self.box_channels)  # (N, A_l, B)
        out = {
            "pred_logits": _to_anchors(maps["logits"], self.num_class_channels),
            "pred_deltas": box_a[..., :4],
            "upfeature": maps["up"],
        }
        if "coeffs" in maps:
            out["pred_coeffs"] = _to_anchors(maps["coeffs"], self.mask_dim)
            out["pred_embeds"] = F.normalize(_to_anchors(maps["embeds"], self.track_dim), dim=-1)
        if self.use_centerness:
            if self.centerness_order_bug:
                # released code: per-kernel (N, H, W, a) maps concatenated on the H axis, then flattened
                ctr = box.reshape(n, self.num_kernels, self.anchors_per_kernel, self.box_channels, hgt, wid)[:, :, :, 4]
                ctr = ctr.permute(0, 1, 3, 4, 2).reshape(n, -1)
            else:
                ctr = box_a[..., 4]
            out["pred_centerness"] = torch.tanh(ctr)
        return out

    def forward(self, features: List[torch.Tensor], dense_branches: bool = True) -> Dict[str, object]:
        """features: list of (N, C_in, H_l, W_l) (P3..P7) -> dict, see the class docstring.

        ``dense_branches=False`` (inference; needs :attr:`supports_lazy_branches`) leaves out the mask and track
        branches, see :meth:`predict_at`.
        """
        if not dense_branches and not self.supports_lazy_branches:
            raise ValueError(
                f"The mask / track branches are FCB-calibrated ({sorted(self.fcb_branches)}): they need the dense path."
            )
        packing = self._level_packing(features)
        if packing is None:
            per_level = [self.forward_level(x, dense_branches) for x in features]
        else:  # all levels as one map (same function, see level_packing.py)
            maps = self._maps(packing.pack(features), dense_branches, packing)
            views = {k: packing.unpack(v) for k, v in maps.items()}
            per_level = [self._level_outputs({k: v[lvl] for k, v in views.items()}) for lvl in range(len(features))]
        out = {
            k: torch.cat([p[k] for p in per_level], 1)
            for k in ("pred_logits", "pred_deltas", "pred_coeffs", "pred_embeds", "pred_centerness")
            if k in per_level[0]
        }
        out["upfeatures"] = [p["upfeature"] for p in per_level]
        return out

    # ------------------------------------------------------------------------------------------------------------
    # mask coefficients and track embeddings at chosen anchors only (inference)
    # ------------------------------------------------------------------------------------------------------------
    def predict_at(self, upfeatures: List[torch.Tensor], anchor_indices: torch.Tensor, image_index: int = 0):
        """Mask coefficients and track embeddings of the given anchors of one image, equal (float tolerance) to
        ``forward(...)["pred_coeffs"][image_index, anchor_indices]`` and ``["pred_embeds"]``, without the dense maps.

        Args:
            upfeatures: ``forward(...)["upfeatures"]``, per level (N, conv_dim, H_l, W_l).
            anchor_indices: (M,) int64 indices into the head's A anchors (levels in order, location-major,
                anchor-minor), e.g. ``detect_frame``'s ``anchor_indices``.
            image_index: which image of the batch.
        Returns:
            coeffs (M, mask_dim) raw, embeds (M, track_dim) L2-normalised.
        """
        if not self.supports_lazy_branches:
            raise ValueError("predict_at needs mask / track branches without FCB (use the dense outputs).")
        ref = upfeatures[0]
        idx = anchor_indices.to(ref.device).long()
        coeffs = ref.new_zeros((idx.numel(), self.mask_dim))
        embeds = ref.new_zeros((idx.numel(), self.track_dim))
        if idx.numel() == 0:
            return coeffs, embeds
        KH, KW = self.coeff_pred.bound
        depth = len(self.mask_tower) // 2
        rh, rw = depth + (KH - 1) // 2, depth + (KW - 1) // 2  # receptive-field radius of the prediction
        patches, insides, sels, anchors = [], [], [], []
        start = 0
        for up in upfeatures:  # gather per level (5 levels), then one batched computation for all anchors
            hgt, wid = up.shape[-2:]
            count = hgt * wid * self.num_anchors
            sel = ((idx >= start) & (idx < start + count)).nonzero(as_tuple=True)[0]
            start += count
            if sel.numel() == 0:
                continue
            r = idx[sel] - (start - count)
            loc = r // self.num_anchors
            patch, inside = _gather_patches(up[image_index], loc // wid, loc % wid, rh, rw)
            patches.append(patch)
            insides.append(inside)
            sels.append(sel)
            anchors.append(r % self.num_anchors)
        sel = torch.cat(sels)
        c, e = self._predict_patches(torch.cat(patches), torch.cat(insides), torch.cat(anchors))
        coeffs[sel] = c.to(coeffs.dtype)
        embeds[sel] = e.to(embeds.dtype)
        return coeffs, F.normalize(embeds, dim=-1)

    def _lazy_weights(self):
        """Mask + track towers as one stack of convs (first: 2C outputs; then groups=2) and the two branches'
        prediction convs as bounding-kernel matrices."""
        layers = []
        for i in range(0, len(self.mask_tower), 2):
            cm, ct = self.mask_tower[i], self.track_tower[i]
            layers.append((torch.cat([cm.weight, ct.weight], 0), torch.cat([cm.bias, ct.bias], 0), 1 if i == 0 else 2))
        preds = []
        for pred in (self.coeff_pred, self.track_pred):
            w, b = pred.grouped_weight()  # (A * ch, C, KH, KW), bounding kernel, per-kernel weights centred
            preds.append((w.flatten(1), b))
        return layers, preds

    def _predict_patches(self, patch, inside, anchors):
        """patch (M, C, Ph, Pw) of ``upfeature`` centred on each anchor's location (zeros beyond the map), inside
        (M, Ph, Pw) bool, anchors (M,) index within the location -> coeffs (M, k), unnormalised embeds (M, D)."""
        layers, preds = self._lazy_weights()
        depth = len(layers)
        C = patch.shape[1]
        feat = patch
        for i, (w, b, groups) in enumerate(layers):
            feat = F.relu_(F.conv2d(feat, w, b, groups=groups))  # valid conv: the patch shrinks by 1 per side
            m = inside[:, i + 1: inside.shape[1] - i - 1, i + 1: inside.shape[2] - i - 1]
            feat = feat * m[:, None].to(feat.dtype)  # zero padding of the next conv in the dense path
        if depth == 0:
            feat = torch.cat([feat, feat], 1)
        fm, ft = feat.split(C, 1)  # (M, C, KH, KW) each
        ar = torch.arange(anchors.numel(), device=patch.device)
        outs = []
        for f, (w, b), ch in zip((fm, ft), preds, (self.mask_dim, self.track_dim)):
            o = torch.addmm(b, f.flatten(1), w.t())  # (M, A * ch): every kernel at the location
            outs.append(o.view(-1, self.num_anchors, ch)[ar, anchors])
        return outs[0], outs[1]
