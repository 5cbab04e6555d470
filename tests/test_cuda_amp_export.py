"""CUDA checks of the speed paths (skipped without a CUDA device; tools/gpu_check.sh runs them): torchvision's CUDA deformable conv
against the CPU path (forward and gradients), the model on CUDA against CPU (same tracks), a TorchScript export
run on CUDA, and fp16 AMP training steps (GradScaler) with finite losses."""
import os

import numpy as np
import pytest
import torch

from conftest import requires_cuda

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = requires_cuda


@pytest.fixture(autouse=True)
def no_tf32():
    """Compare in true fp32 (TF32 convs / matmuls would differ from the CPU by ~1e-3)."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


@pytest.mark.parametrize("modulated", [False, True])
@pytest.mark.parametrize("stride,padding,dilation,k", [(1, 1, 1, (3, 3)), (2, 1, 1, (3, 3)), (1, (1, 2), 1, (3, 5)),
                                                       (1, 2, 2, (3, 3))])
def test_cuda_deform_conv_equals_cpu_path(modulated, stride, padding, dilation, k):
    from torchvision.ops import deform_conv2d

    from stmask_d2.layers.deform_conv import deform_conv2d_sampled

    torch.manual_seed(0)
    s, p, d = (stride, stride), padding if isinstance(padding, tuple) else (padding, padding), (dilation, dilation)
    x = torch.randn(2, 8, 13, 17)
    w = torch.randn(6, 8, *k) * 0.2
    b = torch.randn(6)
    ho = (13 + 2 * p[0] - d[0] * (k[0] - 1) - 1) // s[0] + 1
    wo = (17 + 2 * p[1] - d[1] * (k[1] - 1) - 1) // s[1] + 1
    off = torch.randn(2, 2 * k[0] * k[1], ho, wo) * 2
    mask = torch.rand(2, k[0] * k[1], ho, wo) if modulated else None
    leaves = [t.clone().requires_grad_() for t in (x, w, b, off)] + ([mask.clone().requires_grad_()] if modulated else [])
    cpu = deform_conv2d_sampled(*leaves[:1], leaves[3], leaves[1], leaves[2], stride=s, padding=p, dilation=d,
                                mask=leaves[4] if modulated else None)
    g = torch.randn_like(cpu)
    cpu.backward(g)
    cu = [t.detach().cuda().requires_grad_() for t in leaves]
    out = deform_conv2d(cu[0], cu[3], cu[1], cu[2], stride=s, padding=p, dilation=d, mask=cu[4] if modulated else None)
    out.backward(g.cuda())
    torch.testing.assert_close(out.cpu(), cpu.detach(), rtol=1e-4, atol=1e-4)
    for a, c in zip(cu, leaves):
        torch.testing.assert_close(a.grad.cpu(), c.grad, rtol=1e-3, atol=1e-3)


def _model(device):
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model

    from stmask_d2.config import add_stmask_config

    cfg = get_cfg()
    add_stmask_config(cfg)
    cfg.merge_from_file(os.path.join(ROOT, "configs", "youtubevis_2019", "STMask_R50_DCN_ada_TF.yaml"))
    cfg.merge_from_list(["MODEL.WEIGHTS", "", "MODEL.DEVICE", device, "INPUT.MIN_SIZE_TEST", "96",
                         "INPUT.MAX_SIZE_TEST", "160", "MODEL.STMASK.TEST.SCORE_THRESH", "0.0",
                         "MODEL.STMASK.TEST.NMS_TOP_K", "60", "MODEL.STMASK.TEST.MAX_DETECTIONS", "12"])
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    with torch.no_grad():
        for name, p in model.head.named_parameters():
            if name.endswith("bias") or "offset_conv" in name:
                p.normal_(0, 0.1)
    return model


def test_cuda_model_tracks_equal_cpu():
    cpu = _model("cpu")
    gpu = _model("cuda")
    gpu.load_state_dict(cpu.state_dict())
    rng = np.random.RandomState(0)
    frames = [rng.randint(0, 256, (90, 150, 3), dtype=np.uint8) for _ in range(3)]
    a = list(cpu.track_frames(frames, 90, 150))
    b = list(gpu.track_frames(frames, 90, 150))
    for x, y in zip(a, b):
        y = y.to("cpu")
        assert len(x) == len(y) > 0
        assert torch.equal(x.track_ids, y.track_ids) and torch.equal(x.pred_classes, y.pred_classes)
        torch.testing.assert_close(x.scores, y.scores, rtol=1e-3, atol=1e-4)
        torch.testing.assert_close(x.pred_boxes.tensor, y.pred_boxes.tensor, rtol=1e-3, atol=1e-2)
        assert (x.pred_masks != y.pred_masks).float().mean().item() <= 2e-3


def test_cuda_fp16_inference_runs():
    model = _model("cuda")
    rng = np.random.RandomState(1)
    frames = [rng.randint(0, 256, (90, 150, 3), dtype=np.uint8) for _ in range(2)]
    with torch.autocast("cuda", dtype=torch.float16):
        out = list(model.track_frames(frames, 90, 150))
    assert all(len(o) > 0 and torch.isfinite(o.scores).all() for o in out)


def test_cuda_amp_fp16_training_steps(tmp_path):
    from detectron2.utils.env import seed_all_rng

    from _tiny_setup import make_tiny_dataset, tiny_cfg
    from stmask_d2.engine import STMaskTrainer
    from stmask_d2.engine.train_loop import NonFiniteSkippingAMPTrainer

    data = make_tiny_dataset(tmp_path / "data")
    cfg = tiny_cfg(*data, output_dir=tmp_path / "out", extra_opts=[
        "MODEL.DEVICE", "cuda", "SOLVER.MAX_ITER", "5", "SOLVER.CHECKPOINT_PERIOD", "100", "SOLVER.AMP.ENABLED",
        "True"])
    seed_all_rng(cfg.SEED)
    trainer = STMaskTrainer(cfg)
    inner = trainer._trainer
    assert isinstance(inner, NonFiniteSkippingAMPTrainer)
    assert inner.precision == torch.float16 and inner.grad_scaler.is_enabled()
    trainer.train()
    assert trainer.iter == 5
    losses = {k: v[0] for k, v in trainer.storage.latest().items() if k.startswith("loss")}
    assert losses and all(np.isfinite(v) for v in losses.values()), losses
