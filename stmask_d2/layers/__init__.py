"""Pure tensor ops shared by the rest of stmask_d2: no config, no registry, nothing else of ours imported."""
from .correlation import spatial_correlation  # noqa: F401
from .deform_conv import DeformConv2d, cpu_deform_conv_impl  # noqa: F401
from .mask_ops import (  # noqa: F401
    PROTO_STRIDE,
    assemble_masks,
    crop_masks,
    encode_masks_rle,
    gt_masks_at_proto,
    pairwise_mask_iou,
    paste_masks_to_image,
)
from .lazy_masks import LazyMasks  # noqa: F401
from .nms import batched_box_iou, fast_nms, fast_nms_per_class  # noqa: F401
from .offsets import aligned_offsets  # noqa: F401
from .pooling import cpu_max_pool_impl, max_pool2d  # noqa: F401
from .roi_align import cpu_roi_align_impl, roi_align  # noqa: F401
