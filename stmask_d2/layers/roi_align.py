"""RoIAlign as two small matrix products per RoI (CPU speed; the function of ``torchvision.ops.roi_align``).

torchvision's CPU kernel loops over every sample point in forward and scatters into the input gradient point by
point in backward: in a profile of the main job's training step its backward was the slowest op after the
convolutions, and at the TF head's size (32 RoIs, 177 channels, 8x14) forward + backward here takes about a quarter
of its time (torchvision's RoIAlign took 1.063x the main job's step, README "Speed options"). RoIAlign is separable: a sample point (y, x) blends rows
and columns with bilinear weights a(y, row) * b(x, col), a point outside [-1, H] x [-1, W] adds nothing (a test on y
and one on x), and a bin averages a grid_h x grid_w product grid of points. So for RoI m

    out[m, c] = Ay[m] @ F[batch(m), c] @ Ax[m]^T,    Ay (P_h, H), Ax (P_w, W)

where Ay[m, p, h] is the mean over the bin's grid_h points of the weight of row h (Ax likewise). Forward and
backward are then batched matmuls. :func:`roi_align_separable` builds Ay / Ax exactly as torchvision samples
(``aligned`` half-pixel shift, adaptive ``sampling_ratio`` = ceil(RoI size / bins), the clamping of points near the
border); like torchvision, it gives no gradient to the boxes. Tests: tests/test_roi_align.py (values and input
gradients equal to torchvision's, boxes on, across and beyond the border, empty boxes, both ``aligned``).

:func:`cpu_roi_align_impl` selects it ("separable", the default) or torchvision's op ("torchvision") for CPU
tensors; on other devices and when traced for export torchvision's op runs.
"""
from typing import List, Sequence, Union

import torch
from torch.nn.modules.utils import _pair
from torchvision.ops import roi_align as tv_roi_align
from torchvision.ops._utils import convert_boxes_to_roi_format

from .impl_switch import ImplSwitch

__all__ = ["cpu_roi_align_impl", "roi_align", "roi_align_separable"]

CPU_IMPL = ImplSwitch("CPU RoIAlign implementation", ("separable", "torchvision"))


def cpu_roi_align_impl(name=None):
    """The CPU implementation of :func:`roi_align`: "separable" (:func:`roi_align_separable`, the default) or
    "torchvision". With ``name``, sets it; returns the previous setting."""
    return CPU_IMPL.select(name)


def _axis_weights(start, size, bins: int, grid, sampling_ratio: int, length: int):
    """(M, bins, length) mean bilinear weight of each row (or column) over a bin's sample points.

    start, size: (M,) RoI start and extent on this axis in feature cells (after the aligned shift); grid: (M,) int
    points per bin on this axis; length: the map's extent (H or W)."""
    gmax = sampling_ratio if sampling_ratio > 0 else int(grid.max().item()) if grid.numel() else 0
    gmax = max(gmax, 1)
    step = size / bins  # (M,)
    i = torch.arange(gmax, dtype=start.dtype, device=start.device)
    p = torch.arange(bins, dtype=start.dtype, device=start.device)
    gridf = grid.to(start.dtype).clamp(min=1)
    # (M, bins, gmax): start + p * step + (i + 0.5) * step / grid
    pts = start[:, None, None] + p[None, :, None] * step[:, None, None] \
        + (i[None, None, :] + 0.5) * (step / gridf)[:, None, None]
    used = (i[None, None, :] < grid[:, None, None]) & (pts >= -1.0) & (pts <= length)
    pts = pts.clamp(0, length - 1)
    cells = torch.arange(length, dtype=start.dtype, device=start.device)
    w = (1 - (pts[..., None] - cells).abs()).clamp(min=0) * used[..., None].to(start.dtype)  # (M, bins, gmax, L)
    return w.sum(2) / gridf[:, None, None]


def roi_align_separable(input: torch.Tensor, boxes: Union[torch.Tensor, List[torch.Tensor]],
                        output_size: Union[int, Sequence[int]], spatial_scale: float = 1.0,
                        sampling_ratio: int = -1, aligned: bool = False) -> torch.Tensor:
    """``torchvision.ops.roi_align`` (same arguments and result) as per-RoI matrix products, see the module
    docstring.

    Shapes: input (N, C, H, W); boxes (K, 5) [batch index, x1, y1, x2, y2] or a list of N (K_i, 4) tensors, in
    input pixels -> (K, C, P_h, P_w).
    """
    ph, pw = _pair(output_size)
    if isinstance(boxes, (list, tuple)):
        boxes = convert_boxes_to_roi_format([b.reshape(-1, 4) for b in boxes])  # (K, 5), as torchvision
    idx, rois = boxes[:, 0].long().to(input.device), boxes[:, 1:].to(input.device)
    n, c, h, w = input.shape
    if rois.shape[0] == 0:
        return input.new_zeros((0, c, ph, pw))
    with torch.no_grad():  # no gradient to the boxes, as torchvision
        r = rois.detach().to(input.dtype) * spatial_scale - (0.5 if aligned else 0.0)
        x1, y1, x2, y2 = r.unbind(1)
        rw, rh = x2 - x1, y2 - y1
        if not aligned:
            rw, rh = rw.clamp(min=1.0), rh.clamp(min=1.0)
        if sampling_ratio > 0:
            gh = torch.full_like(rh, sampling_ratio, dtype=torch.long)
            gw = torch.full_like(rw, sampling_ratio, dtype=torch.long)
        else:
            gh, gw = torch.ceil(rh / ph).long(), torch.ceil(rw / pw).long()
        ay = _axis_weights(y1, rh, ph, gh, sampling_ratio, h)  # (K, P_h, H)
        ax = _axis_weights(x1, rw, pw, gw, sampling_ratio, w)  # (K, P_w, W)
    k = rois.shape[0]
    feats = input.index_select(0, idx)  # (K, C, H, W)
    # two batched matmuls over the K RoIs: columns first, (K, C*H, W) @ (K, W, P_w), then rows, (K, P_h, H) @
    # (K, H, C*P_w); a (P, H) @ (H, W) product per channel would be K*C tiny matmuls
    t = torch.bmm(feats.reshape(k, c * h, w), ax.transpose(1, 2))  # (K, C*H, P_w)
    t = t.view(k, c, h, pw).transpose(1, 2).reshape(k, h, c * pw)  # (K, H, C*P_w)
    return torch.bmm(ay, t).view(k, ph, c, pw).transpose(1, 2)  # (K, C, P_h, P_w)


def roi_align(input, boxes, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
    """RoIAlign: :func:`roi_align_separable` on CPU tensors (unless :func:`cpu_roi_align_impl` says
    "torchvision"), ``torchvision.ops.roi_align`` otherwise and under tracing (export: torchvision's op exports with a
    dynamic number of boxes). A bf16 / fp16 input is computed in fp32 and the result returned in the input's dtype,
    as torchvision's op does under autocast."""
    traced = torch.jit.is_tracing() or torch.jit.is_scripting()  # export: torchvision's op has an ONNX / TorchScript
    if input.device.type != "cpu" or CPU_IMPL.current == "torchvision" or traced:  # form for a dynamic number of boxes
        return tv_roi_align(input, boxes, output_size, spatial_scale, sampling_ratio, aligned)
    dtype = input.dtype if input.dtype in (torch.float32, torch.float64) else torch.float32
    with torch.autocast("cpu", enabled=False):
        out = roi_align_separable(input.to(dtype), boxes, output_size, spatial_scale, sampling_ratio, aligned)
    return out.to(input.dtype)
