"""SOLVER.ADAMW_FUSED: the fused AdamW kernel gives the same update as PyTorch's per-parameter AdamW, gradient
clipping included."""
import copy

import torch

from _stmask_cfg import base_cfg
from stmask_d2.engine.trainer import STMaskTrainer


def _cfg(fused):
    cfg = base_cfg(dcn=False)
    cfg.merge_from_list(["SOLVER.OPTIMIZER", "ADAMW", "SOLVER.BASE_LR", 0.01, "SOLVER.WEIGHT_DECAY", 0.01,
                         "SOLVER.CLIP_GRADIENTS.ENABLED", True, "SOLVER.CLIP_GRADIENTS.CLIP_TYPE", "norm",
                         "SOLVER.CLIP_GRADIENTS.CLIP_VALUE", 0.5, "SOLVER.ADAMW_FUSED", fused])
    return cfg


def test_fused_adamw_equals_the_per_parameter_update():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.GroupNorm(2, 8), torch.nn.Conv2d(8, 4, 1))
    nets = {f: copy.deepcopy(net) for f in (True, False)}
    opts = {f: STMaskTrainer.build_optimizer(_cfg(f), nets[f]) for f in (True, False)}
    assert opts[True].defaults.get("fused") is True and not opts[False].defaults.get("fused")
    assert "GradientClip" in type(opts[True]).__name__  # SOLVER.CLIP_GRADIENTS still applies
    x = torch.randn(2, 3, 9, 9)
    for step in range(4):
        for f in (True, False):
            opts[f].zero_grad()
            (nets[f](x).square().sum() * (step + 1)).backward()  # large gradients: clipped
            opts[f].step()
    for a, b in zip(nets[True].parameters(), nets[False].parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert not torch.equal(nets[True][0].weight, net[0].weight)  # it trained
