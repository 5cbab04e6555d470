"""ResNet with a modulated deformable 3x3 conv every ``DEFORM_INTERVAL`` blocks (docs/METHOD.md §1).

Detectron2's ResNet (stem, stages, freezing) with three changes:
- the deformable blocks run on ``torchvision.ops.deform_conv2d`` (``stmask_d2.layers.DeformConv2d``), so no compiled
  extension is needed; their state-dict names equal Detectron2's ``DeformBottleneckBlock``
  (``conv1``, ``conv2_offset``, ``conv2.weight``, ``conv2.norm.*``, ``conv3``, ``shortcut``), so Detectron2 DCN
  checkpoints load and compute the same function;
- the DCN choice is per block: in a stage with ``DEFORM_ON_PER_STAGE`` true, block i is deformable iff
  ``i % DEFORM_INTERVAL == 0`` (R101 interval 3: res3 {0,3}, res4 {0,3,...,21}, res5 {0};
  R50 interval 2: res3 {0,2}, res4 {0,2,4}, res5 {0,2});
- the stem (:class:`Stem`, Detectron2's ``BasicStem`` with the same parameters) max-pools through
  ``stmask_d2.layers.max_pool2d``: the same function, faster on CPU.
"""
import fvcore.nn.weight_init as weight_init
import torch
import torch.nn.functional as F
from detectron2.layers import CNNBlockBase, Conv2d, get_norm
from detectron2.modeling.backbone import BACKBONE_REGISTRY
from detectron2.modeling.backbone.resnet import BasicBlock, BasicStem, BottleneckBlock, ResNet

from stmask_d2.layers import DeformConv2d, max_pool2d

__all__ = [
    "Stem",
    "DeformBottleneckBlock",
    "DeformBasicBlock",
    "make_block",
    "deform_block_indices",
    "build_stmask_resnet_backbone",
]


def _offset_forward(offset_conv, deform_conv, x, modulated):
    """Offsets (and DCNv2 mask) from ONE conv, split exactly as Detectron2's DeformBottleneckBlock.forward.

    x: (N, C, H, W) -> (N, Cout, Ho, Wo) (before the deform conv's norm/activation, which it applies itself).
    """
    if modulated:
        offset_mask = offset_conv(x)
        offset_x, offset_y, mask = torch.chunk(offset_mask, 3, dim=1)
        offset = torch.cat((offset_x, offset_y), dim=1)
        return deform_conv(x, offset, mask.sigmoid())
    return deform_conv(x, offset_conv(x))


class Stem(BasicStem):
    """Detectron2's ``BasicStem`` (7x7 / stride-2 conv with norm, ReLU, 3x3 / stride-2 max pool; the same
    parameters and state-dict names) whose max pool is :func:`stmask_d2.layers.max_pool2d`: the same values and
    gradients, about 4x faster on CPU for the contiguous maps the stem makes (see that module).

    x: (N, Cin, H, W) -> (N, Cout, H/4, W/4)."""

    def forward(self, x):
        x = F.relu_(self.conv1(x))
        return max_pool2d(x, kernel_size=3, stride=2, padding=1)


class _DeformBlock(CNNBlockBase):
    """What the two deformable blocks share: the projection shortcut (1x1 conv + norm when the channels change),
    the offset conv of ``conv2`` (27 channels per deformable group when modulated: 18 offsets + 9 mask, else 18),
    the initialisation (MSRA fill of the convs, zero offset conv: a block starts as its plain counterpart, with
    mask 0.5 when modulated) and the residual sum."""

    def __init__(self, in_channels, out_channels, stride, norm, deform_modulated):
        super().__init__(in_channels, out_channels, stride)
        self.deform_modulated = deform_modulated
        if in_channels != out_channels:
            self.shortcut = Conv2d(
                in_channels, out_channels, kernel_size=1, stride=stride, bias=False,
                norm=get_norm(norm, out_channels),
            )
        else:
            self.shortcut = None

    def _offset_conv(self, channels, deform_num_groups, **kwargs):
        """The 3x3 conv predicting conv2's offsets (and mask) from ``channels`` input channels."""
        return Conv2d(channels, (27 if self.deform_modulated else 18) * deform_num_groups, kernel_size=3, **kwargs)

    def _init_weights(self, *convs):
        for layer in [*convs, self.shortcut]:
            if layer is not None:
                weight_init.c2_msra_fill(layer)
        torch.nn.init.constant_(self.conv2_offset.weight, 0)
        torch.nn.init.constant_(self.conv2_offset.bias, 0)

    def _residual(self, out, x):
        """ReLU(out + shortcut(x)), in place on ``out``."""
        out += x if self.shortcut is None else self.shortcut(x)
        return F.relu_(out)


