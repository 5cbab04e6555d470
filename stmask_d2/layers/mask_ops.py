"""Mask ops: box crop, mask assembly from prototypes, mask IoU, paste to the image, RLE (docs/METHOD.md §6, §10).

Shape shorthand: N instances, k prototypes, (Hp, Wp) prototype map (stride ``PROTO_STRIDE`` = 4), (H0, W0) original image.
Everything is vectorised over instances (broadcast comparisons, einsum, matmul, one ``grid_sample``).
"""
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "PROTO_STRIDE",
    "gt_masks_at_proto",
    "crop_masks",
    "assemble_masks",
    "grouped_proto_products",
    "pairwise_mask_iou",
    "paste_masks_to_image",
    "encode_masks_rle",
]

# Output stride of the prototypes (ProtoNet: P3 at stride 8, upsampled x2): input pixels per prototype pixel. The one
# place this number is written; everything that maps input-pixel boxes / sizes to prototype pixels reads it.
PROTO_STRIDE = 4


def gt_masks_at_proto(gt_masks, image_hw: Tuple[int, int], proto_hw: Tuple[int, int], stride: int = PROTO_STRIDE,
                      device=None) -> torch.Tensor:
    """GT masks of one frame -> (G, Hp, Wp) float32 soft masks on the prototype grid (the L_M and L_Mshift targets).

    The (G, h, w) masks of the unpadded input (Detectron2 ``BitMasks`` / ``PolygonMasks`` rasterised at
    ``image_hw`` = (h, w), or a bool / float tensor) are zero-padded (or cropped) to (Hp * stride, Wp * stride),
    the padded network input, and averaged over stride x stride blocks (soft targets at the boundary).
    """
    from detectron2.structures import BitMasks, PolygonMasks

    hp, wp = int(proto_hw[0]), int(proto_hw[1])
    if isinstance(gt_masks, PolygonMasks):
        gt_masks = BitMasks.from_polygon_masks(gt_masks, int(image_hw[0]), int(image_hw[1]))
    t = gt_masks.tensor if isinstance(gt_masks, BitMasks) else torch.as_tensor(gt_masks)
    t = t.to(device=device if device is not None else t.device, dtype=torch.float32)
    if t.shape[0] == 0:
        return t.new_zeros(0, hp, wp)
    H, W = hp * stride, wp * stride
    t = t[:, :H, :W]
    t = F.pad(t, (0, W - t.shape[2], 0, H - t.shape[1]))
    return F.avg_pool2d(t[:, None], kernel_size=stride, stride=stride)[:, 0]


def crop_masks(masks: torch.Tensor, boxes: torch.Tensor, padding: float = 1) -> torch.Tensor:
    """Zero every mask outside its (padded) box, as the released ``box_utils.crop`` (§6).

    With x1' = max(min(x1, x2) - padding, 0) and x2' = min(max(x1, x2) + padding, Wm), pixel column u is kept
    iff x1' <= u < x2' (rows likewise with Hm). Differentiable w.r.t. ``masks`` (the box only selects pixels).

    Args:
        masks: (N, Hm, Wm) float.
        boxes: (N, 4) XYXY in mask-pixel units (e.g. input-pixel box / 4 for prototypes).
        padding: margin in mask pixels added on each side.
    Returns:
        (N, Hm, Wm), same dtype as ``masks``.
    """
    n, h, w = masks.shape
    boxes = boxes.to(device=masks.device, dtype=torch.float32).reshape(-1, 4)
    x1 = torch.minimum(boxes[:, 0], boxes[:, 2]).sub(padding).clamp(min=0)
    x2 = torch.maximum(boxes[:, 0], boxes[:, 2]).add(padding).clamp(max=w)
    y1 = torch.minimum(boxes[:, 1], boxes[:, 3]).sub(padding).clamp(min=0)
    y2 = torch.maximum(boxes[:, 1], boxes[:, 3]).add(padding).clamp(max=h)
    cols = torch.arange(w, device=masks.device, dtype=torch.float32).view(1, 1, w)
    rows = torch.arange(h, device=masks.device, dtype=torch.float32).view(1, h, 1)
    keep_x = (cols >= x1.view(n, 1, 1)) & (cols < x2.view(n, 1, 1))
    keep_y = (rows >= y1.view(n, 1, 1)) & (rows < y2.view(n, 1, 1))
    return masks * (keep_x & keep_y).to(masks.dtype)


