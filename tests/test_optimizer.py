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


def _grads(seed):
    torch.manual_seed(seed)
    params = [torch.nn.Parameter(torch.randn(*s)) for s in [(8, 3, 3, 3), (8,), (4, 8), (1,), (5, 5)]]
    for i, p in enumerate(params):
        if i != 3:  # one parameter without a gradient
            p.grad = torch.randn_like(p) * (0.1 if i == 1 else 10.0)  # one below the limit, the others above
    params.append(torch.nn.Parameter(torch.randn(6, dtype=torch.float64)))
    params[-1].grad = torch.randn(6, dtype=torch.float64) * 5  # another dtype: its own batch
    return params


def test_batched_per_parameter_clipping_equals_clip_grad_norm_per_parameter():
    from stmask_d2.engine.grad_clip import clip_grad_norm_per_parameter_

    for norm_type in (2.0, float("inf"), 1.0):
        ours, ref = _grads(1), _grads(1)
        clip_grad_norm_per_parameter_(ours, 1.5, norm_type)
        for p in ref:
            if p.grad is not None:
                torch.nn.utils.clip_grad_norm_(p, 1.5, norm_type)
        for a, b in zip(ours, ref):
            assert (a.grad is None) == (b.grad is None)
            if a.grad is not None:
                torch.testing.assert_close(a.grad, b.grad, rtol=1e-6, atol=0)
        assert float(ours[1].grad.norm()) < 1.5 and torch.equal(ours[1].grad, _grads(1)[1].grad)  # untouched
        torch.testing.assert_close(ours[1].grad, ref[1].grad, rtol=0, atol=0)  # clip_grad_norm_'s factor 1: exact
        assert abs(float(ours[0].grad.norm(norm_type)) - 1.5) < 1e-3  # clipped to the limit


def test_trainer_optimizers_clip_like_detectron2():
    """SGD (released) and AdamW from the trainer: the same steps as Detectron2's per-parameter clipping wrapper."""
    from detectron2.solver.build import maybe_add_gradient_clipping

    for name in ("SGD", "ADAMW"):
        cfg = _cfg(False)
        cfg.merge_from_list(["SOLVER.OPTIMIZER", name])
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.GroupNorm(2, 8), torch.nn.Conv2d(8, 4, 1))
        ours_net, ref_net = copy.deepcopy(net), copy.deepcopy(net)
        ours = STMaskTrainer.build_optimizer(cfg, ours_net)
        assert "GradientClip" in type(ours).__name__
        to_ref = {id(p): q for p, q in zip(ours_net.parameters(), ref_net.parameters())}
        groups = [{**{k: v for k, v in g.items() if k != "params"}, "params": [to_ref[id(p)] for p in g["params"]]}
                  for g in ours.param_groups]  # the same groups (lr, decay, momentum ...) over the copy
        ref = maybe_add_gradient_clipping(cfg, type(ours).__mro__[1])(groups)
        x = torch.randn(2, 3, 9, 9)
        for step in range(3):
            for n_, o in ((ours_net, ours), (ref_net, ref)):
                o.zero_grad()
                (n_(x).square().sum() * (step + 1)).backward()
                o.step()
        for a, b in zip(ours_net.parameters(), ref_net.parameters()):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
        assert not torch.equal(ours_net[0].weight, net[0].weight)


def test_clip_batched_false_is_detectron2s_loop():
    cfg = _cfg(True)
    net = torch.nn.Conv2d(3, 4, 3)
    assert STMaskTrainer.build_optimizer(cfg, net).step.__func__.__module__ == "stmask_d2.engine.grad_clip"
    cfg.merge_from_list(["SOLVER.CLIP_GRADIENTS.BATCHED", False])
    assert STMaskTrainer.build_optimizer(cfg, net).step.__func__.__module__ == "detectron2.solver.build"


def test_batched_clipping_leaves_gradients_below_the_limit_untouched():
    from stmask_d2.engine.grad_clip import clip_grad_norm_per_parameter_

    ours = _grads(2)
    before = [None if p.grad is None else p.grad.clone() for p in ours]
    clip_grad_norm_per_parameter_(ours, 1e6)  # nothing above the limit: no scaling at all
    for p, b in zip(ours, before):
        assert (p.grad is None and b is None) or torch.equal(p.grad, b)