class DeformBottleneckBlock(_DeformBlock):
    """Bottleneck block whose 3x3 conv is deformable (DCNv1, or modulated DCNv2 with ``deform_modulated``).

    Same constructor, parameter names and initialisation as ``detectron2.modeling.backbone.resnet.
    DeformBottleneckBlock``; ``conv2_offset`` outputs 27 (modulated: 18 offsets + 9 mask) or 18 channels per
    deformable group and is zero-initialised (the block starts as a plain bottleneck with mask 0.5).
    """

    def __init__(
        self,
        in_channels,
        out_channels,
        *,
        bottleneck_channels,
        stride=1,
        num_groups=1,
        norm="BN",
        stride_in_1x1=False,
        dilation=1,
        deform_modulated=False,
        deform_num_groups=1,
    ):
        super().__init__(in_channels, out_channels, stride, norm, deform_modulated)
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = Conv2d(
            in_channels, bottleneck_channels, kernel_size=1, stride=stride_1x1, bias=False,
            norm=get_norm(norm, bottleneck_channels),
        )
        self.conv2_offset = self._offset_conv(
            bottleneck_channels, deform_num_groups, stride=stride_3x3, padding=dilation, dilation=dilation
        )
        self.conv2 = DeformConv2d(
            bottleneck_channels, bottleneck_channels, kernel_size=3, stride=stride_3x3, padding=dilation,
            bias=False, groups=num_groups, dilation=dilation, deformable_groups=deform_num_groups,
            norm=get_norm(norm, bottleneck_channels),
        )
        self.conv3 = Conv2d(
            bottleneck_channels, out_channels, kernel_size=1, bias=False, norm=get_norm(norm, out_channels)
        )
        self._init_weights(self.conv1, self.conv2, self.conv3)

    def forward(self, x):
        """x: (N, Cin, H, W) -> (N, Cout, H/stride, W/stride)."""
        out = F.relu_(self.conv1(x))
        out = F.relu_(_offset_forward(self.conv2_offset, self.conv2, out, self.deform_modulated))
        return self._residual(self.conv3(out), x)


class DeformBasicBlock(_DeformBlock):
    """ResNet-18/34 basic block whose second 3x3 conv is deformable (Detectron2 has no such block).

    Names follow Detectron2's ``BasicBlock`` (``conv1``, ``conv2``, ``shortcut``) plus ``conv2_offset``
    (computed from conv1's output, zero-initialised).
    """

    def __init__(self, in_channels, out_channels, *, stride=1, norm="BN", deform_modulated=False,
                 deform_num_groups=1):
        super().__init__(in_channels, out_channels, stride, norm, deform_modulated)
        self.conv1 = Conv2d(
            in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False,
            norm=get_norm(norm, out_channels),
        )
        self.conv2_offset = self._offset_conv(out_channels, deform_num_groups, padding=1)
        self.conv2 = DeformConv2d(
            out_channels, out_channels, kernel_size=3, padding=1, bias=False,
            deformable_groups=deform_num_groups, norm=get_norm(norm, out_channels),
        )
        self._init_weights(self.conv1, self.conv2)

    def forward(self, x):
        """x: (N, Cin, H, W) -> (N, Cout, H/stride, W/stride)."""
        out = F.relu_(self.conv1(x))
        return self._residual(_offset_forward(self.conv2_offset, self.conv2, out, self.deform_modulated), x)


def make_block(*, deform=False, bottleneck=True, deform_modulated=True, deform_num_groups=1, **kwargs):
    """Block factory for ``ResNet.make_stage``: pass ``deform_per_block=[...]`` to choose DCN per block.

    Returns a Detectron2 ``BottleneckBlock`` / ``BasicBlock`` or our deformable counterpart.
    """
    if bottleneck:
        if deform:
            return DeformBottleneckBlock(
                deform_modulated=deform_modulated, deform_num_groups=deform_num_groups, **kwargs
            )
        return BottleneckBlock(**kwargs)
    if deform:
        return DeformBasicBlock(deform_modulated=deform_modulated, deform_num_groups=deform_num_groups, **kwargs)
    return BasicBlock(**kwargs)


