"""The CPU fast paths of the deformable conv (channels-last gather, grid_sample) equal torchvision's deform_conv2d in value and in every gradient."""
import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import deform_conv2d

from stmask_d2.layers import DeformConv2d
from stmask_d2.layers.deform_conv import deform_conv2d_gathered, deform_conv2d_sampled


@pytest.mark.parametrize(
    "n,c,h,w,kh,kw,stride,dil,scale,modulated",
    [
        (2, 8, 9, 13, 3, 5, 1, 1, 1.0, False),
        (2, 8, 9, 13, 5, 3, 1, 1, 2.0, True),  # samples far outside the map
        (1, 6, 7, 8, 3, 3, 2, 1, 0.7, True),
        (1, 6, 7, 8, 3, 3, 1, 2, 0.7, False),
        (3, 4, 2, 2, 3, 3, 1, 1, 0.5, False),  # 2x2 maps: every sample touches a border
        (1, 6, 2, 2, 3, 3, 1, 1, 0.5, True),  # fewer columns than weights: the columns take the weight's order
    ],
)
@pytest.mark.parametrize("fast", [deform_conv2d_gathered, deform_conv2d_sampled], ids=["gathered", "sampled"])
def test_values_and_gradients_equal_torchvision(n, c, h, w, kh, kw, stride, dil, scale, modulated, fast):
    g = torch.Generator().manual_seed(0)
    pad = (dil * (kh - 1) // 2, dil * (kw - 1) // 2)
    ho = (h + 2 * pad[0] - dil * (kh - 1) - 1) // stride + 1
    wo = (w + 2 * pad[1] - dil * (kw - 1) - 1) // stride + 1
    x = torch.randn(n, c, h, w, generator=g, dtype=torch.float64)
    wt = torch.randn(5, c, kh, kw, generator=g, dtype=torch.float64)
    b = torch.randn(5, generator=g, dtype=torch.float64)
    off = torch.randn(n, 2 * kh * kw, ho, wo, generator=g, dtype=torch.float64) * scale
    mask = torch.rand(n, kh * kw, ho, wo, generator=g, dtype=torch.float64) if modulated else None
    grad_out = torch.randn(n, 5, ho, wo, generator=g, dtype=torch.float64)
    results = []
    for op in (deform_conv2d, fast):
        leaves = [t.clone().requires_grad_() for t in (x, wt, b, off)] + (
            [mask.clone().requires_grad_()] if modulated else [None]
        )
        y = op(leaves[0], leaves[3], leaves[1], leaves[2], stride=(stride, stride), padding=pad,
               dilation=(dil, dil), mask=leaves[4])
        y.backward(grad_out)
        results.append([y.detach()] + [t.grad for t in leaves if t is not None])
    for a, r in zip(results[1], results[0]):
        torch.testing.assert_close(a, r, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("h,w", [(9, 13), (2, 2)])  # weight reordered / columns reordered
def test_gathered_output_is_channels_last_and_weight_gradient_contiguous(h, w):
    """The output keeps the matmul's channels_last strides; with the columns reordered to the weight's order (a
    map smaller than the weight) the weight's gradient arrives in the parameter's own layout, with no copy."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 16, h, w, generator=g)
    wt = torch.randn(24, 16, 3, 3, generator=g, requires_grad=True)
    off = torch.randn(2, 18, h, w, generator=g)
    seen = []
    wt.register_hook(lambda grad: seen.append(grad.is_contiguous()))
    y = deform_conv2d_gathered(x, off, wt, padding=(1, 1))
    assert y.is_contiguous(memory_format=torch.channels_last)
    y.square().sum().backward()
    assert seen == [h == 2]  # the permuted weight's gradient arrives permuted (AccumulateGrad then copies it)
    torch.testing.assert_close(y, deform_conv2d(x, off, wt.detach(), padding=(1, 1)), rtol=1e-4, atol=1e-4)


def test_module_trains_on_cpu_with_the_fast_path():
    torch.manual_seed(0)
    m = DeformConv2d(4, 4, (3, 5), padding=(1, 2))
    x = torch.randn(2, 4, 6, 9, requires_grad=True)
    off = torch.randn(2, 30, 6, 9, requires_grad=True)
    m(x, off).square().sum().backward()
    assert m.weight.grad is not None and torch.isfinite(m.weight.grad).all()
    assert x.grad.abs().sum() > 0 and off.grad.abs().sum() > 0


def test_gathered_handles_one_pixel_maps_and_integer_taps():
    """1-pixel-high maps (grid_sample cannot normalise them) and taps exactly on pixels and on the borders."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 1, 7, generator=g, dtype=torch.float64)
    wt = torch.randn(4, 3, 3, 3, generator=g, dtype=torch.float64)
    off = torch.randn(2, 18, 1, 7, generator=g, dtype=torch.float64).round()  # integer offsets
    off[0, :4, 0, 0] = torch.tensor([-1.0, 0.0, 1.0, 6.0])
    ref = deform_conv2d(x, off, wt, padding=(1, 1))
    torch.testing.assert_close(deform_conv2d_gathered(x, off, wt, padding=(1, 1)), ref, rtol=1e-9, atol=1e-9)


def test_gathered_offset_gradient_at_integer_positions_is_torchvisions():
    """Zero offsets (a deformable conv's initial state) put every tap exactly on a pixel, where the bilinear
    derivative is one-sided. The gather computes the positions exactly and takes torchvision's side; the
    grid_sample form's [-1, 1] normalisation rounds some positions just below the pixel and takes the other side
    (fp32 offset gradients up to 14% off in a 4x7 map), so training uses the gather."""
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 16, 4, 7, generator=g)
    wt = torch.randn(8, 16, 3, 3, generator=g)
    grad_out = torch.randn(2, 8, 4, 7, generator=g)
    grads = []
    for op in (deform_conv2d, deform_conv2d_gathered):
        off = torch.zeros(2, 18, 4, 7, requires_grad=True)
        op(x, off, wt, padding=(1, 1)).backward(grad_out)
        grads.append(off.grad)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-4)


