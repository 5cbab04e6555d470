"""CUDA paths compute what the CPU paths compute (marked ``cuda``: skipped where no CUDA device exists).

On CUDA the deformable convs run torchvision's kernel instead of the CPU grid_sample path, and the whole model
moves its buffers (pixel mean / std, anchors, tracker state) to the device; these tests catch value differences and
device mismatches there.
"""
import copy
import os

import numpy as np
import pytest
import torch

from stmask_d2.layers import DeformConv2d

pytestmark = pytest.mark.cuda

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs", "synthetic", "STMask_R18_synthetic_TF.yaml")


@pytest.fixture
def no_tf32():
    """Full float32 precision on CUDA during the test (TF32 convs differ from the CPU by ~1e-3)."""
    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


@pytest.mark.parametrize("modulated", [False, True])
def test_deform_conv_cuda_equals_cpu_in_value_and_gradients(modulated):
    g = torch.Generator().manual_seed(0)
    module = DeformConv2d(6, 5, (3, 5), padding=(1, 2), bias=True).double()
    x = torch.randn(2, 6, 7, 9, generator=g, dtype=torch.float64)
    offset = torch.randn(2, 30, 7, 9, generator=g, dtype=torch.float64) * 1.5
    mask = torch.rand(2, 15, 7, 9, generator=g, dtype=torch.float64) if modulated else None
    grad_out = torch.randn(2, 5, 7, 9, generator=g, dtype=torch.float64)
    results = []
    for device in ("cpu", "cuda"):
        m = copy.deepcopy(module).to(device)
        leaves = [t.to(device).clone().requires_grad_() for t in (x, offset, mask) if t is not None]
        y = m(*leaves)
        y.backward(grad_out.to(device))
        results.append([y.detach()] + [t.grad for t in leaves] + [m.weight.grad, m.bias.grad])
    for cpu, cuda in zip(*results):
        torch.testing.assert_close(cuda.cpu(), cpu, rtol=1e-7, atol=1e-7)


def _tiny_model(device):
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model

    from stmask_d2.config import add_stmask_config

    cfg = get_cfg()
    add_stmask_config(cfg)
    cfg.merge_from_file(CONFIG)
    cfg.merge_from_list(["INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "96", "MODEL.DEVICE", device])
    torch.manual_seed(0)
    return build_model(cfg).eval()


def test_network_outputs_on_cuda_equal_cpu(no_tf32):
    cpu_model = _tiny_model("cpu")
    cuda_model = _tiny_model("cuda")
    cuda_model.load_state_dict(cpu_model.state_dict())
    image = torch.randint(0, 256, (3, 64, 96), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    outs = []
    with torch.no_grad():
        for model in (cpu_model, cuda_model):
            _, head_out, protos = model.extract(model.preprocess([image]))
            outs.append((head_out, protos))
    (cpu_head, cpu_protos), (cuda_head, cuda_protos) = outs
    assert set(cpu_head) == set(cuda_head)
    for key, value in cpu_head.items():
        if torch.is_tensor(value):
            torch.testing.assert_close(cuda_head[key].cpu(), value, rtol=1e-3, atol=1e-3, msg=key)
    torch.testing.assert_close(cuda_protos.cpu(), cpu_protos, rtol=1e-3, atol=1e-3)


def test_video_tracking_runs_on_cuda():
    model = _tiny_model("cuda")
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (64, 96, 3), dtype=np.uint8) for _ in range(3)]
    out = model.inference_video({"video_id": 1, "height": 64, "width": 96, "length": 3, "frames": frames})
    assert out["length"] == 3
    for track in out["tracks"]:
        assert len(track["segmentations"]) == 3
