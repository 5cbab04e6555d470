"""ProtoNet: prototype masks from P3 (docs/METHOD.md §6).

NUM_CONVS x [3x3 conv + ReLU] -> bilinear x2 (align_corners=False) + ReLU -> 3x3 conv + ReLU -> 1x1 conv to k
channels, then ReLU (prototype activation). Output stride 4 (96x160 for a 384x640 input). The layers live in
``proto_net``, an ``nn.Sequential`` laid out like Yolact's ``proto_net`` (same indices), so its checkpoints load
by key.
"""
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from torch import nn

from .build import PROTONET_REGISTRY

__all__ = ["ProtoNet"]


@PROTONET_REGISTRY.register()
class ProtoNet(nn.Module):
    """forward(x: (N, in_channels, H, W)) -> protos (N, mask_dim, 2H, 2W), non-negative."""

    @configurable
    def __init__(self, *, in_channels: int, conv_dim: int = 256, num_convs: int = 3, mask_dim: int = 32):
        """
        Args:
            in_channels: channels of the input level (P3, 256).
            conv_dim: channels of the 3x3 convs.
            num_convs: 3x3 conv+ReLU layers before the x2 upsample (one more follows it).
            mask_dim: k, number of prototypes.
        """
        super().__init__()
        layers = []
        c = in_channels
        for _ in range(num_convs):
            layers += [nn.Conv2d(c, conv_dim, 3, padding=1), nn.ReLU(inplace=True)]
            c = conv_dim
        layers += [
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(c, conv_dim, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(conv_dim, mask_dim, 1),
        ]
        self.proto_net = nn.Sequential(*layers)
        self.mask_dim = mask_dim
        for m in self.proto_net:
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    @classmethod
    def from_config(cls, cfg, input_shape: ShapeSpec):
        p = cfg.MODEL.STMASK.PROTONET
        return {
            "in_channels": input_shape.channels,
            "conv_dim": p.CONV_DIM,
            "num_convs": p.NUM_CONVS,
            "mask_dim": cfg.MODEL.STMASK.MASK_DIM,
        }

    def forward(self, x):
        """x: (N, C, H, W) P3 -> (N, k, 2H, 2W) ReLU'd prototypes."""
        return self.proto_net(x).relu_()
