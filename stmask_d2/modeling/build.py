"""Model builder that resolves ``MODEL.DEVICE`` "auto" (configs/Base-STMask.yaml) at build time."""
import torch
from detectron2.modeling import META_ARCH_REGISTRY

from ..config import resolve_device

__all__ = ["build_model"]


def build_model(cfg):
    """Detectron2's ``build_model`` (``cfg.MODEL.META_ARCHITECTURE`` from ``META_ARCH_REGISTRY``, no weights loaded)
    on the device of :func:`stmask_d2.config.resolve_device` (``MODEL.DEVICE`` "auto": the GPU when there is one,
    else the CPU). Detectron2's own ``build_model`` accepts only a literal torch device string."""
    model = META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE)(cfg)
    model.to(torch.device(resolve_device(cfg.MODEL.DEVICE)))
    return model
