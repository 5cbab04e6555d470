"""Yolact-style FPN, P3-P7 (docs/METHOD.md §1, §14).

Differs from Detectron2's FPN: bilinear (align_corners=False) top-down upsampling to the exact lateral size,
ReLU after the 3x3 output convs of P3-P5, and P6 / P7 as stride-2 3x3 convs on P5's (ReLU'd) output with no
ReLU on or between them. Parameter names follow Yolact's ``FPN`` (``lat_layers``, ``pred_layers``,
``downsample_layers``; index 0 of the first two is the coarsest input level), so Yolact / STMask checkpoints
map onto it by prefix only.
"""
from typing import List

import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import Conv2d, ShapeSpec
from detectron2.modeling.backbone import BACKBONE_REGISTRY, Backbone
from torch import nn

from .resnet_dcn import build_stmask_resnet_backbone

__all__ = ["YolactFPN", "build_stmask_resnet_fpn_backbone"]


class YolactFPN(Backbone):
    """Bottom-up backbone + Yolact FPN.

    forward(x: (N, 3, H, W), H and W multiples of 32) -> {"p3": (N,256,H/8,W/8), "p4": (N,256,H/16,W/16),
    "p5": (N,256,H/32,W/32), "p6": (N,256,ceil(H/64),ceil(W/64)), "p7": ...} (for 384x640: 48x80, 24x40,
    12x20, 6x10, 3x5).
    """

    @configurable
    def __init__(
        self,
        bottom_up: Backbone,
        in_features: List[str],
        out_channels: int = 256,
        num_downsample: int = 2,
        relu_outputs: bool = True,
        size_divisibility: int = 32,
    ):
        """
        Args:
            bottom_up: backbone whose outputs include ``in_features`` (finest first, strides doubling).
            in_features: e.g. ["res3", "res4", "res5"].
            out_channels: channels of every output level (256).
            num_downsample: extra levels from stride-2 3x3 convs on the coarsest output (2: P6, P7).
            relu_outputs: ReLU after the 3x3 output convs of the input levels (not the extra ones).
            size_divisibility: input H, W must be multiples of this (32).
        """
        super().__init__()
        self.bottom_up = bottom_up
        self.in_features = list(in_features)
        self.relu_outputs = relu_outputs
        self._size_divisibility = size_divisibility
        shapes = bottom_up.output_shape()
        in_channels = [shapes[f].channels for f in self.in_features]
        in_strides = [shapes[f].stride for f in self.in_features]
        for s0, s1 in zip(in_strides[:-1], in_strides[1:]):
            assert s1 == 2 * s0, f"FPN in_features must have doubling strides, got {in_strides}"
        # Index 0 = coarsest level (Yolact order).
        self.lat_layers = nn.ModuleList([Conv2d(c, out_channels, 1) for c in reversed(in_channels)])
        self.pred_layers = nn.ModuleList(
            [Conv2d(out_channels, out_channels, 3, padding=1) for _ in in_channels]
        )
        self.downsample_layers = nn.ModuleList(
            [Conv2d(out_channels, out_channels, 3, stride=2, padding=1) for _ in range(num_downsample)]
        )
        for m in [*self.lat_layers, *self.pred_layers, *self.downsample_layers]:
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)

        first = in_strides[0].bit_length() - 1  # log2 of the finest stride
        strides = [2 ** (first + i) for i in range(len(in_channels) + num_downsample)]
        self._out_features = [f"p{first + i}" for i in range(len(strides))]
        self._out_feature_strides = dict(zip(self._out_features, strides))
        self._out_feature_channels = {f: out_channels for f in self._out_features}

    @classmethod
    def from_config(cls, cfg, input_shape: ShapeSpec):
        return {
            "bottom_up": build_stmask_resnet_backbone(cfg, input_shape),
            "in_features": cfg.MODEL.FPN.IN_FEATURES,
            "out_channels": cfg.MODEL.FPN.OUT_CHANNELS,
            "num_downsample": cfg.MODEL.FPN.NUM_DOWNSAMPLE,
            "relu_outputs": cfg.MODEL.FPN.RELU_OUTPUTS,
        }

    @property
    def size_divisibility(self):
        return self._size_divisibility

    @property
    def padding_constraints(self):
        return {"size_divisibility": self._size_divisibility}

    def forward(self, x):
        """x: (N, C, H, W) -> dict level name -> (N, out_channels, H/s, W/s), see the class docstring."""
        bottom_up = self.bottom_up(x)
        feats = [bottom_up[f] for f in reversed(self.in_features)]  # coarsest first
        lat = self.lat_layers[0](feats[0])
        merged = [lat]
        for feat, lat_conv in zip(feats[1:], self.lat_layers[1:]):
            lateral = lat_conv(feat)
            lat = F.interpolate(lat, size=lateral.shape[-2:], mode="bilinear", align_corners=False) + lateral
            merged.append(lat)
        outs = []
        for m, pred in zip(merged, self.pred_layers):
            o = pred(m)
            outs.append(F.relu(o) if self.relu_outputs else o)
        outs = outs[::-1]  # finest first
        last = outs[-1]
        for down in self.downsample_layers:
            last = down(last)
            outs.append(last)
        return dict(zip(self._out_features, outs))


@BACKBONE_REGISTRY.register()
def build_stmask_resnet_fpn_backbone(cfg, input_shape: ShapeSpec):
    """ResNet(-DCN) of ``build_stmask_resnet_backbone`` + ``YolactFPN``; MODEL.BACKBONE.NAME default."""
    return YolactFPN(cfg, input_shape)
