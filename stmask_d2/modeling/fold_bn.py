"""BatchNorm folding at inference: conv (+ deformable conv) followed by a BatchNorm / FrozenBatchNorm runs as one
conv whose weight and bias absorb the norm,

    norm(conv(x; W, b)) = conv(x; W * s, (b - mean) * s + beta),   s = gamma / sqrt(var + eps)

(per output channel), computed in float64 and cached. The module structure and the state dict are untouched: the
folded tensors are a cache attached to each conv, rebuilt when a parameter or statistic changes (e.g. a checkpoint
loaded after folding was enabled), and used only when the conv is in eval mode and no gradient is recorded
(``torch.inference_mode`` / ``torch.no_grad``); training and gradient-based use run the original conv + norm.

    enable_bn_folding(model.backbone)   # -> number of convs that fold; disable_bn_folding(...) undoes it
"""
import types

import torch
import torch.nn.functional as F
from detectron2.layers import Conv2d, FrozenBatchNorm2d
from torch import nn

from ..layers.deform_conv import DeformConv2d

__all__ = ["enable_bn_folding", "disable_bn_folding", "folded_weight_bias"]


def _norm_affine(norm):
    """(scale, shift) float64 tensors of an eval-mode norm, or None when it cannot be folded."""
    if isinstance(norm, FrozenBatchNorm2d):
        mean, var, gamma, beta, eps = norm.running_mean, norm.running_var, norm.weight, norm.bias, norm.eps
    elif isinstance(norm, nn.modules.batchnorm._BatchNorm):
        if norm.training or not norm.track_running_stats or norm.running_mean is None:
            return None
        mean, var, eps = norm.running_mean, norm.running_var, norm.eps
        gamma, beta = norm.weight, norm.bias
    else:
        return None
    scale = (var.double() + eps).rsqrt()
    if gamma is not None:
        scale = scale * gamma.double()
    shift = -mean.double() * scale
    if beta is not None:
        shift = shift + beta.double()
    return scale, shift


def _state_key(conv):
    ts = [conv.weight, conv.bias] + [t for t in list(conv.norm.parameters()) + list(conv.norm.buffers())]
    return tuple((t.data_ptr(), t._version, t.dtype, t.device) for t in ts if t is not None)


def folded_weight_bias(conv):
    """(weight, bias) of ``conv`` with its ``norm`` folded in (float64 arithmetic, the weight's dtype), or None
    when the norm cannot be folded (e.g. BatchNorm in training mode)."""
    with torch.inference_mode(False), torch.no_grad():
        aff = _norm_affine(conv.norm)
        if aff is None:
            return None
        scale, shift = aff
        w = conv.weight.double() * scale.view(-1, *([1] * (conv.weight.dim() - 1)))
        b = shift if conv.bias is None else conv.bias.double() * scale + shift
        return w.to(conv.weight.dtype), b.to(conv.weight.dtype)


def _cached(conv):
    key = _state_key(conv)
    cache = conv.__dict__.get("_fold_cache")
    if cache is None or cache[0] != key:
        wb = folded_weight_bias(conv)
        cache = (key, wb)
        conv.__dict__["_fold_cache"] = cache
    return cache[1]


def _use_folded(conv, x):
    return not conv.training and not torch.is_grad_enabled() and not conv.norm.training


def _conv2d_folded_forward(self, x):
    """Detectron2 ``Conv2d.forward`` with the norm folded (see the module docstring)."""
    if _use_folded(self, x):
        wb = _cached(self)
        if wb is not None:
            x = F.conv2d(x, wb[0].to(x.dtype), wb[1].to(x.dtype), self.stride, self.padding, self.dilation,
                         self.groups)
            return self.activation(x) if self.activation is not None else x
    return type(self).forward(self, x)


def _deform_folded_forward(self, x, offset, mask=None, bounds=None):
    """``DeformConv2d.forward`` with the norm folded (see the module docstring)."""
    if _use_folded(self, x):
        wb = _cached(self)
        if wb is not None:
            return self.forward_with(x, offset, mask, wb[0], wb[1], norm=None, bounds=bounds)
    return type(self).forward(self, x, offset, mask, bounds)


def enable_bn_folding(module: nn.Module) -> int:
    """Make every Detectron2 ``Conv2d`` / our ``DeformConv2d`` in ``module`` with a BatchNorm / FrozenBatchNorm
    ``norm`` run folded at inference. Returns how many convs were set up. Idempotent."""
    n = 0
    for m in module.modules():
        if getattr(m, "norm", None) is None or not isinstance(m.norm, (FrozenBatchNorm2d,
                                                                      nn.modules.batchnorm._BatchNorm)):
            continue
        if isinstance(m, DeformConv2d):
            m.forward = types.MethodType(_deform_folded_forward, m)
        elif isinstance(m, Conv2d):
            m.forward = types.MethodType(_conv2d_folded_forward, m)
        else:
            continue
        n += 1
    return n


def disable_bn_folding(module: nn.Module) -> None:
    """Undo :func:`enable_bn_folding` (the convs run conv + norm again; the caches are dropped)."""
    for m in module.modules():
        if "forward" in m.__dict__ and getattr(m.forward, "__func__", None) in (_conv2d_folded_forward,
                                                                                   _deform_folded_forward):
            del m.__dict__["forward"]
            m.__dict__.pop("_fold_cache", None)
