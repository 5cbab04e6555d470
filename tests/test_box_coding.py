"""RC5 (docs/METHOD.md §13): the released box encoding (variances 0.1 / 0.2) is Detectron2's Box2BoxTransform with
weights (10, 10, 5, 5); coordinates may be normalised or pixels (the encoding is scale-invariant)."""
import math

import pytest
import torch
from detectron2.modeling.box_regression import Box2BoxTransform

B2B = Box2BoxTransform(weights=(10.0, 10.0, 5.0, 5.0))


@pytest.mark.parametrize("scale", [1.0, 640.0])
def test_rc5_encode_decode(scale):
    # prior (cx, cy, w, h) = (0.5, 0.5, 0.2, 0.1) -> XYXY (0.4, 0.45, 0.6, 0.55); GT (0.32, 0.495, 0.72, 0.545)
    prior = torch.tensor([[0.4, 0.45, 0.6, 0.55]], dtype=torch.float64) * scale
    gt = torch.tensor([[0.32, 0.495, 0.72, 0.545]], dtype=torch.float64) * scale
    t = B2B.get_deltas(prior, gt)
    expected = torch.tensor([[1.0, 2.0, math.log(2) / 0.2, math.log(0.5) / 0.2]], dtype=torch.float64)
    torch.testing.assert_close(t, expected, rtol=0, atol=1e-9)
    assert abs(expected[0, 2].item() - 3.465736) < 1e-6
    decoded = B2B.apply_deltas(t, prior).double()  # Detectron2 decodes in float32
    torch.testing.assert_close(decoded, gt, rtol=0, atol=1e-6 * scale)
