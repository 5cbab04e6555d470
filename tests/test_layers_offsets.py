import math

import pytest
import torch
from torchvision.ops import deform_conv2d

from stmask_d2.layers import aligned_offsets


def test_rc3_exact_vector():
    t = torch.tensor([1.0, -2.0, 0.0, math.log(2) / 0.2]).view(1, 4, 1, 1)
    off = aligned_offsets(t, (3, 3))
    assert off.shape == (1, 18, 1, 1)
    expected = torch.tensor([-1.6, 0.3] * 3 + [-0.6, 0.3] * 3 + [0.4, 0.3] * 3)
    assert torch.allclose(off.flatten(), expected, atol=1e-5)


def test_zero_deltas_give_zero_offsets_and_layout():
    off = aligned_offsets(torch.zeros(2, 4, 3, 4), (3, 5))
    assert off.shape == (2, 30, 3, 4) and off.abs().max() == 0
    # tw only: x offsets = Δw·c, y offsets 0; tap n = (r+1)*5 + (c+2)
    t = torch.zeros(1, 4, 1, 1)
    t[0, 2] = math.log(1.5) / 0.2  # Δw = 0.5
    off = aligned_offsets(t, (3, 5)).view(3, 5, 2)
    assert torch.allclose(off[..., 0], torch.zeros(3, 5))
    assert torch.allclose(off[..., 1], 0.5 * torch.arange(-2, 3.0).expand(3, 5))


def _bilinear(img, y, x):
    """Zero-padded bilinear sample of img (H, W) at real (y, x), written independently of torchvision."""
    h, w = img.shape
    y0, x0 = math.floor(y), math.floor(x)
    val = 0.0
    for yy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
        for xx, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
            if 0 <= yy < h and 0 <= xx < w:
                val += wy * wx * float(img[yy, xx])
    return val


@pytest.mark.parametrize("kernel", [(3, 3), (3, 5), (5, 3)])
def test_deform_conv_samples_box_grid(kernel):
    """A one-hot weight picks tap n; the deform conv must return the bilinear sample at the aligned grid point
    centre + (Δy + (1 + Δh)·r, Δx + (1 + Δw)·c)."""
    torch.manual_seed(0)
    kh, kw = kernel
    H, W = 9, 11
    img = torch.rand(1, 1, H, W, dtype=torch.float64)
    deltas = (torch.randn(1, 4, H, W, dtype=torch.float64) * 1.5)
    off = aligned_offsets(deltas, kernel)
    tx, ty, tw, th = deltas[0]
    for r in range(-(kh // 2), kh // 2 + 1):
        for c in range(-(kw // 2), kw // 2 + 1):
            weight = torch.zeros(1, 1, kh, kw, dtype=torch.float64)
            weight[0, 0, r + kh // 2, c + kw // 2] = 1.0
            out = deform_conv2d(img, off, weight, padding=(kh // 2, kw // 2))[0, 0]
            for i in range(0, H, 3):
                for j in range(0, W, 4):
                    dy = 0.1 * kh * ty[i, j].item()
                    dx = 0.1 * kw * tx[i, j].item()
                    sh = math.exp(0.2 * th[i, j].item())  # 1 + Δh
                    sw = math.exp(0.2 * tw[i, j].item())
                    expect = _bilinear(img[0, 0], i + dy + sh * r, j + dx + sw * c)
                    assert out[i, j].item() == pytest.approx(expect, abs=1e-9)