def deform_block_indices(num_blocks, deform_on_stage, interval):
    """Indices of the deformable blocks of a stage: ``{i : i % interval == 0}`` if the stage is deformable."""
    assert interval >= 1, f"MODEL.RESNETS.DEFORM_INTERVAL must be >= 1, got {interval}"
    return [i for i in range(num_blocks) if deform_on_stage and i % interval == 0]


@BACKBONE_REGISTRY.register()
def build_stmask_resnet_backbone(cfg, input_shape):
    """Detectron2's ``build_resnet_backbone`` with the per-block DCN placement of docs/METHOD.md §1.

    Reads MODEL.RESNETS.{DEPTH, NORM, STEM_OUT_CHANNELS, RES2_OUT_CHANNELS, NUM_GROUPS, WIDTH_PER_GROUP,
    STRIDE_IN_1X1, RES5_DILATION, DEFORM_ON_PER_STAGE, DEFORM_MODULATED, DEFORM_NUM_GROUPS, DEFORM_INTERVAL,
    OUT_FEATURES} and MODEL.BACKBONE.FREEZE_AT.

    Returns:
        ResNet: outputs e.g. {"res3": (N,512,H/8,W/8), "res4": (N,1024,H/16,W/16), "res5": (N,2048,H/32,W/32)}.
    """
    r = cfg.MODEL.RESNETS
    norm = r.NORM
    stem = Stem(in_channels=input_shape.channels, out_channels=r.STEM_OUT_CHANNELS, norm=norm)
    depth = r.DEPTH
    bottleneck_channels = r.NUM_GROUPS * r.WIDTH_PER_GROUP
    in_channels = r.STEM_OUT_CHANNELS
    out_channels = r.RES2_OUT_CHANNELS
    interval = cfg.MODEL.RESNETS.DEFORM_INTERVAL
    assert r.RES5_DILATION in {1, 2}, f"MODEL.RESNETS.RES5_DILATION must be 1 or 2, got {r.RES5_DILATION}"
    num_blocks_per_stage = {
        18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 6, 3], 101: [3, 4, 23, 3], 152: [3, 8, 36, 3],
    }[depth]
    basic = depth in (18, 34)
    if basic:
        # Detectron2 fixes res2 at 64 channels for R18/R34; basic blocks work at any width, and a narrower net
        # (e.g. 32: a quarter of the convolution FLOPs) suits from-scratch training on small data and CPUs.
        assert r.RES5_DILATION == 1, "Set MODEL.RESNETS.RES5_DILATION = 1 for R18/R34"
        assert r.NUM_GROUPS == 1, "Set MODEL.RESNETS.NUM_GROUPS = 1 for R18/R34"

    stages = []
    for idx, stage_idx in enumerate(range(2, 6)):
        n = num_blocks_per_stage[idx]
        dilation = r.RES5_DILATION if stage_idx == 5 else 1
        first_stride = 1 if idx == 0 or (stage_idx == 5 and dilation == 2) else 2
        deform_ids = set(deform_block_indices(n, r.DEFORM_ON_PER_STAGE[idx], interval))
        kwargs = {
            "block_class": make_block,
            "num_blocks": n,
            "stride_per_block": [first_stride] + [1] * (n - 1),
            "deform_per_block": [i in deform_ids for i in range(n)],
            "in_channels": in_channels,
            "out_channels": out_channels,
            "norm": norm,
            "bottleneck": not basic,
            "deform_modulated": r.DEFORM_MODULATED,
            "deform_num_groups": r.DEFORM_NUM_GROUPS,
        }
        if not basic:
            kwargs.update(
                bottleneck_channels=bottleneck_channels, stride_in_1x1=r.STRIDE_IN_1X1, dilation=dilation,
                num_groups=r.NUM_GROUPS,
            )
        stages.append(ResNet.make_stage(**kwargs))
        in_channels = out_channels
        out_channels *= 2
        bottleneck_channels *= 2
    return ResNet(stem, stages, out_features=r.OUT_FEATURES, freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT)
