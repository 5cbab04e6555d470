"""FCB, feature calibration for boxes (docs/METHOD.md §4, paper eqs. 6-9): a calibrated prediction conv.

``out = Conv_k(ReLU(DeformConv_k(x, offset(box_deltas.detach()))))`` where k = (kh, kw) is the FCA kernel of
the anchor whose box deltas drive the offsets. Standalone: any head that predicts per-location box deltas can
replace a prediction conv by this module.
"""
from typing import Optional, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from detectron2.config import configurable

from ...layers import DeformConv2d, aligned_offsets
from .build import FCB_REGISTRY

__all__ = ["FCB"]


@FCB_REGISTRY.register()
class FCB(nn.Module):
    """Box-calibrated prediction conv.

    Shapes: x (N, Cin, H, W), box_deltas (N, 4, H, W) -> (N, Cout, H, W) (spatial size preserved for any, possibly
    non-square or even, kernel: the padding of ``prediction_head.same_padding``, symmetric for odd sizes, an even
    kernel's extra row / column below / right).

    Parts:
        ``dcn``: DCNv1 Cin -> Cin, kernel (kh, kw), no bias (torchvision ``deform_conv2d``).
        ``conv``: ordinary conv Cin -> Cout, same kernel / padding, with bias.
        ``offset_conv`` ("ada" only): 1x1 conv 4 -> 2·kh·kw, no bias, on the detached deltas.
        "ali": offsets computed analytically by :func:`stmask_d2.layers.aligned_offsets` (no parameters).
    Gradients never flow into ``box_deltas`` (they are detached, as released).
    Init: Xavier-uniform weights, zero biases (spec §1).
    """

    @configurable
    def __init__(self, in_channels: int, out_channels: int, kernel_size: Sequence[int] = (3, 3), mode: str = "ada",
                 anchor_cells: Optional[Sequence[float]] = None):
        """
        Args:
            in_channels: Cin of the tower features.
            out_channels: Cout of the prediction (e.g. C+1 class logits of one anchor).
            kernel_size: (kh, kw).
            mode: "ada" (learned 1x1 offsets) or "ali" (aligned analytic offsets).
            anchor_cells: (ah, aw) size in feature cells of the anchor whose deltas drive this module ("ali":
                the taps follow that anchor's predicted box); None = the kernel's (kh, kw) (FCA anchors).
        """
        super().__init__()
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(int(k) for k in kernel_size)
        assert kh >= 1 and kw >= 1, f"FCB needs positive kernel sizes, got {(kh, kw)}"
        assert mode in ("ada", "ali"), f"FCB mode must be 'ada' or 'ali' (MODEL.STMASK.FCB.MODE), got {mode!r}"
        self.kernel_size = (kh, kw)
        self.mode = mode
        self.anchor_cells = None if anchor_cells is None else (float(anchor_cells[0]), float(anchor_cells[1]))
        self.symmetric = kh % 2 == 1 and kw % 2 == 1
        self.pad4 = ((kw - 1) // 2, kw // 2, (kh - 1) // 2, kh // 2)  # prediction_head.same_padding
        padding = ((kh - 1) // 2, (kw - 1) // 2) if self.symmetric else (0, 0)
        self.dcn = DeformConv2d(in_channels, in_channels, (kh, kw), padding=padding, bias=False)
        self.conv = nn.Conv2d(in_channels, out_channels, (kh, kw), padding=padding, bias=True)
        if mode == "ada":
            self.offset_conv = nn.Conv2d(4, 2 * kh * kw, 1, bias=False)
        else:
            self.offset_conv = None
        for m in (self.dcn, self.conv, self.offset_conv):
            if m is not None:
                nn.init.xavier_uniform_(m.weight)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)

    @classmethod
    def from_config(cls, cfg, in_channels, out_channels, kernel_size, anchor_cells=None):
        return {
            "in_channels": in_channels,
            "out_channels": out_channels,
            "kernel_size": kernel_size,
            "mode": cfg.MODEL.STMASK.FCB.MODE,
            "anchor_cells": anchor_cells,
        }

    def offsets(self, box_deltas: torch.Tensor) -> torch.Tensor:
        """(N, 4, H, W) raw deltas -> (N, 2·kh·kw, H, W) deformable offsets (deltas detached)."""
        d = box_deltas.detach()
        if self.mode == "ada":
            return self.offset_conv(d)
        return aligned_offsets(d, self.kernel_size, self.anchor_cells)

    def forward(self, x: torch.Tensor, box_deltas: torch.Tensor, packing=None) -> torch.Tensor:
        """
        Args:
            x: (N, Cin, H, W) tower features.
            box_deltas: (N, 4, H, W) raw (tx, ty, tw, th) predicted for this kernel's anchor at each location.
            packing: optional :class:`~stmask_d2.modeling.heads.level_packing.LevelPacking` when x holds several
                levels packed into one map (zero gaps): the deformable taps stay in their level and the gaps are
                zeroed before the second conv, so each level's output is that of the level on its own.
        Returns:
            (N, Cout, H, W).
        """
        assert box_deltas.shape[1] == 4 and box_deltas.shape[-2:] == x.shape[-2:], (
            f"box_deltas must be (N, 4, H, W) matching x {tuple(x.shape)}, got {tuple(box_deltas.shape)}"
        )
        offsets = self.offsets(box_deltas)
        top, left = (0, 0) if self.symmetric else (self.pad4[2], self.pad4[0])
        bounds = None if packing is None else packing.bounds(x.device, (top, left))
        if self.symmetric:
            y = F.relu(self.dcn(x, offsets, bounds=bounds))
        else:
            y = F.relu(self.dcn(F.pad(x, self.pad4), offsets, bounds=bounds))
        if packing is not None:
            y = y * packing.mask(y)
        return self.conv(y) if self.symmetric else self.conv(F.pad(y, self.pad4))

    def packs_levels(self, x: torch.Tensor) -> bool:
        """True when ``forward(x, deltas, packing)`` keeps the per-level function for ``x``: its deformable conv
        runs the CPU gather (the only form with per-location bounds). The prediction head packs the FPN levels into
        one map only for FCB modules that have this method and return True."""
        return self.dcn.supports_bounds(x)

    def extra_repr(self):
        return f"mode={self.mode}, kernel_size={self.kernel_size}, anchor_cells={self.anchor_cells}"
