"""Binary masks at the original frame size, held compactly and pasted one instance at a time.

:func:`~stmask_d2.layers.paste_masks_to_image` returns an (N, H0, W0) bool tensor: at 4000 x 4000 with 100
tracks that is 1.6 GB, plus its sampling grid. :class:`LazyMasks` keeps the soft masks at prototype resolution
(independent of the frame size) and produces each instance's mask on demand, in row bands, with exactly the
values of ``paste_masks_to_image`` (same region rule, same ``grid_sample`` coordinates). Consumers that go
instance by instance (RLE encoding, drawing) then hold at most one full-size mask at a time.
"""
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .mask_ops import _region_from_support

__all__ = ["LazyMasks"]

_BAND_PIXELS = 1 << 20  # sampled per grid_sample call (1M pixels: 8 MB of grid)


class LazyMasks:
    """(N, H0, W0) binary masks, computed per instance from (N, h, w) soft masks.

    Args:
        soft: (N, Hp, Wp) soft masks at prototype resolution (padded input / 4).
        valid_hw_proto: (h, w) unpadded input size / 4 (truncated like :func:`paste_masks_to_image`).
        out_hw: (H0, W0) original frame size.
        threshold: binarisation threshold (strict ``>``).
        boxes_out: optional (N, 4) XYXY boxes in output pixels; the mask is then restricted to the box (as
            ``paste_masks_to_image(boxes_out=...)``).

    Behaves like a bool tensor where the tracking code needs it: ``len``, ``shape``, ``device``, ``to`` /
    ``cpu``, indexing (an int gives that instance's (H0, W0) bool mask; a slice, index list / tensor or bool
    tensor gives a :class:`LazyMasks` of those instances, so ``Instances`` indexing works), iteration (full
    masks one at a time) and :meth:`tensor` (all of them, (N, H0, W0) bool: only for small frames).
    """

    def __init__(self, soft: torch.Tensor, valid_hw_proto: Sequence[float], out_hw: Sequence[int],
                 threshold: float = 0.5, boxes_out: Optional[torch.Tensor] = None, _trimmed: bool = False):
        if not _trimmed:
            h = max(1, min(int(valid_hw_proto[0]), soft.shape[1]))
            w = max(1, min(int(valid_hw_proto[1]), soft.shape[2]))
            soft = soft[:, :h, :w].float()
        self.soft = soft
        self.out_hw = (int(out_hw[0]), int(out_hw[1]))
        self.threshold = float(threshold)
        self.boxes_out = None if boxes_out is None else boxes_out.to(soft.device, torch.float32).reshape(-1, 4)
        self._regions = None

    # ---- tensor-like protocol ---------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.soft.shape[0])

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self), *self.out_hw))

    @property
    def device(self) -> torch.device:
        return self.soft.device

    @property
    def dtype(self):
        return torch.bool

    def _new(self, soft, boxes):
        return LazyMasks(soft, None, self.out_hw, self.threshold, boxes, _trimmed=True)

    def to(self, *args, **kwargs) -> "LazyMasks":
        boxes = None if self.boxes_out is None else self.boxes_out.to(*args, **kwargs)
        return self._new(self.soft.to(*args, **kwargs), boxes)

    def cpu(self) -> "LazyMasks":
        return self.to("cpu")

    def __getitem__(self, item):
        if isinstance(item, (int, np.integer)):
            return self.mask(int(item))
        idx = torch.arange(len(self), device=self.soft.device)[item]
        idx = idx.reshape(-1)
        return self._new(self.soft[idx], None if self.boxes_out is None else self.boxes_out[idx])

    def __iter__(self) -> Iterator[torch.Tensor]:
        for i in range(len(self)):
            yield self.mask(i)

    def __repr__(self):
        return f"LazyMasks(num={len(self)}, out_hw={self.out_hw}, proto_hw={tuple(self.soft.shape[1:])})"

    # ---- masks --------------------------------------------------------------------------------------------------
    def regions(self) -> torch.Tensor:
        """(N, 4) int64 [x0, y0, x1, y1) output-pixel region of each mask (pixels outside are False)."""
        if self._regions is None:
            H0, W0 = self.out_hw
            if len(self) == 0:
                self._regions = torch.zeros((0, 4), dtype=torch.long)
            elif self.boxes_out is None:
                self._regions = _region_from_support(self.soft, self.threshold, (H0, W0)).cpu()
            else:
                b = self.boxes_out.cpu()
                r = torch.stack([torch.floor(b[:, 0]).clamp(0, W0), torch.floor(b[:, 1]).clamp(0, H0),
                                 torch.ceil(b[:, 2]).clamp(0, W0), torch.ceil(b[:, 3]).clamp(0, H0)], dim=1).long()
                r[:, 2] = torch.maximum(r[:, 2], r[:, 0])
                r[:, 3] = torch.maximum(r[:, 3], r[:, 1])
                self._regions = r
        return self._regions

    def crop(self, i: int) -> Tuple[int, int, torch.Tensor]:
        """Instance ``i`` inside its region: (x0, y0, (rh, rw) bool tensor on the CPU)."""
        H0, W0 = self.out_hw
        x0, y0, x1, y1 = (int(v) for v in self.regions()[i])
        rh, rw = y1 - y0, x1 - x0
        out = torch.zeros((max(rh, 0), max(rw, 0)), dtype=torch.bool)
        if rh <= 0 or rw <= 0:
            return x0, y0, out
        src = self.soft[i : i + 1, None]  # (1, 1, h, w)
        dev = src.device
        gx = (2 * torch.arange(x0, x1, device=dev).float() + 1) / W0 - 1  # (rw,)
        band = max(1, _BAND_PIXELS // rw)
        for r0 in range(0, rh, band):
            r1 = min(rh, r0 + band)
            gy = (2 * torch.arange(y0 + r0, y0 + r1, device=dev).float() + 1) / H0 - 1  # (b,)
            grid = torch.stack([gx[None, :].expand(r1 - r0, rw), gy[:, None].expand(r1 - r0, rw)], dim=-1)[None]
            sampled = F.grid_sample(src, grid, mode="bilinear", padding_mode="border", align_corners=False)
            out[r0:r1] = (sampled[0, 0] > self.threshold).cpu()
        return x0, y0, out

    def mask(self, i: int) -> torch.Tensor:
        """(H0, W0) bool mask of instance ``i`` (CPU)."""
        x0, y0, c = self.crop(i)
        full = torch.zeros(self.out_hw, dtype=torch.bool)
        full[y0 : y0 + c.shape[0], x0 : x0 + c.shape[1]] = c
        return full

    def tensor(self) -> torch.Tensor:
        """All masks, (N, H0, W0) bool (CPU): the memory this class avoids; for small frames and tests."""
        out = torch.zeros(self.shape, dtype=torch.bool)
        for i in range(len(self)):
            x0, y0, c = self.crop(i)
            out[i, y0 : y0 + c.shape[0], x0 : x0 + c.shape[1]] = c
        return out

    def areas(self) -> List[int]:
        return [int(self.crop(i)[2].sum()) for i in range(len(self))]

    def encode_rle(self) -> List[dict]:
        """pycocotools RLE per instance (``counts`` as str), one full-size mask in memory at a time."""
        from pycocotools import mask as mask_util

        H0, W0 = self.out_hw
        out = []
        for i in range(len(self)):
            x0, y0, c = self.crop(i)
            ft = np.zeros((W0, H0), dtype=np.uint8)  # C-order (W, H) == Fortran-order (H, W)
            ft[x0 : x0 + c.shape[1], y0 : y0 + c.shape[0]] = c.numpy().T
            rle = mask_util.encode(ft.T[:, :, None])[0]
            del ft
            rle["counts"] = rle["counts"].decode("ascii")
            out.append(rle)
        return out