def _gather_grads(fn, index, table, weights, grad):
    t, w = table.clone().requires_grad_(), weights.clone().requires_grad_()
    out = fn(index, t, w)
    out.backward(grad)
    return out.detach().double(), t.grad.double(), w.grad.double()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_weighted_gather_backward_equals_embedding_bags(dtype):
    """The gather's own backward (transposed gather + PyTorch's per-sample-weights kernel) gives autograd's
    gradients of F.embedding_bag, with repeated rows in a bag, rows no bag reads and zero weights; in bf16 it is
    at least as close to the float64 gradients as PyTorch's (it sums the table gradient in fp32)."""
    from stmask_d2.layers.deform_conv import _WeightedGather

    g = torch.Generator().manual_seed(0)
    index = torch.randint(0, 40, (300, 4), generator=g)
    index[0] = torch.tensor([3, 3, 3, 5])  # one row read several times by one bag
    index[index == 7] = 8  # row 7 is never read: its gradient is zero
    table = torch.randn(50, 16, generator=g)
    weights = torch.rand(300, 4, generator=g)
    weights[5] = 0
    grad = torch.randn(300, 16, generator=g)

    def torch_bags(i, t, w):
        return F.embedding_bag(i, t, per_sample_weights=w, mode="sum")

    args = [x.to(dtype) for x in (table, weights, grad)]
    ours = _gather_grads(_WeightedGather.apply, index, args[0], args[1], args[2])
    ref = _gather_grads(torch_bags, index, args[0], args[1], args[2])
    assert torch.all(ours[1][7] == 0) and ours[1][3].abs().sum() > 0
    if dtype != torch.bfloat16:
        tol = 1e-6 if dtype == torch.float64 else 1e-5  # fp32: the table gradient sums in another order
        for a, b in zip(ours, ref):
            torch.testing.assert_close(a, b, rtol=tol, atol=tol)
        return
    exact = _gather_grads(torch_bags, index, table.double(), weights.double(), grad.double())
    for a, b, e in zip(ours, ref, exact):
        assert (a - e).abs().max() <= (b - e).abs().max() + 1e-6
        torch.testing.assert_close(a, e, rtol=5e-2, atol=5e-2)


