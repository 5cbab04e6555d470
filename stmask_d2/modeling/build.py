"""Model builder that resolves ``MODEL.DEVICE`` "auto" (configs/Base-STMask.yaml) at build time."""
import torch
from detectron2.modeling import META_ARCH_REGISTRY

from ..config import resolve_device

__all__ = ["build_model"]


def build_model(cfg):
    """Detectron2's ``build_model`` (``cfg.MODEL.META_ARCHITECTURE`` from ``META_ARCH_REGISTRY``, no weights loaded)
    on the device of :func:`stmask_d2.config.resolve_device` (``MODEL.DEVICE`` "auto": the GPU when there is one,
    else the CPU), leaving ``cfg`` as it is. (Detectron2's own ``build_model`` works too for the STMask
    meta-architecture, which resolves "auto" in the config it is given; for any other it needs a real device.)"""
    cfg = cfg.clone()
    cfg.defrost()
    device = resolve_device(cfg.MODEL.DEVICE)
    cfg.MODEL.DEVICE = device
    model = META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE)(cfg)
    model.to(torch.device(device))
    return model
