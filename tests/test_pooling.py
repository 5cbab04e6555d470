"""stmask_d2.layers.max_pool2d (channels_last forward, NCHW backward with the indices) == F.max_pool2d, and the
ResNet stem that uses it == Detectron2's BasicStem."""
import pytest
import torch
import torch.nn.functional as F
from detectron2.modeling.backbone.resnet import BasicStem

from stmask_d2.layers import pooling
from stmask_d2.layers.pooling import cpu_max_pool_impl, max_pool2d
from stmask_d2.modeling.backbone.resnet_dcn import Stem


def _map(shape, dtype, seed=0):
    """A ReLU'd map (many tied zeros in every window), with a few NaNs and a plateau of equal values."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g).relu()
    x[0, 0, 1, 1] = float("nan")
    x[-1, -1, 2:5, 3:7] = 0.75
    return x.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape,kernel,stride,padding", [
    ((2, 3, 13, 18), 3, 2, 1),        # the stem's pool, odd sizes
    ((1, 4, 16, 16), 2, 2, 0),
    ((2, 2, 9, 7), (3, 2), (1, 2), (1, 0)),
    ((3, 1, 8, 8), 3, None, 1),       # one channel: contiguous in both layouts -> F.max_pool2d
])
def test_values_and_input_gradient_equal_torch(dtype, shape, kernel, stride, padding):
    x = _map(shape, dtype)
    outs, grads = {}, {}
    for name, fn in (("ours", max_pool2d), ("torch", F.max_pool2d)):
        xi = x.clone().requires_grad_()
        out = fn(xi, kernel, stride, padding)
        (out * torch.linspace(-1, 1, out.numel(), dtype=torch.float64).view(out.shape).to(dtype)).sum().backward()
        outs[name], grads[name] = out.detach(), xi.grad
        assert out.is_contiguous()
    torch.testing.assert_close(outs["ours"], outs["torch"], rtol=0, atol=0, equal_nan=True)
    torch.testing.assert_close(grads["ours"], grads["torch"], rtol=0, atol=0, equal_nan=True)


def test_indices_of_both_layouts_agree_on_ties_and_nans():
    x = _map((2, 8, 15, 21), torch.float32)
    _, nchw = torch.ops.aten.max_pool2d_with_indices(x, [3, 3], [2, 2], [1, 1], [1, 1], False)
    _, nhwc = torch.ops.aten.max_pool2d_with_indices(x.contiguous(memory_format=torch.channels_last),
                                                     [3, 3], [2, 2], [1, 1], [1, 1], False)
    assert torch.equal(nchw, nhwc)


def test_takes_the_channels_last_path_and_falls_back(monkeypatch):
    calls = []
    real = pooling._ChannelsLastMaxPool.apply
    monkeypatch.setattr(pooling._ChannelsLastMaxPool, "apply", lambda *a: calls.append(1) or real(*a))
    x = _map((2, 3, 10, 12), torch.float32).requires_grad_()
    max_pool2d(x, 3, 2, 1)
    assert calls == [1]
    max_pool2d(x.contiguous(memory_format=torch.channels_last), 3, 2, 1)  # already channels_last
    max_pool2d(x, 3, 2, 1, dilation=2)
    max_pool2d(x, 3, 2, 1, ceil_mode=True)
    torch.jit.trace(lambda t: max_pool2d(t, 3, 2, 1), (x.detach(),))
    prev = cpu_max_pool_impl("torch")
    try:
        assert prev == "channels_last"
        max_pool2d(x, 3, 2, 1)
    finally:
        cpu_max_pool_impl(prev)
    assert calls == [1]
    with pytest.raises(ValueError, match="must be one of"):
        cpu_max_pool_impl("fast")


def test_without_gradient_equal_and_contiguous():
    x = _map((2, 5, 11, 9), torch.float32)
    with torch.no_grad():
        out = max_pool2d(x, 3, 2, 1)
    assert out.is_contiguous()
    torch.testing.assert_close(out, F.max_pool2d(x, 3, 2, 1), rtol=0, atol=0, equal_nan=True)
    with torch.inference_mode():
        torch.testing.assert_close(max_pool2d(x, 3, 2, 1), F.max_pool2d(x, 3, 2, 1), rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("norm", ["GN", "FrozenBN"])
def test_stem_equals_detectron2_basic_stem(norm):
    torch.manual_seed(0)
    ref = BasicStem(3, 32, norm=norm)
    ours = Stem(3, 32, norm=norm)
    ours.load_state_dict(ref.state_dict())
    assert list(ours.state_dict()) == list(ref.state_dict())
    x = torch.randn(2, 3, 37, 50)
    outs, grads = [], []
    for m in (ours, ref):
        m.zero_grad()
        y = m(x)
        (y * torch.linspace(-1, 1, y.numel()).view(y.shape)).sum().backward()
        outs.append(y.detach())
        grads.append(m.conv1.weight.grad.clone())
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)
    torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=0)
    assert ours.stride == ref.stride == 4 and ours.out_channels == ref.out_channels