@pytest.mark.parametrize("int16_rows", [2 ** 15 - 1, 10])
def test_weighted_gather_backward_sort_keys(monkeypatch, int16_rows):
    """The table gradient is the same whether the entries are sorted on int16 keys (tables up to 32767 rows) or
    on int32 keys (larger tables; forced here on a small one)."""
    from stmask_d2.layers import deform_conv as dc

    monkeypatch.setattr(dc, "_INT16_ROWS", int16_rows)
    g = torch.Generator().manual_seed(1)
    rows = 40
    index = torch.randint(0, rows, (500, 4), generator=g)
    table = torch.randn(rows, 8, generator=g, dtype=torch.float64)
    weights = torch.rand(500, 4, generator=g, dtype=torch.float64)
    grad = torch.randn(500, 8, generator=g, dtype=torch.float64)
    ours = _gather_grads(dc._WeightedGather.apply, index, table, weights, grad)
    ref = _gather_grads(lambda i, t, w: F.embedding_bag(i, t, per_sample_weights=w, mode="sum"),
                        index, table, weights, grad)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_bf16_weight_gradient_in_blocks_equals_one_block(monkeypatch):
    """The bf16 per-sample-weight gradient computed over blocks of bags (the last one partial) equals it in one
    block, exactly: each entry's dot product is the same."""
    from stmask_d2.layers import deform_conv as dc

    g = torch.Generator().manual_seed(2)
    index = torch.randint(0, 30, (50, 4), generator=g)
    table = torch.randn(30, 8, generator=g).bfloat16()
    weights = torch.rand(50, 4, generator=g).bfloat16()
    grad = torch.randn(50, 8, generator=g).bfloat16()
    results = []
    for block in (7, 1000):
        monkeypatch.setattr(dc, "_PSW_BLOCK", block)
        t, w = table.clone().requires_grad_(), weights.clone().requires_grad_()
        dc._WeightedGather.apply(index, t, w).backward(grad)
        results.append((t.grad, w.grad))
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])


def test_gather_autograd_setting_gives_the_same_module_gradients():
    from stmask_d2.layers.deform_conv import cpu_deform_conv_impl

    torch.manual_seed(0)
    conv = DeformConv2d(6, 5, 3, padding=1)
    x = torch.randn(2, 6, 7, 9)
    offset = torch.randn(2, 18, 7, 9)
    grads = {}
    for impl in ("gather", "gather_autograd"):
        prev = cpu_deform_conv_impl(impl)
        try:
            xi, oi = x.clone().requires_grad_(), offset.clone().requires_grad_()
            conv.zero_grad()
            conv(xi, oi).square().sum().backward()
            grads[impl] = (xi.grad, oi.grad, conv.weight.grad.clone())
        finally:
            cpu_deform_conv_impl(prev)
    for a, b in zip(grads["gather"], grads["gather_autograd"]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_bf16_autocast_gathers_bf16_rows_close_to_fp32():
    """Under CPU bf16 autocast the gather reads bf16 rows with bf16 weights (no fp32 columns cast for the matmul);
    values and gradients stay within bf16 round-off of the fp32 ones."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Tables(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.dtypes = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.overloadpacket in (torch.ops.aten._embedding_bag, torch.ops.aten._embedding_bag_forward_only):
                self.dtypes.append(args[0].dtype)
            return func(*args, **(kwargs or {}))

    torch.manual_seed(0)
    conv = DeformConv2d(16, 8, (3, 5), padding=(1, 2))
    x = torch.randn(2, 16, 9, 11)
    offset = torch.randn(2, 30, 9, 11) * 2
    res = {}
    for amp in (False, True):
        xi, oi = x.clone().requires_grad_(), offset.clone().requires_grad_()
        conv.zero_grad()
        mode = Tables()
        with mode, torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            out = conv(xi, oi)
        out.float().square().sum().backward()
        res[amp] = (out.detach().float(), xi.grad, oi.grad, conv.weight.grad.clone())
        assert set(mode.dtypes) == {torch.bfloat16 if amp else torch.float32}
    for a, b in zip(res[True], res[False]):
        assert (a - b).norm() <= 2e-2 * b.norm()
