"""Temporal fusion head (TF): frame t-1 -> t box and mask-coefficient deltas (docs/METHOD.md §7, paper eqs. 10-14).

Shape shorthand: N frame pairs, C FPN channels, (H, W) correlation level (P4: stride 16), P correlation patch side,
D ``upfeature`` channels (HEAD.CONV_DIM), M instances (RoIs), k prototypes.

    fused   = ReLU(cat[corr(P4^{t-1}, P4^t) (P^2), up^{t-1} (D), up^t (D)])          (N, P^2 + 2D, H, W)
    roi     = RoIAlign(fused, boxes of frame t-1, ROI_SIZE, 1/stride, aligned)     (M, P^2 + 2D, R, R)
    (d, dC) = TemporalNet(roi)                                                     (M, 4), (M, k)
    B'      = Box2BoxTransform(10, 10, 5, 5).apply_deltas(d, B)                    eqs. 11-12
    C'      = C + dC   (raw coefficients, before tanh)                             eq. 13

The released CVPR-period code fed normalised (y1, x1, y2, x2) boxes to RoIAlign with spatial scale 1 (§12 item 11);
here boxes are pixel XYXY in the network input with ``spatial_scale = 1 / stride``, which fixes it.
"""
import logging
from typing import List, Sequence

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.modeling.box_regression import Box2BoxTransform
from torch import nn

from stmask_d2.layers.correlation import spatial_correlation
from stmask_d2.layers.roi_align import roi_align

from ..box_coding import BOX2BOX_WEIGHTS
from .build import TEMPORAL_FUSION_HEAD_REGISTRY

__all__ = ["TemporalFusionHead"]

logger = logging.getLogger(__name__)


