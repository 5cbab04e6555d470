"""Max pooling with a faster CPU forward for contiguous (NCHW) maps; the function of ``F.max_pool2d``.

PyTorch's CPU max-pool kernel for contiguous NCHW maps is slow: in a profile of the synthetic training step under
bf16 AMP the ResNet stem's 3x3 / stride-2 pool over an (8, 64, 64, 112) map took 21 ms a step, about as much as
the convolutions of a whole ResNet stage, while its channels_last kernel pools the same map in about a quarter of
the time even with the layout conversions. :func:`max_pool2d` therefore pools a contiguous CPU map in
channels_last and returns it contiguous; when a gradient is needed it keeps the pooling indices, which are the
same for both layouts (flat ``h * W + w`` positions within each map; ties and NaNs resolved alike, tested), and
the backward is PyTorch's own NCHW ``max_pool2d_with_indices_backward`` with those indices, so the input gradient
is exactly the one ``F.max_pool2d`` gives (tests/test_pooling.py).

It falls back to ``F.max_pool2d`` for other devices, for maps that are not contiguous NCHW (channels_last maps
already take the fast kernel), for dilation or ``ceil_mode``, under tracing / scripting (export sees the plain op)
and when :func:`cpu_max_pool_impl` selects "torch".
"""
from typing import Sequence, Union

import torch
import torch.nn.functional as F
from torch.nn.modules.utils import _pair

from .impl_switch import ImplSwitch

__all__ = ["cpu_max_pool_impl", "max_pool2d"]

CPU_IMPL = ImplSwitch("CPU max-pool implementation", ("channels_last", "torch"))

_Size = Union[int, Sequence[int]]


def cpu_max_pool_impl(name=None):
    """The CPU implementation of :func:`max_pool2d` for contiguous maps: "channels_last" (the default, see the
    module docstring) or "torch" (``F.max_pool2d`` as is). With ``name``, sets it; returns the previous setting."""
    return CPU_IMPL.select(name)


class _ChannelsLastMaxPool(torch.autograd.Function):
    """Forward in channels_last, backward with PyTorch's NCHW kernel. x (N, C, H, W) contiguous -> (N, C, Ho, Wo)
    contiguous."""

    @staticmethod
    def forward(ctx, x, kernel_size, stride, padding):
        out, index = torch.ops.aten.max_pool2d_with_indices(
            x.contiguous(memory_format=torch.channels_last), kernel_size, stride, padding, [1, 1], False)
        index = index.contiguous()
        ctx.save_for_backward(x, index)
        ctx.params = (kernel_size, stride, padding)
        ctx.mark_non_differentiable(index)
        return out.contiguous()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        x, index = ctx.saved_tensors
        kernel_size, stride, padding = ctx.params
        return (torch.ops.aten.max_pool2d_with_indices_backward(
            grad.contiguous(), x, kernel_size, stride, padding, [1, 1], False, index), None, None, None)


def max_pool2d(x: torch.Tensor, kernel_size: _Size, stride: _Size = None, padding: _Size = 0, dilation: _Size = 1,
               ceil_mode: bool = False) -> torch.Tensor:
    """``F.max_pool2d(x, kernel_size, stride, padding, dilation, ceil_mode)`` (same values and input gradient),
    faster on CPU for contiguous NCHW maps (module docstring).

    Shapes: x (N, C, H, W) -> (N, C, Ho, Wo) with Ho = floor((H + 2 * pad - k) / stride) + 1 (likewise Wo)."""
    stride = kernel_size if stride is None else stride
    fast = (
        x.device.type == "cpu"
        and CPU_IMPL.current == "channels_last"
        and x.dim() == 4
        and x.is_contiguous()
        and not x.is_contiguous(memory_format=torch.channels_last)  # (also true of 1x1 maps and C = 1)
        and _pair(dilation) == (1, 1)
        and not ceil_mode
        and not torch.jit.is_tracing()
        and not torch.jit.is_scripting()
    )
    if not fast:
        return F.max_pool2d(x, kernel_size, stride, padding, dilation, ceil_mode)
    kernel_size, stride, padding = list(_pair(kernel_size)), list(_pair(stride)), list(_pair(padding))
    if not (torch.is_grad_enabled() and x.requires_grad):
        return F.max_pool2d(x.contiguous(memory_format=torch.channels_last), kernel_size, stride,
                            padding).contiguous()
    return _ChannelsLastMaxPool.apply(x, kernel_size, stride, padding)