def assemble_masks(protos: torch.Tensor, coeffs: torch.Tensor, boxes: torch.Tensor, padding: float = 1) -> torch.Tensor:
    """Soft instance masks m = crop(sigmoid(P · tanh(c)), box) (§6).

    Args:
        protos: (k, Hp, Wp) prototypes (ReLU'd).
        coeffs: (N, k) raw mask coefficients (tanh is applied here).
        boxes: (N, 4) XYXY in prototype-pixel units (input-pixel box / 4).
        padding: crop margin in prototype pixels.
    Returns:
        (N, Hp, Wp) soft masks in [0, 1], zero outside the padded box.
    """
    masks = torch.einsum("khw,nk->nhw", protos, torch.tanh(coeffs.to(protos.dtype))).sigmoid()
    return crop_masks(masks, boxes, padding)


def grouped_proto_products(protos: torch.Tensor, coeffs: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """Mask logits of rows that each use their own frame's prototypes, for all frames in one batched matmul.

    Row p is ``sum_j coeffs[p, j] * protos[group[p], j]`` (the per-frame ``einsum("khw,pk->phw")`` of every frame at
    once): the rows are scattered into a (N, R, k) zero-padded block (R = most rows of one frame) and multiplied
    with the (N, k, Hp * Wp) prototypes by one ``bmm``, instead of a loop over frames. Differentiable w.r.t.
    ``protos`` and ``coeffs``.

    Args:
        protos: (N, k, Hp, Wp) prototypes of N frames.
        coeffs: (P, k) coefficients (already tanh'd where wanted), in the dtype of the product.
        group: (P,) int64 frame of each row, in [0, N), any order.
    Returns:
        (P, Hp, Wp) in the rows' order.
    """
    n, k, hp, wp = protos.shape
    if group.numel() == 0:
        return coeffs.new_zeros(0, hp, wp)
    count = torch.bincount(group, minlength=n)
    # slot of each row among its frame's rows (rows of a frame keep their relative order)
    order = torch.argsort(group, stable=True)
    start = torch.cumsum(count, 0) - count
    slot = torch.empty_like(group)
    slot[order] = torch.arange(group.numel(), device=group.device) - start[group[order]]
    padded = coeffs.new_zeros(n, int(count.max()), k).index_put((group, slot), coeffs)
    return torch.bmm(padded, protos.reshape(n, k, hp * wp))[group, slot].view(-1, hp, wp)


def pairwise_mask_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU between two sets of binary masks, by one matmul.

    Args:
        a: (N, HW) bool (or (N, H, W); trailing dims are flattened).
        b: (M, HW) bool, same number of pixels.
    Returns:
        (N, M) float32 IoU; 0 where the union is empty.
    """
    a = a.flatten(1).float()
    b = b.flatten(1).float()
    inter = a @ b.t()
    union = a.sum(1)[:, None] + b.sum(1)[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1), torch.zeros_like(inter))


def _region_from_support(soft: torch.Tensor, threshold: float, out_hw: Tuple[int, int]) -> torch.Tensor:
    """Output-pixel region (N, 4) [x0, y0, x1, y1) that contains every pixel whose bilinear value can exceed
    ``threshold``: a bilinear value is a convex combination of 4 source pixels, so it is > threshold only if one
    of them is. The source support is mapped to output pixels with a one-pixel safety margin."""
    n, h, w = soft.shape
    H0, W0 = out_hw
    fg = soft > threshold
    rows_any = fg.any(dim=2)  # (N, h)
    cols_any = fg.any(dim=1)  # (N, w)
    has = rows_any.any(dim=1)
    ar_h = torch.arange(h, device=soft.device)
    ar_w = torch.arange(w, device=soft.device)
    r0 = torch.where(rows_any, ar_h, h).amin(1).float()
    r1 = torch.where(rows_any, ar_h, -1).amax(1).float()
    c0 = torch.where(cols_any, ar_w, w).amin(1).float()
    c1 = torch.where(cols_any, ar_w, -1).amax(1).float()
    sy, sx = h / H0, w / W0  # source pixels per output pixel
    # output y uses source rows floor(s_y) and floor(s_y) + 1 with s_y = (y + 0.5) * sy - 0.5
    y0 = torch.floor((r0 - 0.5) / sy - 0.5) - 1
    y1 = torch.ceil((r1 + 1.5) / sy - 0.5) + 1
    x0 = torch.floor((c0 - 0.5) / sx - 0.5) - 1
    x1 = torch.ceil((c1 + 1.5) / sx - 0.5) + 1
    region = torch.stack([x0.clamp(0, W0), y0.clamp(0, H0), x1.clamp(0, W0), y1.clamp(0, H0)], dim=1)
    return torch.where(has[:, None], region, torch.zeros_like(region)).long()


def paste_masks_to_image(
    soft: torch.Tensor,
    valid_hw_proto: Sequence[float],
    out_hw: Sequence[int],
    boxes_out: Optional[torch.Tensor] = None,
    threshold: float = 0.5,
) -> torch.Tensor:
    """Binary masks at the original image size (§10 step 5), computed only inside each instance's region.

    Reference semantics: cut the padding off the soft masks (rows ``:int(h)``, cols ``:int(w)``), bilinear-resize
    (align_corners=False) the whole map to ``out_hw`` and threshold ``> threshold``. Here the resize is evaluated
    (by ``grid_sample`` with border padding, which equals ``F.interpolate(mode="bilinear", align_corners=False)``)
    only inside a per-instance integer region; pixels outside it are False:

    - ``boxes_out`` given: the region is the box rounded outwards and clamped to the image (the pasted mask is
      then additionally cropped to the box).
    - ``boxes_out`` None: the region is derived from the support of ``soft > threshold``; the result then equals
      the full-resize reference exactly (up to float rounding at the threshold).

    Args:
        soft: (N, Hp, Wp) soft masks at prototype resolution (padded input / 4).
        valid_hw_proto: (h, w) = unpadded network-input size / 4 (may be fractional; truncated like the released
            code).
        out_hw: (H0, W0) original image size.
        boxes_out: optional (N, 4) XYXY boxes in output pixels.
        threshold: binarisation threshold (strict ``>``).
    Returns:
        (N, H0, W0) bool.
    """
    H0, W0 = int(out_hw[0]), int(out_hw[1])
    n = soft.shape[0]
    h = max(1, min(int(valid_hw_proto[0]), soft.shape[1]))
    w = max(1, min(int(valid_hw_proto[1]), soft.shape[2]))
    out = torch.zeros((n, H0, W0), dtype=torch.bool, device=soft.device)
    if n == 0 or H0 == 0 or W0 == 0:
        return out
    soft = soft[:, :h, :w].float()
    if boxes_out is None:
        region = _region_from_support(soft, threshold, (H0, W0))
    else:
        b = boxes_out.to(device=soft.device, dtype=torch.float32).reshape(-1, 4)
        region = torch.stack(
            [
                torch.floor(b[:, 0]).clamp(0, W0),
                torch.floor(b[:, 1]).clamp(0, H0),
                torch.ceil(b[:, 2]).clamp(0, W0),
                torch.ceil(b[:, 3]).clamp(0, H0),
            ],
            dim=1,
        ).long()
        region[:, 2] = torch.maximum(region[:, 2], region[:, 0])
        region[:, 3] = torch.maximum(region[:, 3], region[:, 1])
    rw = region[:, 2] - region[:, 0]
    rh = region[:, 3] - region[:, 1]
    bw, bh = int(rw.max()), int(rh.max())
    if bw == 0 or bh == 0:
        return out
    dev = soft.device
    jj = torch.arange(bw, device=dev)
    ii = torch.arange(bh, device=dev)
    # output pixel x samples normalised grid coordinate (2x + 1) / W0 - 1 (align_corners=False)
    gx = (2 * (region[:, 0:1] + jj[None]).float() + 1) / W0 - 1  # (N, bw)
    gy = (2 * (region[:, 1:2] + ii[None]).float() + 1) / H0 - 1  # (N, bh)
    grid = torch.stack([gx[:, None, :].expand(n, bh, bw), gy[:, :, None].expand(n, bh, bw)], dim=-1)
    sampled = F.grid_sample(soft[:, None], grid, mode="bilinear", padding_mode="border", align_corners=False)
    binary = sampled[:, 0] > threshold  # (N, bh, bw)
    valid = (ii[None, :, None] < rh[:, None, None]) & (jj[None, None, :] < rw[:, None, None]) & binary
    nn_, yy, xx = valid.nonzero(as_tuple=True)
    out[nn_, region[nn_, 1] + yy, region[nn_, 0] + xx] = True
    return out


def encode_masks_rle(masks: torch.Tensor) -> List[dict]:
    """pycocotools RLE of each binary mask (Fortran order), with ``counts`` decoded to str (JSON-ready).

    Args:
        masks: (N, H, W) bool / uint8 tensor or ndarray, or a :class:`~stmask_d2.layers.LazyMasks`.
    Returns:
        list of N dicts ``{"size": [H, W], "counts": str}``.
    """
    from pycocotools import mask as mask_util

    if hasattr(masks, "encode_rle"):  # LazyMasks: one full-size mask at a time
        return masks.encode_rle()
    if not isinstance(masks, torch.Tensor):
        masks = torch.from_numpy(np.asarray(masks))
    if masks.shape[0] == 0:
        return []
    # C-contiguous (N, W, H) uint8 == Fortran-ordered (H, W, N): no extra numpy copy
    arr = masks.detach().to("cpu", torch.uint8).transpose(1, 2).contiguous().numpy().transpose(2, 1, 0)
    assert arr.flags.f_contiguous
    rles = mask_util.encode(arr)
    for r in rles:
        r["counts"] = r["counts"].decode("ascii")
    return rles
