"""Deformable convolution on ``torchvision.ops.deform_conv2d`` (CPU and CUDA, forward and backward).

No compiled extension of ours or of Detectron2 is needed. The modules keep the parameter names of
``detectron2.layers.DeformConv`` / ``ModulatedDeformConv`` (``weight``, ``bias``, ``norm``) so Detectron2
checkpoints of deformable ResNets load unchanged.

Offset layout (as torchvision, mmcv and Detectron2): (N, 2 * G * kh * kw, Ho, Wo), for deformable group g and
kernel tap n = row * kw + col (row-major), channel 2 * (g * kh * kw + n) is the y offset and the next one the x
offset, in input pixels. Mask (DCNv2): (N, G * kh * kw, Ho, Wo).

CPU fast path (:func:`deform_conv2d_gathered`): torchvision's CPU kernel builds the deformable columns (and, in
backward, their gradients) with scalar code. Here each column entry is the bilinear blend of four rows of the
channels-last input, which ``F.embedding_bag`` (mode "sum", the bilinear weights as per-sample weights; one fused,
multi-threaded kernel) gathers for all channels at once; one matmul follows. In backward the input's gradient is
the transposed gather, again one ``embedding_bag`` (:class:`_WeightedGather`). Same function and gradients (equal to
float64 round-off, tests/test_deform_conv.py); at the head's sizes (256 channels, 48x80) it is about 2.7x faster
than torchvision's CPU op in inference and 1.9x faster than the earlier ``F.grid_sample`` formulation
(:func:`deform_conv2d_sampled`, which stays for export: ONNX has GridSample, not EmbeddingBag). It is used on CPU
when groups = deformable groups = 1; otherwise (and on CUDA, where torchvision's kernel is fast) torchvision's op
runs.
"""
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.modules.utils import _pair
from torchvision.ops import deform_conv2d

from .impl_switch import ImplSwitch

__all__ = ["DeformConv2d", "cpu_deform_conv_impl", "deform_conv2d_gathered", "deform_conv2d_sampled",
           "force_sampled_deform_conv"]

_FORCE_SAMPLED = [False]
CPU_IMPL = ImplSwitch("CPU deformable conv implementation", ("gather", "gather_autograd", "grid_sample", "torchvision"))


def cpu_deform_conv_impl(name=None):
    """The CPU implementation of ``DeformConv2d`` (groups = deformable groups = 1): "gather"
    (:func:`deform_conv2d_gathered`, the default), "gather_autograd" (the same with autograd's backward of
    ``F.embedding_bag`` instead of :class:`_WeightedGather`'s), "grid_sample" (:func:`deform_conv2d_sampled`) or
    "torchvision" (``torchvision.ops.deform_conv2d``). All compute the same function; the benchmark compares them
    (``tools/benchmark.py --compare dcn_grid_sample,dcn_torchvision``). With ``name``, sets it; returns the
    previous setting."""
    return CPU_IMPL.select(name)


class force_sampled_deform_conv:
    """Context manager: every ``DeformConv2d`` with groups = deformable groups = 1 runs
    :func:`deform_conv2d_sampled` (plain grid_sample + matmul), on any device and for maps of any size (e.g. to
    trace the network for TorchScript / ONNX export, where torchvision's op has no ONNX Runtime kernel)."""

    def __enter__(self):
        self._prev = _FORCE_SAMPLED[0]
        _FORCE_SAMPLED[0] = True
        return self

    def __exit__(self, *exc):
        _FORCE_SAMPLED[0] = self._prev
        return False


