"""Aligned FCB offsets (FCB "ali", docs/METHOD.md §4, supplement eq. 6).

The sampling grid of a kh x kw kernel is moved and stretched like the anchor box the kernel's predicted deltas
describe: tap (r, c) samples at (r + Δy + Δh·r, c + Δx + Δw·c) relative to the location, in feature cells.
"""
from typing import Sequence

import torch

__all__ = ["aligned_offsets"]


def aligned_offsets(deltas: torch.Tensor, kernel_size: Sequence[int]) -> torch.Tensor:
    """Deformable-conv offsets from raw box deltas.

    dx = 0.1·tx, dy = 0.1·ty, Δx = kw·dx, Δy = kh·dy, Δw = exp(0.2·tw) − 1, Δh = exp(0.2·th) − 1;
    for tap (r, c), r ∈ [−⌊kh/2⌋, ⌊kh/2⌋], c ∈ [−⌊kw/2⌋, ⌊kw/2⌋]: off_y = Δy + Δh·r, off_x = Δx + Δw·c.

    Args:
        deltas: (N, 4, H, W) raw (tx, ty, tw, th) of the kernel's anchor (variances 0.1 / 0.2 applied here).
        kernel_size: (kh, kw).
    Returns:
        (N, 2·kh·kw, H, W): channel 2n is the y offset and 2n+1 the x offset of tap n = (r+⌊kh/2⌋)·kw + (c+⌊kw/2⌋)
        (row-major taps, (y, x) interleaved: the torchvision / mmcv layout).
    """
    kh, kw = int(kernel_size[0]), int(kernel_size[1])
    n, four, h, w = deltas.shape
    assert four == 4, f"deltas must be (N, 4, H, W), got {tuple(deltas.shape)}"
    tx, ty, tw, th = deltas.unbind(dim=1)  # (N, H, W) each
    dx_shift = (0.1 * kw) * tx
    dy_shift = (0.1 * kh) * ty
    dw = torch.exp(0.2 * tw) - 1
    dh = torch.exp(0.2 * th) - 1
    r = (torch.arange(kh, device=deltas.device, dtype=deltas.dtype) - kh // 2).view(1, kh, 1, 1, 1)
    c = (torch.arange(kw, device=deltas.device, dtype=deltas.dtype) - kw // 2).view(1, 1, kw, 1, 1)
    off_y = dy_shift[:, None, None] + dh[:, None, None] * r  # (N, kh, 1, H, W)
    off_x = dx_shift[:, None, None] + dw[:, None, None] * c  # (N, 1, kw, H, W)
    shape = (n, kh, kw, h, w)
    off = torch.stack([off_y.expand(shape), off_x.expand(shape)], dim=3)  # (N, kh, kw, 2, H, W)
    return off.reshape(n, 2 * kh * kw, h, w)
