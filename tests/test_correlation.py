import pytest
import torch
import torch.nn.functional as F

from stmask_d2.layers import spatial_correlation


def _brute_force(x1, x2, P):
    r = P // 2
    N, C, H, W = x1.shape
    out = torch.zeros(N, P * P, H, W, dtype=torch.float64)
    x1, x2 = x1.double(), x2.double()
    for p in range(-r, r + 1):
        for q in range(-r, r + 1):
            for i in range(H):
                for j in range(W):
                    if 0 <= i + p < H and 0 <= j + q < W:
                        out[:, (p + r) * P + (q + r), i, j] = (x1[:, :, i, j] * x2[:, :, i + p, j + q]).sum(1) / C
    return out


def _rc7_inputs():
    x1 = torch.ones(1, 2, 3, 3)
    grid = (3 * torch.arange(3.0)[:, None] + torch.arange(3.0)[None, :])  # 3i + j
    x2 = grid.expand(1, 2, 3, 3).clone()
    return x1, x2


def test_rc7_exact_values():
    x1, x2 = _rc7_inputs()
    out = spatial_correlation(x1, x2, patch_size=3)
    assert out.shape == (1, 9, 3, 3)
    assert out[0, :, 1, 1].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8]
    assert out[0, :, 0, 0].tolist() == [0, 0, 0, 0, 0, 1, 0, 3, 4]


def test_rc7_negated_leaky_then_relu():
    x1, x2 = _rc7_inputs()
    out = spatial_correlation(x1, -x2, patch_size=3)
    expected = torch.tensor([0, -0.1, -0.2, -0.3, -0.4, -0.5, -0.6, -0.7, -0.8])
    assert torch.allclose(out[0, :, 1, 1], expected, atol=1e-6)
    # STMask's concat-ReLU kills the leaky negative part
    assert (F.relu(out) == 0).all()
    # negative_slope=0 is a plain ReLU
    assert (spatial_correlation(x1, -x2, patch_size=3, negative_slope=0) == 0).all()


@pytest.mark.parametrize("P", [11, 5])
def test_random_vs_brute_force(P):
    g = torch.Generator().manual_seed(P)
    x1 = torch.randn(2, 6, 7, 9, generator=g)
    x2 = torch.randn(2, 6, 7, 9, generator=g)
    ref = _brute_force(x1, x2, P)
    out = spatial_correlation(x1, x2, patch_size=P, negative_slope=None)
    assert out.shape == (2, P * P, 7, 9)
    assert torch.allclose(out.double(), ref, atol=1e-5)
    out = spatial_correlation(x1, x2, patch_size=P)
    assert torch.allclose(out.double(), F.leaky_relu(ref, 0.1), atol=1e-5)


def test_gradients_flow_to_both_inputs():
    x1 = torch.randn(1, 4, 5, 6, requires_grad=True)
    x2 = torch.randn(1, 4, 5, 6, requires_grad=True)
    spatial_correlation(x1, x2, patch_size=3).sum().backward()
    assert x1.grad is not None and x2.grad is not None
    assert torch.isfinite(x1.grad).all() and x2.grad.abs().sum() > 0