def deform_conv2d_sampled(x, offset, weight, bias=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1), mask=None):
    """``torchvision.ops.deform_conv2d`` (groups = deformable groups = 1) as bilinear sampling of the
    columns with ``F.grid_sample`` (zeros padding, align_corners=True: the same bilinear weights and the same zero
    contribution of out-of-map corners as torchvision) followed by one matmul. Same arguments and result."""
    n, c, h, w = x.shape
    if h < 2 or w < 2:  # a zero row / column beyond the map: the same samples as torchvision's (zero outside)
        x = F.pad(x, (0, max(0, 2 - w), 0, max(0, 2 - h)))
        h, w = x.shape[-2:]
    cout, _, kh, kw = weight.shape
    ho, wo = offset.shape[-2:]
    k = kh * kw
    ys, xs = _tap_coordinates(x, offset, kh, kw, stride, padding, dilation)
    gy = ys * (2.0 / (h - 1)) - 1.0  # (n, k, ho, wo), normalised for align_corners=True
    gx = xs * (2.0 / (w - 1)) - 1.0
    grid = torch.stack((gx, gy), -1).view(n, k * ho, wo, 2)
    cols = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)  # (n, c, k*ho, wo)
    cols = cols.view(n, c, k, ho * wo)
    if mask is not None:
        cols = cols * mask.view(n, 1, k, ho * wo)
    out = torch.matmul(weight.reshape(cout, c * k), cols.view(n, c * k, ho * wo))
    if bias is not None:
        out = out + bias.view(1, cout, 1)
    return out.view(n, cout, ho, wo)


def _tap_coordinates(x, offset, kh, kw, stride, padding, dilation):
    """Input-pixel coordinates (y, x), each (N, K, Ho, Wo), of every kernel tap of every output location:
    the regular grid of the (strided, padded, dilated) conv plus the offsets (see the module docstring)."""
    n = x.shape[0]
    ho, wo = offset.shape[-2:]
    k = kh * kw
    off = offset.view(n, k, 2, ho, wo)
    ki = torch.arange(kh, dtype=x.dtype, device=x.device).repeat_interleave(kw).view(k, 1, 1) * dilation[0]
    kj = torch.arange(kw, dtype=x.dtype, device=x.device).repeat(kh).view(k, 1, 1) * dilation[1]
    base_y = torch.arange(ho, dtype=x.dtype, device=x.device).view(1, ho, 1) * stride[0] - padding[0] + ki
    base_x = torch.arange(wo, dtype=x.dtype, device=x.device).view(1, 1, wo) * stride[1] - padding[1] + kj
    return base_y + off[:, :, 0], base_x + off[:, :, 1]


_INT16_ROWS = 2 ** 15 - 1  # tables with at most this many rows sort int16 keys in the gather's backward
_PSW_BLOCK = 8192  # bags per block of the bf16 per-sample-weight gradient (a 2 MiB fp32 block at 64 channels)


class _WeightedGather(torch.autograd.Function):
    """``F.embedding_bag(index, table, per_sample_weights=weights, mode="sum")`` (bags of equal size) with a faster
    backward on CPU: the gradient of ``table`` is the transposed gather, computed as another ``embedding_bag`` over
    the rows of the output gradient (the entries sorted by table row: one bag per row) instead of PyTorch's
    ``_embedding_bag_dense_backward``; the gradient of ``weights`` is PyTorch's own kernel. The same values
    (tests/test_deform_conv.py); the main job's training step is about 5% faster with it (README, "Speed options").

    Shapes: index (B, K) int64 rows of table, table (R, C), weights (B, K) -> (B, C)."""

    @staticmethod
    def forward(ctx, index, table, weights):
        ctx.save_for_backward(index, table, weights)
        return F.embedding_bag(index, table, per_sample_weights=weights, mode="sum")

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        index, table, weights = ctx.saved_tensors
        bags, per = index.shape
        flat = index.reshape(-1)
        grad = grad.contiguous()
        grad_table = grad_weights = None
        if ctx.needs_input_grad[1]:
            # entries grouped by the table row they read, sorted on the narrowest integer keys that hold the row
            # numbers: PyTorch's CPU radix sort takes ~2.3x less time on int16 keys than on int32, ~1.8x less on
            # int32 than on int64
            keys = flat.short() if table.shape[0] <= _INT16_ROWS else flat.int() if table.shape[0] < 2 ** 31 else flat
            order = torch.argsort(keys, stable=True)
            starts = torch.zeros(table.shape[0], dtype=torch.long, device=flat.device)
            starts[1:] = torch.bincount(flat, minlength=table.shape[0]).cumsum(0)[:-1]
            # bf16: the CPU kernel sums in fp32 (tests/test_deform_conv.py); fp16: sum in fp32 here
            acc = torch.float32 if grad.dtype == torch.float16 else grad.dtype
            # the bag of each entry (a shift for the bilinear gather's 4 corners) and its weight (index_select:
            # ~3x faster than advanced indexing here)
            bag = order >> 2 if per == 4 else torch.div(order, per, rounding_mode="floor")
            grad_table = F.embedding_bag(bag, grad.to(acc), starts,
                                         per_sample_weights=weights.reshape(-1).index_select(0, order).to(acc),
                                         mode="sum").to(table.dtype)
        if ctx.needs_input_grad[2]:
            # PyTorch's bf16 kernel is ~3x slower than casting to fp32 (2 cores); the output gradient is cast in
            # blocks of bags that stay in cache, not as one (B, C) fp32 copy
            bf16 = grad.dtype == torch.bfloat16
            t = table.float() if bf16 else table
            block = min(bags, _PSW_BLOCK) if bf16 else bags
            offsets = torch.arange(0, block * per, per, device=flat.device)
            offset2bag = torch.arange(block, device=flat.device).repeat_interleave(per)
            grad_weights = torch.empty(bags * per, dtype=t.dtype, device=flat.device)
            for s in range(0, bags, block):
                e = min(bags, s + block)
                g = grad[s:e].float() if bf16 else grad[s:e]
                grad_weights[s * per:e * per] = torch.ops.aten._embedding_bag_per_sample_weights_backward(
                    g, t, flat[s * per:e * per], offsets[:e - s], offset2bag[:(e - s) * per], 0, -1)
            grad_weights = grad_weights.view(bags, per).to(weights.dtype)
        return None, grad_table, grad_weights


