"""All FPN levels of a shared head as one map (CPU speed; the same function as running the levels one by one).

The prediction head applies the same convs to every level. Run level by level, each of its ~25 convs is called five
times, and on the small levels (P5-P7 of a 128x224 input are 4x7, 2x4 and 1x2 cells) the per-call cost dominates.
:class:`LevelPacking` places the levels side by side in one zero map, separated by ``gap`` zero cells, so every conv
runs once (level by level took 1.076x the main job's training step, README "Speed options"):

    P3 16x28       | P4 8x14          (gap 2, the largest kernel radius of the head: FCA's 3x5 / 5x3)
                   | P5 4x7  | P6 2x4
                   |         | P7 1x2          -> one 16x44 map (18% more cells than the five levels)

Exactness: a conv output at a level's cell reads cells at most ``gap`` away, which are that level's or zero, as the
zero padding of the level on its own. The gap cells get non-zero values after a conv (bias, neighbours), so the
head multiplies every activation that feeds another conv by :meth:`LevelPacking.mask` (1 on level cells, 0 in the
gaps). A deformable conv's taps can land anywhere: :meth:`LevelPacking.bounds` gives each output location its
level's rectangle, and the gather (:func:`stmask_d2.layers.deform_conv.deform_conv2d_gathered`) treats a corner
outside it as outside the map. Tests: tests/test_level_packing.py (packed head == per-level head, forward and
backward, FCB ada / ali, even kernels, channels_last).

Shapes: features list of (N, C, H_l, W_l) -> :meth:`pack` (N, C, H, W); :meth:`unpack` (N, C', H, W) -> list of
(N, C', H_l, W_l) views.
"""
from collections import OrderedDict
from typing import List, Sequence, Tuple

import torch

__all__ = ["LevelPacking", "level_packing"]


def _layout(sizes: Sequence[Tuple[int, int]], gap: int):
    """Origins (y, x) of the levels: each next level to the right of the previous one (odd steps) or below it
    (even steps), a spiral that fits a pyramid of halving levels tightly; one column of levels when that overlaps
    (level rectangles grown by ``gap`` must not meet another level)."""

    def valid(origins):
        rects = [(y, x, y + h, x + w) for (y, x), (h, w) in zip(origins, sizes)]
        for i, a in enumerate(rects):
            for b in rects[i + 1:]:
                if a[0] < b[2] + gap and b[0] < a[2] + gap and a[1] < b[3] + gap and b[1] < a[3] + gap:
                    return False
        return True

    origins = [(0, 0)]
    for i in range(1, len(sizes)):
        (py, px), (ph, pw) = origins[-1], sizes[i - 1]
        origins.append((py, px + pw + gap) if i % 2 else (py + ph + gap, px))
    if not valid(origins):
        origins, y = [], 0
        for h, _ in sizes:
            origins.append((y, 0))
            y += h + gap
    height = max(y + h for (y, _), (h, _) in zip(origins, sizes))
    width = max(x + w for (_, x), (_, w) in zip(origins, sizes))
    return origins, height, width


class LevelPacking:
    """The packed layout of levels of sizes ``sizes`` [(H_l, W_l)] with ``gap`` zero cells between them (see the
    module docstring). Masks and bounds are built once per device / dtype."""

    def __init__(self, sizes: Sequence[Tuple[int, int]], gap: int):
        assert gap >= 0, f"gap must be >= 0, got {gap}"
        self.sizes = [(int(h), int(w)) for h, w in sizes]
        self.gap = int(gap)
        self.origins, self.height, self.width = _layout(self.sizes, self.gap)
        self._masks = {}
        self._bounds = {}

    def pack(self, features: List[torch.Tensor]) -> torch.Tensor:
        """(N, C, H_l, W_l) per level -> (N, C, H, W), zeros outside the levels (differentiable; keeps a
        channels_last input channels_last)."""
        f0 = features[0]
        out = f0.new_zeros((f0.shape[0], f0.shape[1], self.height, self.width))
        if f0.dim() == 4 and not f0.is_contiguous() and f0.is_contiguous(memory_format=torch.channels_last):
            out = out.contiguous(memory_format=torch.channels_last)
        for f, (y, x), (h, w) in zip(features, self.origins, self.sizes):
            out[:, :, y:y + h, x:x + w] = f
        return out

    def unpack(self, t: torch.Tensor) -> List[torch.Tensor]:
        """(N, C, H, W) -> per level (N, C, H_l, W_l) views."""
        return [t[:, :, y:y + h, x:x + w] for (y, x), (h, w) in zip(self.origins, self.sizes)]

    def mask(self, like: torch.Tensor) -> torch.Tensor:
        """(1, 1, H, W) of ``like``'s dtype and device: 1 on level cells, 0 in the gaps."""
        key = (like.device, like.dtype)
        if key not in self._masks:
            with torch.inference_mode(False):  # cached: usable by a later training step even if built in inference
                m = torch.zeros((1, 1, self.height, self.width), dtype=like.dtype, device=like.device)
                for (y, x), (h, w) in zip(self.origins, self.sizes):
                    m[:, :, y:y + h, x:x + w] = 1
            self._masks[key] = m
        return self._masks[key]

    def bounds(self, device, shift: Tuple[int, int] = (0, 0)) -> Tuple[torch.Tensor, ...]:
        """(y_lo, y_hi, x_lo, x_hi), each (H, W) int64: the rectangle of the level of every location (input
        coordinates moved by ``shift`` = (top, left) padding of the deformable conv's input); empty for gap
        cells."""
        key = (torch.device(device), tuple(shift))
        if key not in self._bounds:
            with torch.inference_mode(False):  # as the masks
                b = torch.zeros((4, self.height, self.width), dtype=torch.long)
                for (y, x), (h, w) in zip(self.origins, self.sizes):
                    b[:, y:y + h, x:x + w] = torch.tensor([y + shift[0], y + h + shift[0], x + shift[1],
                                                           x + w + shift[1]]).view(4, 1, 1)
                self._bounds[key] = tuple(b.to(device).unbind(0))
        return self._bounds[key]


_CACHE: "OrderedDict[tuple, LevelPacking]" = OrderedDict()


def level_packing(sizes: Sequence[Tuple[int, int]], gap: int) -> LevelPacking:
    """The (cached: the last 32 layouts) :class:`LevelPacking` of ``sizes`` and ``gap``."""
    key = (tuple((int(h), int(w)) for h, w in sizes), int(gap))
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    packing = _CACHE[key] = LevelPacking(*key)
    while len(_CACHE) > 32:
        _CACHE.popitem(last=False)
    return packing
