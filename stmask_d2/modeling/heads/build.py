"""Registries and build functions of STMask's head roles (Panoptic-DeepLab style: one registry per role).

Each registered class has a ``@configurable`` constructor, so it can be built from a config with the
``build_*`` function below or directly from keyword arguments in another detector.
"""
from detectron2.utils.registry import Registry

__all__ = [
    "FCB_REGISTRY",
    "PREDICTION_HEAD_REGISTRY",
    "PROTONET_REGISTRY",
    "TEMPORAL_FUSION_HEAD_REGISTRY",
    "build_fcb",
    "build_prediction_head",
    "build_protonet",
    "build_temporal_fusion_head",
]

PREDICTION_HEAD_REGISTRY = Registry("STMASK_PREDICTION_HEAD")
PREDICTION_HEAD_REGISTRY.__doc__ = """
Dense prediction heads (class, box, centerness, mask coefficients, track embedding per anchor).
Called with ``(cfg, input_shape: List[ShapeSpec])``; selected by ``MODEL.STMASK.HEAD.NAME``.
"""

PROTONET_REGISTRY = Registry("STMASK_PROTONET")
PROTONET_REGISTRY.__doc__ = """
Prototype networks. Called with ``(cfg, input_shape: ShapeSpec)``; selected by ``MODEL.STMASK.PROTONET.NAME``.
"""

FCB_REGISTRY = Registry("STMASK_FCB")
FCB_REGISTRY.__doc__ = """
Box-calibrated prediction convs (FCB, feature calibration for boxes) that replace a prediction conv of the head.
Called with ``(cfg, in_channels, out_channels, kernel_size, anchor_cells=None)``; selected by
``MODEL.STMASK.FCB.NAME``.
"""

TEMPORAL_FUSION_HEAD_REGISTRY = Registry("STMASK_TEMPORAL_FUSION_HEAD")
TEMPORAL_FUSION_HEAD_REGISTRY.__doc__ = """
Temporal fusion heads (frame t-1 -> t box and coefficient deltas). Called with
``(cfg, input_shape: ShapeSpec)`` of the correlation level; selected by ``MODEL.STMASK.TF.NAME``.
"""


def build_prediction_head(cfg, input_shape):
    """Build the prediction head named by ``cfg.MODEL.STMASK.HEAD.NAME`` for the given list of level shapes."""
    return PREDICTION_HEAD_REGISTRY.get(cfg.MODEL.STMASK.HEAD.NAME)(cfg, input_shape)


def build_protonet(cfg, input_shape):
    """Build the ProtoNet named by ``cfg.MODEL.STMASK.PROTONET.NAME`` for the shape of its input level."""
    return PROTONET_REGISTRY.get(cfg.MODEL.STMASK.PROTONET.NAME)(cfg, input_shape)


def build_temporal_fusion_head(cfg, input_shape):
    """Build the temporal fusion head named by ``cfg.MODEL.STMASK.TF.NAME``."""
    return TEMPORAL_FUSION_HEAD_REGISTRY.get(cfg.MODEL.STMASK.TF.NAME)(cfg, input_shape)


def build_fcb(cfg, in_channels, out_channels, kernel_size, anchor_cells=None):
    """Build the FCB module named by ``cfg.MODEL.STMASK.FCB.NAME`` (mode ``MODEL.STMASK.FCB.MODE``) for one anchor
    of one prediction conv: ``in_channels`` -> ``out_channels``, kernel (kh, kw), ``anchor_cells`` (ah, aw)."""
    return FCB_REGISTRY.get(cfg.MODEL.STMASK.FCB.NAME)(cfg, in_channels, out_channels, kernel_size,
                                                       anchor_cells=anchor_cells)