def _autocast_bf16(device_type):
    """True under bf16 autocast on ``device_type``."""
    return torch.is_autocast_enabled(device_type) and torch.get_autocast_dtype(device_type) == torch.bfloat16


def deform_conv2d_gathered(x, offset, weight, bias=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1), mask=None,
                           bounds=None):
    """``torchvision.ops.deform_conv2d`` (groups = deformable groups = 1) as a bilinear gather of channels-last
    input rows with ``F.embedding_bag`` followed by one matmul. Same arguments and result.

    Bilinear sampling as torchvision's: a tap at (y, x) blends the four integer corners around it with the
    weights (1 - ly or ly) * (1 - lx or lx); a corner outside the map contributes zero (its weight is zeroed, its
    index clamped into the map). Gradients reach ``x`` through the gather, ``offset`` and ``mask`` through the
    per-sample weights.

    ``bounds`` (optional): (y_lo, y_hi, x_lo, x_hi), each (Ho, Wo) int64, a rectangle of input cells per output
    location; a corner outside its location's rectangle counts as outside the map (several maps packed into one,
    :mod:`stmask_d2.modeling.heads.level_packing`).

    Shapes: x (N, C, H, W), offset (N, 2*kh*kw, Ho, Wo), weight (Cout, C, kh, kw), mask (N, kh*kw, Ho, Wo)
    -> (N, Cout, Ho, Wo).
    """
    n, c, h, w = x.shape
    cout, _, kh, kw = weight.shape
    ho, wo = offset.shape[-2:]
    k = kh * kw
    ys, xs = _tap_coordinates(x, offset, kh, kw, stride, padding, dilation)  # (n, k, ho, wo) each
    # (n, ho, wo, k): a location's taps adjacent (contiguous, so that everything derived below is too)
    ys, xs = ys.permute(0, 2, 3, 1).contiguous(), xs.permute(0, 2, 3, 1).contiguous()
    y0, x0 = ys.detach().floor(), xs.detach().floor()
    ly, lx = ys - y0, xs - x0
    y0, x0 = y0.long(), x0.long()
    # the corners' rows y0, y0 + 1 and columns x0, x0 + 1: validity, bilinear factor and clamped index of each row
    # and column once, then the four (row, column) corners (row-major) stacked on a last axis of 4; on separate
    # contiguous tensors (a last axis of 2 broadcast against another makes PyTorch's kernels several times slower)
    if bounds is None:
        y_lo, y_hi, x_lo, x_hi = 0, h, 0, w
    else:  # (ho, wo) each -> (1, ho, wo, 1), against the (n, ho, wo, k) taps
        y_lo, y_hi, x_lo, x_hi = (b.view(1, ho, wo, 1) for b in bounds)
    y1, x1 = y0 + 1, x0 + 1
    dt = x.dtype
    wy = ((1 - ly) * ((y0 >= y_lo) & (y0 < y_hi)).to(dt), ly * ((y1 >= y_lo) & (y1 < y_hi)).to(dt))
    wx = ((1 - lx) * ((x0 >= x_lo) & (x0 < x_hi)).to(dt), lx * ((x1 >= x_lo) & (x1 < x_hi)).to(dt))
    ry = (y0.clamp(0, h - 1) * w, y1.clamp(0, h - 1) * w)  # a corner outside: weight zero, index clamped in
    cx = (x0.clamp(0, w - 1), x1.clamp(0, w - 1))
    index = torch.stack([ry[i] + cx[j] for i in (0, 1) for j in (0, 1)], -1)  # (n, ho, wo, k, 4)
    weights = torch.stack([wy[i] * wx[j] for i in (0, 1) for j in (0, 1)], -1)
    if mask is not None:
        weights = weights * mask.permute(0, 2, 3, 1).unsqueeze(-1)
    if n > 1:
        index = index + (torch.arange(n, device=x.device) * (h * w)).view(n, 1, 1, 1, 1)
    table = x.permute(0, 2, 3, 1).contiguous().view(n * h * w, c)  # channels-last rows (free if x is channels_last)
    if x.dtype == torch.float32 and _autocast_bf16(x.device.type):
        # bf16 autocast: gather bf16 rows with bf16 weights (the kernel sums in fp32) straight into the bf16 columns
        # the matmul takes, instead of fp32 columns cast for it (the coordinates and weights are fp32 until here)
        table, weights = table.to(torch.bfloat16), weights.to(torch.bfloat16)
    if CPU_IMPL.current == "gather_autograd":  # for the benchmarks: autograd's backward of embedding_bag
        cols = F.embedding_bag(index.view(-1, 4), table, per_sample_weights=weights.reshape(-1, 4), mode="sum")
    else:
        cols = _WeightedGather.apply(index.view(-1, 4), table, weights.reshape(-1, 4))
    if cols.numel() < weight.numel():
        # fewer column entries than weights (a deep layer on a small map, e.g. res5): reorder the columns to the
        # weight's (channel, tap) order instead of copying the weight to (tap, channel) order, whose gradient would
        # also reach the parameter in that order and need another copy
        cols = cols.view(n * ho * wo, k, c).transpose(1, 2).reshape(n, ho * wo, c * k)
        wmat = weight.reshape(cout, c * k)
    else:
        cols = cols.view(n, ho * wo, k * c)  # tap-major, channel-minor
        wmat = weight.permute(0, 2, 3, 1).reshape(cout, k * c)
    out = torch.matmul(cols, wmat.t())  # (n, ho * wo, cout)
    if bias is not None:
        out = out + bias
    # channels_last strides (oneDNN's own layout: the next conv takes them without a reorder; an NCHW copy here
    # made the synthetic training step no faster in interleaved runs)
    return out.permute(0, 2, 1).view(n, cout, ho, wo)


