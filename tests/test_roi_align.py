"""RoIAlign as per-RoI matrix products == torchvision.ops.roi_align (values and input gradients)."""
import pytest
import torch
from torchvision.ops import roi_align as tv_roi_align

from stmask_d2.layers.roi_align import cpu_roi_align_impl, roi_align, roi_align_separable


def _boxes(g):
    """Boxes inside, across and beyond the border of an 8x14 map at stride 16, tiny, empty and inverted ones."""
    b0 = torch.tensor([[0.0, 0.0, 224.0, 128.0], [10.0, 20.0, 60.0, 90.0], [-30.0, -40.0, 20.0, 10.0],
                       [200.0, 100.0, 260.0, 170.0], [50.0, 50.0, 50.0, 50.0], [33.3, 12.7, 35.1, 13.0],
                       [300.0, 300.0, 400.0, 380.0], [112.0, 64.0, 128.0, 80.0]])
    b1 = torch.rand(9, 2, generator=g) * torch.tensor([224.0, 128.0])
    b1 = torch.cat([b1, b1 + torch.rand(9, 2, generator=g) * 120], 1)
    return [b0, b1, torch.zeros(0, 4)]


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [0, 2])
@pytest.mark.parametrize("output_size", [7, (3, 5)])
def test_values_and_gradients_equal_torchvision(aligned, sampling_ratio, output_size):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 6, 8, 14, generator=g, dtype=torch.float64)
    boxes = [b.double() for b in _boxes(g)]
    grads = {}
    outs = {}
    for name, fn in (("ours", roi_align_separable), ("tv", tv_roi_align)):
        xi = x.clone().requires_grad_()
        out = fn(xi, boxes, output_size, 1 / 16, sampling_ratio, aligned)
        (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view(out.shape)).sum().backward()
        outs[name], grads[name] = out.detach(), xi.grad
    assert outs["ours"].shape == outs["tv"].shape == (17, 6) + ((7, 7) if output_size == 7 else (3, 5))
    torch.testing.assert_close(outs["ours"], outs["tv"], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(grads["ours"], grads["tv"], rtol=1e-10, atol=1e-10)


def test_tensor_boxes_no_box_gradient_and_dispatch():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 8, 14, generator=g)
    boxes = _boxes(g)[:2]
    rois = torch.cat([torch.cat([torch.full((len(b), 1), float(i)), b], 1) for i, b in enumerate(boxes)])
    rois.requires_grad_()
    out = roi_align_separable(x, rois, 7, 1 / 16, 0, True)
    torch.testing.assert_close(out, tv_roi_align(x, rois.detach(), 7, 1 / 16, 0, True), rtol=1e-5, atol=1e-5)
    assert not out.requires_grad  # no gradient to the boxes (nor, here, to x)
    assert roi_align_separable(x, [torch.zeros(0, 4), torch.zeros(0, 4)], 7, 1 / 16, 0, True).shape == (0, 4, 7, 7)
    prev = cpu_roi_align_impl("torchvision")
    try:
        torch.testing.assert_close(roi_align(x, boxes, 7, 1 / 16, 0, True), tv_roi_align(x, boxes, 7, 1 / 16, 0, True))
    finally:
        cpu_roi_align_impl(prev)
    with pytest.raises(ValueError, match="separable"):
        cpu_roi_align_impl("fast")


def test_autocast_bf16_input_computed_in_fp32_like_torchvision():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 4, 8, 14, generator=g).bfloat16()
    boxes = _boxes(g)[:2]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = roi_align(x, boxes, 7, 1 / 16, 0, True)
        ref = tv_roi_align(x, boxes, 7, 1 / 16, 0, True)
    assert ours.dtype == ref.dtype == torch.bfloat16
    torch.testing.assert_close(ours.float(), ref.float(), rtol=1e-2, atol=1e-2)


def test_traced_roi_align_is_torchvisions_op():
    """Under tracing (export) the op is torchvision's, whose ONNX / TorchScript form takes any number of boxes."""
    x = torch.randn(1, 3, 8, 14)
    traced = torch.jit.trace(lambda f, b: roi_align(f, [b], 7, 1 / 16, 0, True),
                             (x, torch.tensor([[0.0, 0.0, 64.0, 64.0]])))
    assert "torchvision::roi_align" in str(traced.graph)
    boxes = torch.tensor([[0.0, 0.0, 64.0, 64.0], [10.0, 5.0, 200.0, 120.0], [3.0, 3.0, 9.0, 9.0]])
    torch.testing.assert_close(traced(x, boxes), tv_roi_align(x, [boxes], 7, 1 / 16, 0, True))
