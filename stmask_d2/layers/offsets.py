"""Aligned FCB offsets (FCB "ali", docs/METHOD.md §4, supplement eq. 6).

The sampling grid of a kh x kw kernel is moved and stretched like the anchor box the kernel's predicted deltas
describe: tap (r, c) samples at (r + Δy + Δh·r, c + Δx + Δw·c) relative to the kernel centre, in feature cells.
"""
import math
from typing import Optional, Sequence

import torch

__all__ = ["aligned_offsets"]

_SCALE_CLAMP = math.log(1000.0 / 16)  # Detectron2's default Box2BoxTransform scale_clamp


def aligned_offsets(deltas: torch.Tensor, kernel_size: Sequence[int],
                    anchor_cells: Optional[Sequence[float]] = None) -> torch.Tensor:
    """Deformable-conv offsets from raw box deltas.

    With the anchor of (ah, aw) feature cells (default: the kernel's (kh, kw), the FCA case):
    dx = 0.1·tx, dy = 0.1·ty, Δx = aw·dx, Δy = ah·dy, Δw = aw·exp(0.2·tw)/kw − 1, Δh = ah·exp(0.2·th)/kh − 1
    (so the taps spread over the predicted box; for ah = kh, aw = kw: Δw = exp(0.2·tw) − 1, Δh = exp(0.2·th) − 1);
    for tap (r, c) at offset (r, c) from the location, off_y = Δy + Δh·(r − r0), off_x = Δx + Δw·(c − c0), where
    (r0, c0) is the kernel centre: 0 for odd sizes, +0.5 for even ones (taps −(k−1)//2 .. k//2, see
    ``stmask_d2.modeling.heads.prediction_head.same_padding``).

    Args:
        deltas: (N, 4, H, W) raw (tx, ty, tw, th) of the kernel's anchor (variances 0.1 / 0.2 applied here).
        kernel_size: (kh, kw).
        anchor_cells: (ah, aw), size in feature cells of the anchor the deltas refer to (e.g. a Yolact ratio anchor
            predicted by a 3x3 kernel); None = (kh, kw).
    Returns:
        (N, 2·kh·kw, H, W): channel 2n is the y offset and 2n+1 the x offset of tap n = (r+⌊kh/2⌋)·kw + (c+⌊kw/2⌋)
        (row-major taps, (y, x) interleaved: the torchvision / mmcv layout).
    """
    kh, kw = int(kernel_size[0]), int(kernel_size[1])
    n, four, h, w = deltas.shape
    assert four == 4, f"deltas must be (N, 4, H, W), got {tuple(deltas.shape)}"
    ah, aw = (kh, kw) if anchor_cells is None else (float(anchor_cells[0]), float(anchor_cells[1]))
    tx, ty, tw, th = deltas.unbind(dim=1)  # (N, H, W) each
    # the box scale is clamped as Box2BoxTransform decodes it (0.2 * t <= log(1000 / 16)): untrained heads can give
    # huge deltas, and exp() would overflow to inf offsets (NaN in the deformable conv)
    tw = tw.clamp(max=_SCALE_CLAMP / 0.2)
    th = th.clamp(max=_SCALE_CLAMP / 0.2)
    dx_shift = (0.1 * aw) * tx
    dy_shift = (0.1 * ah) * ty
    if ah == kh and aw == kw:
        dw = torch.exp(0.2 * tw) - 1
        dh = torch.exp(0.2 * th) - 1
    else:
        dw = torch.exp(0.2 * tw) * (aw / kw) - 1
        dh = torch.exp(0.2 * th) * (ah / kh) - 1
    # tap offsets from the kernel centre: -(k-1)/2 .. (k-1)/2 (half-integers for even k)
    r = (torch.arange(kh, device=deltas.device, dtype=deltas.dtype) - (kh - 1) / 2).view(1, kh, 1, 1, 1)
    c = (torch.arange(kw, device=deltas.device, dtype=deltas.dtype) - (kw - 1) / 2).view(1, 1, kw, 1, 1)
    off_y = dy_shift[:, None, None] + dh[:, None, None] * r  # (N, kh, 1, H, W)
    off_x = dx_shift[:, None, None] + dw[:, None, None] * c  # (N, 1, kw, H, W)
    shape = (n, kh, kw, h, w)
    off = torch.stack([off_y.expand(shape), off_x.expand(shape)], dim=3)  # (N, kh, kw, 2, H, W)
    return off.reshape(n, 2 * kh * kw, h, w)
