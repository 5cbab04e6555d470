"""Per-parameter gradient-norm clipping (``SOLVER.CLIP_GRADIENTS`` with ``CLIP_TYPE: "norm"``) in batched kernels.

Detectron2's ``maybe_add_gradient_clipping`` calls ``torch.nn.utils.clip_grad_norm_`` once per parameter. On a
model of a few hundred small tensors (the synthetic R-18 STMask has 277) that is a dozen small ops per parameter,
about 5% of a CPU training step. :func:`add_batched_gradient_clipping` computes the same per-parameter
coefficients, ``min(1, CLIP_VALUE / (||g||_p + 1e-6))`` with the norm taken exactly as ``clip_grad_norm_`` takes it
(``torch._foreach_norm``, then ``torch.linalg.vector_norm`` of the one-element list), for all gradients of one
device and dtype at once, and scales the gradients above the limit with one ``torch._foreach_mul_`` (the others
keep a factor of exactly 1, as in ``clip_grad_norm_``): the same update to float round-off
(tests/test_optimizer.py). Value clipping (``CLIP_TYPE: "value"``), disabled clipping and
``SOLVER.CLIP_GRADIENTS.BATCHED: False`` keep Detectron2's code.
"""
from collections import defaultdict

import torch
from detectron2.solver.build import maybe_add_gradient_clipping

__all__ = ["add_batched_gradient_clipping", "clip_grad_norm_per_parameter_"]


@torch.no_grad()
def clip_grad_norm_per_parameter_(params, max_norm: float, norm_type: float = 2.0) -> None:
    """For every parameter p with a gradient: ``torch.nn.utils.clip_grad_norm_(p, max_norm, norm_type)``, batched.

    Args:
        params: iterable of tensors; those whose ``.grad`` is None are skipped.
        max_norm: the largest norm a single parameter's gradient keeps.
        norm_type: the p of the p-norm (``inf`` allowed).
    """
    groups = defaultdict(list)  # one batch of kernels per (device, dtype), as torch's foreach ops require
    for p in params:
        if p.grad is not None:
            groups[(p.grad.device, p.grad.dtype)].append(p.grad)
    for grads in groups.values():
        norms = torch.stack(torch._foreach_norm(grads, norm_type))  # (P,)
        norms = torch.linalg.vector_norm(norms.unsqueeze(1), norm_type, dim=1)  # as clip_grad_norm_ of one tensor
        coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)
        # only the gradients above the limit: a factor of exactly 1 changes nothing, and scaling every gradient
        # would read and write all of them once more (memory-bound on a CPU)
        clipped = [i for i, below in enumerate((coef < 1.0).tolist()) if below]
        if clipped:
            torch._foreach_mul_([grads[i] for i in clipped], [coef[i] for i in clipped])


def add_batched_gradient_clipping(cfg, optimizer):
    """``detectron2.solver.build.maybe_add_gradient_clipping`` with the per-parameter norm clipping batched
    (:func:`clip_grad_norm_per_parameter_`).

    Args:
        cfg: the config (reads SOLVER.CLIP_GRADIENTS.{ENABLED, CLIP_TYPE, CLIP_VALUE, NORM_TYPE, BATCHED}).
        optimizer: an optimizer class, or an optimizer instance (its class is replaced, as Detectron2 does).

    Returns:
        the class (or the instance) whose ``step`` clips every parameter's gradient first; unchanged when
        clipping is disabled. Value clipping, and norm clipping with BATCHED False, are Detectron2's own.
    """
    clip = cfg.SOLVER.CLIP_GRADIENTS
    if not clip.ENABLED or clip.CLIP_TYPE != "norm" or not clip.get("BATCHED", True):
        return maybe_add_gradient_clipping(cfg, optimizer)
    base = type(optimizer) if isinstance(optimizer, torch.optim.Optimizer) else optimizer
    max_norm, norm_type = float(clip.CLIP_VALUE), float(clip.NORM_TYPE)

    def step(self, closure=None):
        clip_grad_norm_per_parameter_((p for g in self.param_groups for p in g["params"]), max_norm, norm_type)
        return super(clipped, self).step(closure)

    clipped = type(base.__name__ + "WithGradientClip", (base,), {"step": step})
    if isinstance(optimizer, torch.optim.Optimizer):
        optimizer.__class__ = clipped
        return optimizer
    return clipped