@TEMPORAL_FUSION_HEAD_REGISTRY.register()
class TemporalFusionHead(nn.Module):
    """
    Correlation + concatenation (:meth:`fuse`), RoIAlign + TemporalNet (:meth:`forward`) and the decoding of its
    outputs (:meth:`propagate`). The TF training losses are in :mod:`stmask_d2.modeling.tf_loss`.
    """

    @configurable
    def __init__(
        self,
        *,
        feature_dim: int = 256,
        patch_size: int = 11,
        roi_size: int = 7,
        conv_dims: Sequence[int] = (512, 512, 1024),
        mask_dim: int = 32,
        stride: int = 16,
        box2box_weights: Sequence[float] = BOX2BOX_WEIGHTS,
        roi_batch_multiple: int = 0,
    ):
        """
        Args:
            feature_dim: channels D of each of the two head features (``upfeature`` output on the level).
            patch_size: side P of the correlation window (paper's d; released 11).
            roi_size: RoIAlign output side (7).
            conv_dims: output channels of TemporalNet's 3x3 convs (released 512, 512, 1024).
            mask_dim: k, number of mask coefficients.
            stride: stride (input pixels per cell) of the correlation level (P4: 16).
            box2box_weights: Box2BoxTransform weights of the box deltas (``BOX2BOX_WEIGHTS``, variances 0.1 / 0.2).
            roi_batch_multiple: on CPU, run TemporalNet on the RoIs padded with zero RoIs to a multiple of this
                count (0 / 1: no padding) and drop the padded rows, so that oneDNN sees a few batch sizes and
                reuses its convolution kernels (TemporalNet treats every RoI on its own: the same outputs).
        """
        super().__init__()
        assert patch_size % 2 == 1, f"MODEL.STMASK.TF.CORR_PATCH_SIZE must be odd, got {patch_size}"
        self.feature_dim = feature_dim
        self.patch_size = patch_size
        self.roi_size = roi_size
        self.mask_dim = mask_dim
        self.stride = stride
        self.roi_batch_multiple = int(roi_batch_multiple)
        self.in_channels = patch_size * patch_size + 2 * feature_dim
        self.box2box_transform = Box2BoxTransform(weights=tuple(float(w) for w in box2box_weights))

        convs = []
        c = self.in_channels
        for d in conv_dims:
            convs += [nn.Conv2d(c, d, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            c = d
        self.convs = nn.Sequential(*convs)  # TemporalNet trunk
        self.fc = nn.Linear(c, 4)  # box deltas (dx, dy, dw, dh)
        self.fc_coeff = nn.Linear(c, mask_dim)  # coefficient deltas
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    @classmethod
    def from_config(cls, cfg, input_shape=None):
        tf = cfg.MODEL.STMASK.TF
        if isinstance(input_shape, dict):
            input_shape = input_shape[tf.CORR_FEATURE]
        if input_shape is not None and input_shape.stride:
            stride = input_shape.stride
        else:  # "pN" -> 2**N
            stride = 2 ** int(tf.CORR_FEATURE.lstrip("pP"))
        return {
            "feature_dim": cfg.MODEL.STMASK.HEAD.CONV_DIM,
            "patch_size": tf.CORR_PATCH_SIZE,
            "roi_size": tf.ROI_SIZE,
            "conv_dims": list(tf.CONV_DIMS),
            "mask_dim": cfg.MODEL.STMASK.MASK_DIM,
            "stride": stride,
            "roi_batch_multiple": tf.ROI_BATCH_MULTIPLE,
        }

    # ------------------------------------------------------------------------------------------------------
    def fuse(self, corr_prev, corr_cur, up_prev, up_cur):
        """
        Args:
            corr_prev, corr_cur: (N, C, H, W) raw FPN level (P4) of frames t-1 and t.
            up_prev, up_cur: (N, D, H, W) head ``upfeature`` output on that level, frames t-1 and t.
        Returns:
            (N, P^2 + 2D, H, W) = ReLU(cat[leaky-ReLU'd correlation, up_prev, up_cur]).
        """
        assert up_prev.shape[1] == self.feature_dim and up_cur.shape[1] == self.feature_dim, (
            f"TemporalFusionHead expects {self.feature_dim}-channel head features (MODEL.STMASK.HEAD.CONV_DIM), got "
            f"{up_prev.shape[1]} and {up_cur.shape[1]}"
        )
        corr = spatial_correlation(corr_prev, corr_cur, self.patch_size, negative_slope=0.1)
        return F.relu(torch.cat([corr.to(up_prev.dtype), up_prev, up_cur], dim=1))

    def forward(self, fused, boxes_prev: List[torch.Tensor]):
        """
        Args:
            fused: (N, P^2 + 2D, H, W) output of :meth:`fuse`.
            boxes_prev: N tensors (M_i, 4), pixel XYXY boxes of frame t-1 in the network input.
        Returns:
            box_deltas (sum M_i, 4) for Box2BoxTransform(BOX2BOX_WEIGHTS), coeff_deltas (sum M_i, k).
        """
        assert len(boxes_prev) == fused.shape[0], (
            f"one box tensor per fused map is needed, got {len(boxes_prev)} for {fused.shape[0]} maps"
        )
        H, W = fused.shape[-2:]
        rois = [self._clamp_rois(b.to(fused.dtype), H * self.stride, W * self.stride) for b in boxes_prev]
        x = roi_align(
            fused,
            rois,
            output_size=self.roi_size,
            spatial_scale=1.0 / self.stride,
            sampling_ratio=0,
            aligned=True,
        )  # (M, P^2 + 2D, R, R)
        m = x.shape[0]
        pad = self._roi_padding(x)
        if pad:  # zero RoIs up to the next multiple: TemporalNet is per RoI, the padded rows are dropped below
            x = torch.cat([x, x.new_zeros((pad,) + tuple(x.shape[1:]))])
        x = self.convs(x).mean(dim=(2, 3))  # average pool over the RoI
        if pad:
            x = x[:m]
        return self.fc(x), self.fc_coeff(x)

    def _roi_padding(self, x) -> int:
        """Zero RoIs to add to the (M, ...) batch ``x`` (see ``roi_batch_multiple``): none off CPU, when traced for
        export, for an empty batch or without a multiple."""
        k = self.roi_batch_multiple
        if k <= 1 or x.device.type != "cpu" or x.shape[0] == 0 or torch.jit.is_tracing() or torch.jit.is_scripting():
            return 0
        return -x.shape[0] % k

    @staticmethod
    def _clamp_rois(boxes, h, w):
        """Sort x1/x2 and y1/y2 and clamp to the feature map extent in input pixels (as released). Non-finite
        coordinates (NaN / inf deltas) are mapped into the map too: roi_align would fail on them."""
        boxes = torch.nan_to_num(boxes.reshape(-1, 4), nan=0.0)
        x1 = torch.minimum(boxes[:, 0], boxes[:, 2]).clamp(0, w)
        x2 = torch.maximum(boxes[:, 0], boxes[:, 2]).clamp(0, w)
        y1 = torch.minimum(boxes[:, 1], boxes[:, 3]).clamp(0, h)
        y2 = torch.maximum(boxes[:, 1], boxes[:, 3]).clamp(0, h)
        return torch.stack([x1, y1, x2, y2], dim=1)

    def propagate(self, boxes, coeffs, box_deltas, coeff_deltas):
        """
        Eqs. 11-13: move boxes and coefficients of frame t-1 to frame t.

        Args:
            boxes: (M, 4) pixel XYXY boxes of frame t-1; coeffs: (M, k) raw coefficients of frame t-1.
            box_deltas: (M, 4), coeff_deltas: (M, k) outputs of :meth:`forward`.
        Returns:
            new boxes (M, 4) (cx' = cx + 0.1 dx w, w' = w exp(0.2 dw), ...; only Detectron2's scale clamp on
            dw, dh), new raw coefficients (M, k) = coeffs + coeff_deltas (before tanh).
        """
        new_boxes = self.box2box_transform.apply_deltas(box_deltas, boxes)
        return new_boxes.to(boxes.dtype), coeffs + coeff_deltas.to(coeffs.dtype)
