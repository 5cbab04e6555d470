"""ResNet with deformable blocks every DEFORM_INTERVAL blocks and the Yolact-style FPN P3-P7 (docs/METHOD.md §1)."""
from . import fpn, resnet_dcn  # noqa: F401
from .fpn import YolactFPN, build_stmask_resnet_fpn_backbone  # noqa: F401
from .resnet_dcn import (  # noqa: F401
    DeformBasicBlock,
    DeformBottleneckBlock,
    build_stmask_resnet_backbone,
    deform_block_indices,
    make_block,
)
