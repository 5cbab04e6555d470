from . import fcb, prediction_head, protonet, temporal_fusion  # noqa: F401
from .build import (  # noqa: F401
    FCB_REGISTRY,
    PREDICTION_HEAD_REGISTRY,
    PROTONET_REGISTRY,
    TEMPORAL_FUSION_HEAD_REGISTRY,
    build_fcb,
    build_prediction_head,
    build_protonet,
    build_temporal_fusion_head,
)