class DeformConv2d(nn.Module):
    """A deformable conv: DCNv1 when ``forward`` gets no mask, modulated DCNv2 when it gets one.

    Args mirror ``nn.Conv2d`` plus ``deformable_groups`` (G), ``norm`` (a module applied after the conv) and
    ``activation`` (a callable applied last). ``kernel_size`` / ``padding`` may be non-square, e.g. (3, 5) with
    padding (1, 2) keeps the spatial size.
    """

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups=1,
        deformable_groups=1,
        bias=False,
        norm=None,
        activation=None,
    ):
        super().__init__()
        assert in_channels % groups == 0, f"in_channels {in_channels} must be divisible by groups {groups}"
        assert out_channels % groups == 0, f"out_channels {out_channels} must be divisible by groups {groups}"
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride)
        self.padding = _pair(padding)
        self.dilation = _pair(dilation)
        self.groups = groups
        self.deformable_groups = deformable_groups
        self.norm = norm
        self.activation = activation
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, *self.kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        nn.init.kaiming_uniform_(self.weight, nonlinearity="relu")

    @property
    def offset_channels(self):
        """Channels of the offset tensor ``forward`` expects: 2 * G * kh * kw."""
        return 2 * self.deformable_groups * self.kernel_size[0] * self.kernel_size[1]

    def forward(self, x, offset, mask=None, bounds=None):
        """
        Args:
            x: (N, Cin, H, W).
            offset: (N, 2*G*kh*kw, Ho, Wo), see the module docstring for the layout.
            mask: optional (N, G*kh*kw, Ho, Wo) modulation in [0, 1] (DCNv2).
            bounds: optional per-location input rectangles, see :func:`deform_conv2d_gathered` (runs the gather
                on any device; needs groups = deformable groups = 1).
        Returns:
            (N, Cout, Ho, Wo).
        """
        return self.forward_with(x, offset, mask, self.weight, self.bias, self.norm, bounds)

    def forward_with(self, x, offset, mask, weight, bias, norm, bounds=None):
        """``forward`` with the given weight / bias / norm (e.g. a BatchNorm folded into them)."""
        if x.numel() == 0:
            h = (x.shape[-2] + 2 * self.padding[0] - self.dilation[0] * (self.kernel_size[0] - 1) - 1)
            w = (x.shape[-1] + 2 * self.padding[1] - self.dilation[1] * (self.kernel_size[1] - 1) - 1)
            shape = (x.shape[0], self.out_channels, h // self.stride[0] + 1, w // self.stride[1] + 1)
            return x.new_zeros(shape)
        op = self._fast_op(x) or deform_conv2d
        extra = {}
        if bounds is not None:
            if self.groups != 1 or self.deformable_groups != 1:
                raise ValueError("DeformConv2d bounds need groups = deformable groups = 1")
            op, extra = deform_conv2d_gathered, {"bounds": bounds}
        dtype = x.dtype
        if op is not deform_conv2d and dtype not in (torch.float32, torch.float64):
            dtype = torch.float32  # the tap coordinates / bilinear weights run in fp32 under bf16 / fp16 autocast
        elif dtype == torch.bfloat16 or (dtype == torch.float16 and x.device.type == "cpu"):
            dtype = torch.float32  # torchvision's kernels have no bf16 (nor CPU fp16): run it in fp32 (autocast)
        out = op(
            x.to(dtype),
            offset.to(dtype),
            weight.to(dtype),
            None if bias is None else bias.to(dtype),
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            mask=None if mask is None else mask.to(dtype),
            **extra,
        ).to(x.dtype)
        if norm is not None:
            out = norm(out)
        if self.activation is not None:
            out = self.activation(out)
        return out

    def supports_bounds(self, x):
        """True when ``forward(x, ..., bounds=...)`` runs this conv's usual implementation for ``x``: the CPU gather
        (not under :class:`force_sampled_deform_conv`, not torchvision's op)."""
        return self.groups == 1 and self.deformable_groups == 1 and self._fast_op(x) is deform_conv2d_gathered

    def _fast_op(self, x):
        """The fast path for input ``x`` (see the module docstring), or None for torchvision's op: the grid_sample
        form under :class:`force_sampled_deform_conv` (any device), else on CPU the :func:`cpu_deform_conv_impl`
        setting (the grid_sample form needs maps of at least 2x2)."""
        if self.groups != 1 or self.deformable_groups != 1:
            return None
        if _FORCE_SAMPLED[0]:
            return deform_conv2d_sampled
        if x.device.type != "cpu":
            return None
        if CPU_IMPL.current in ("gather", "gather_autograd"):
            return deform_conv2d_gathered
        if CPU_IMPL.current == "grid_sample" and min(x.shape[-2:]) >= 2:
            return deform_conv2d_sampled
        return None

    def extra_repr(self):
        return (
            f"in_channels={self.in_channels}, out_channels={self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, groups={self.groups}, "
            f"deformable_groups={self.deformable_groups}, bias={self.bias is not None}"
        )
