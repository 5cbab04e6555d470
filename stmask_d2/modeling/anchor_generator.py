"""FCA anchors: kernel-shaped anchor boxes (docs/METHOD.md §2), registered as ``FCAAnchorGenerator``.

Anchor k of a location is a kh x kw block of feature cells (``mode="kernel"``), i.e. the receptive field of the
FCA conv of shape (kh, kw) that predicts it; the Yolact ratio baseline (``mode="ratio"``) is available too.
Even kernels (paper Table 1 {3:3, 3:2, 2:3}): the conv's extra column / row lies right of / below the location, so
the anchor's centre is half a cell right of / below the cell centre and the box is exactly the kernel's cells.
Usable in any Detectron2 detector that takes an anchor generator (e.g. RetinaNet): set
``MODEL.ANCHOR_GENERATOR.NAME = "FCAAnchorGenerator"``; missing FCA keys fall back to the released defaults.

Order contract (identical to Detectron2's ``DefaultAnchorGenerator``): per level, locations row-major, then
anchor a = shape_index * num_scales + scale_index; levels in input order. Boxes are pixel XYXY.
"""
import math
from typing import List, Sequence

import torch
from torch import nn

from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling.anchor_generator import ANCHOR_GENERATOR_REGISTRY
from detectron2.structures import Boxes

__all__ = ["FCAAnchorGenerator", "anchor_cell_sizes", "kernel_centre_shift"]


def _cell_sizes(mode, kernel_shapes, scales, aspect_ratios, base_cells):
    """[(w, h)] in feature cells per anchor of a location, shape-major then scale."""
    sizes = []
    if mode == "kernel":
        for kh, kw in kernel_shapes:
            for s in scales:
                sizes.append((kw * s, kh * s))
    else:
        for ar in aspect_ratios:
            for s in scales:
                side = base_cells * s
                sizes.append((side * math.sqrt(ar), side / math.sqrt(ar)))
    return sizes


def kernel_centre_shift(kh: int, kw: int):
    """(dx, dy) in cells from a location to the centre of its (kh, kw) kernel: 0 for an odd size, +0.5 for an even
    one (the extra column / row of an even kernel is right of / below the location, see
    ``stmask_d2.modeling.heads.prediction_head.same_padding``)."""
    return 0.5 * (1 - kw % 2), 0.5 * (1 - kh % 2)


def _cell_anchors(stride, mode, kernel_shapes, scales, aspect_ratios, base_cells) -> torch.Tensor:
    """(A, 4) XYXY anchors centred at 0 (at the kernel centre, shifted by half a cell for even kernels) for one
    level."""
    sizes = _cell_sizes(mode, kernel_shapes, scales, aspect_ratios, base_cells)
    wh = torch.tensor(sizes, dtype=torch.float32) * stride
    shifts = []
    for kh, kw in kernel_shapes:
        shifts += [kernel_centre_shift(kh, kw)] * len(scales)
    c = torch.tensor(shifts, dtype=torch.float32) * stride if mode == "kernel" else torch.zeros_like(wh)
    return torch.cat([c - wh / 2, c + wh / 2], dim=1)


def anchor_cell_sizes(cfg):
    """(h, w) in feature cells of every anchor of a location, in the head's / generator's order, from
    ``cfg.MODEL.ANCHOR_GENERATOR`` (e.g. for FCB "ali" on Yolact ratio anchors)."""
    ag = cfg.MODEL.ANCHOR_GENERATOR
    ratios = ag.ASPECT_RATIOS[0] if isinstance(ag.ASPECT_RATIOS[0], (list, tuple)) else ag.ASPECT_RATIOS
    sizes = _cell_sizes(ag.MODE, [tuple(k) for k in ag.KERNEL_SHAPES], list(ag.SCALES), list(ratios),
                        ag.BASE_CELLS)
    return [(h, w) for w, h in sizes]


@ANCHOR_GENERATOR_REGISTRY.register()
class FCAAnchorGenerator(nn.Module):
    """Kernel-shaped (FCA) or ratio (Yolact) anchors on every feature level.

    Attributes:
        strides (list[int]), offset (float), box_dim (= 4), num_scales (int),
        kernel_shapes (list[(kh, kw)]): conv kernel per anchor *shape*; anchor a uses
            ``kernel_shapes[a // num_scales]`` ("ratio" mode: (3, 3) for every shape).
        cell_sizes (list[(h, w)]): size in feature cells of every anchor of a location.
        num_cell_anchors / num_anchors (list[int]): anchors per location, per level (all equal).
    """

    box_dim: int = 4

    @configurable
    def __init__(
        self,
        *,
        strides: Sequence[int],
        mode: str = "kernel",
        kernel_shapes: Sequence[Sequence[int]] = ((3, 3), (3, 5), (5, 3)),
        base_cells: float = 3,
        scales: Sequence[float] = (1.0,),
        aspect_ratios: Sequence[float] = (1.0, 0.5, 2.0),
        offset: float = 0.5,
    ):
        """
        Args:
            strides: stride of each feature level, in input pixels.
            mode: "kernel" (anchor = kh x kw cells of size stride, times each scale) or "ratio"
                (w = base_cells·stride·scale·sqrt(ar), h = base_cells·stride·scale/sqrt(ar)).
            kernel_shapes: (kh, kw) in cells per anchor shape ("kernel" mode).
            base_cells: side of the square anchor in cells ("ratio" mode).
            scales: size multipliers; one anchor per (shape, scale).
            aspect_ratios: w/h ratios ("ratio" mode). One list for all levels (a list of one list is accepted).
            offset: anchor centre within a cell, in [0, 1) (0.5 = cell centre).
        """
        super().__init__()
        assert mode in ("kernel", "ratio"), f"MODEL.ANCHOR_GENERATOR.MODE must be 'kernel' or 'ratio', got {mode!r}"
        assert 0.0 <= offset < 1.0, f"MODEL.ANCHOR_GENERATOR.OFFSET must be in [0, 1), got {offset}"
        if len(aspect_ratios) > 0 and isinstance(aspect_ratios[0], (list, tuple)):
            assert all(list(a) == list(aspect_ratios[0]) for a in aspect_ratios), (
                "FCAAnchorGenerator uses one ASPECT_RATIOS list for all levels; give [[...]]"
            )
            aspect_ratios = aspect_ratios[0]
        self.mode = mode
        self.strides = [int(s) for s in strides]
        self.offset = float(offset)
        self.scales = [float(s) for s in scales]
        self.num_scales = len(self.scales)
        self.aspect_ratios = [float(a) for a in aspect_ratios]
        if mode == "kernel":
            self.kernel_shapes = [(int(kh), int(kw)) for kh, kw in kernel_shapes]
            for kh, kw in self.kernel_shapes:
                assert kh >= 1 and kw >= 1, f"anchor kernel shapes must be positive, got {(kh, kw)}"
        else:
            self.kernel_shapes = [(3, 3)] * len(self.aspect_ratios)
        assert self.num_scales > 0 and len(self.kernel_shapes) > 0, "need at least one anchor shape and scale"
        anchors = [
            _cell_anchors(s, mode, self.kernel_shapes, self.scales, self.aspect_ratios, base_cells)
            for s in self.strides
        ]
        self._num_cell = anchors[0].shape[0]
        # (h, w) in feature cells of every anchor of a location, in the generator's (= the head's) order
        self.cell_sizes = [(h, w) for w, h in _cell_sizes(mode, self.kernel_shapes, self.scales,
                                                           self.aspect_ratios, base_cells)]
        for i, a in enumerate(anchors):
            self.register_buffer(f"cell_anchors_{i}", a, persistent=False)

    @classmethod
    def from_config(cls, cfg, input_shape: List[ShapeSpec]):
        ag = cfg.MODEL.ANCHOR_GENERATOR
        return {
            "strides": [x.stride for x in input_shape],
            "mode": ag.get("MODE", "kernel"),
            "kernel_shapes": ag.get("KERNEL_SHAPES", [[3, 3], [3, 5], [5, 3]]),
            "base_cells": ag.get("BASE_CELLS", 3),
            "scales": ag.get("SCALES", [1.0]),
            "aspect_ratios": ag.get("ASPECT_RATIOS", [[1.0, 0.5, 2.0]]),
            "offset": ag.get("OFFSET", 0.5),
        }

    def prediction_kernels(self, use_fca: bool = True):
        """The anchor layout a prediction head follows: ``(kernel_shapes, anchors_per_kernel)``, kernel g
        predicting anchors g * anchors_per_kernel ... (g + 1) * anchors_per_kernel - 1 of a location. FCA
        (``use_fca`` in "kernel" mode): one conv per anchor shape, of that shape, for its ``num_scales`` anchors;
        otherwise (Yolact: "ratio" mode or FCA off) one 3x3 conv predicting every anchor of the location."""
        if use_fca and self.mode == "kernel":
            return list(self.kernel_shapes), self.num_scales
        return [(3, 3)], self._num_cell

    @property
    def cell_anchors(self) -> List[torch.Tensor]:
        """Per level, (A, 4) XYXY anchors centred at the origin."""
        return [getattr(self, f"cell_anchors_{i}") for i in range(len(self.strides))]

    @property
    def num_cell_anchors(self) -> List[int]:
        """Anchors per location, for each level (Detectron2 interface)."""
        return [self._num_cell] * len(self.strides)

    @property
    def num_anchors(self) -> List[int]:
        return self.num_cell_anchors

    def _grid_anchors(self, grid_sizes: List[Sequence[int]]) -> List[torch.Tensor]:
        out = []
        for (h, w), stride, base in zip(grid_sizes, self.strides, self.cell_anchors):
            sx = (torch.arange(w, device=base.device, dtype=torch.float32) + self.offset) * stride
            sy = (torch.arange(h, device=base.device, dtype=torch.float32) + self.offset) * stride
            yy, xx = torch.meshgrid(sy, sx, indexing="ij")
            xx, yy = xx.reshape(-1), yy.reshape(-1)
            shifts = torch.stack([xx, yy, xx, yy], dim=1)  # (HW, 4)
            out.append((shifts[:, None, :] + base[None, :, :]).reshape(-1, 4))
        return out

    def forward(self, features: List[torch.Tensor]) -> List[Boxes]:
        """
        Args:
            features: list of (N, C, Hi, Wi) feature maps, one per level, in the order of ``strides``.
        Returns:
            list of Boxes, one per level, each (Hi*Wi*A, 4) pixel XYXY.
        """
        assert len(features) == len(self.strides), (
            f"got {len(features)} feature maps for {len(self.strides)} anchor levels"
        )
        grid_sizes = [f.shape[-2:] for f in features]
        return [Boxes(a) for a in self._grid_anchors(grid_sizes)]

    def extra_repr(self):
        return (
            f"mode={self.mode}, strides={self.strides}, kernel_shapes={self.kernel_shapes}, "
            f"scales={self.scales}, aspect_ratios={self.aspect_ratios}, offset={self.offset}"
        )
