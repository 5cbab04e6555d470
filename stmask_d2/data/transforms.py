"""Test-time resize of the released STMask code: a fixed output size, aspect ratio not kept, OpenCV bilinear.

The authors resize every frame with ``cv2.resize(frame, (640, 360), interpolation=cv2.INTER_LINEAR)`` on the uint8
frame (docs/METHOD.md §15). Detectron2's ``ResizeTransform`` uses PIL for uint8 images, whose bilinear filter differs
from OpenCV's (PIL widens the filter when shrinking), so released weights need this transform to see the same input.
Selected by ``INPUT.TEST_RESIZE_MODE: "fixed"`` (see :func:`build_test_resize`).
"""
import cv2
import numpy as np
from detectron2.data import transforms as T
from fvcore.transforms.transform import Transform

__all__ = ["CV2ResizeTransform", "FixedSizeResize", "build_test_resize"]


class CV2ResizeTransform(Transform):
    """Resize an (H, W, C) image to (new_h, new_w) with ``cv2.resize`` (INTER_LINEAR), coordinates scaled."""

    def __init__(self, h: int, w: int, new_h: int, new_w: int):
        super().__init__()
        self._set_attributes(locals())

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        assert img.shape[:2] == (self.h, self.w), f"expected a {self.h}x{self.w} image, got {img.shape[:2]}"
        if (self.h, self.w) == (self.new_h, self.new_w):
            return img
        return cv2.resize(img, (self.new_w, self.new_h), interpolation=cv2.INTER_LINEAR)

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        coords = coords.astype(np.float32, copy=True)
        coords[:, 0] *= self.new_w / self.w
        coords[:, 1] *= self.new_h / self.h
        return coords

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        return cv2.resize(segmentation, (self.new_w, self.new_h), interpolation=cv2.INTER_NEAREST)

    def inverse(self):
        return CV2ResizeTransform(self.new_h, self.new_w, self.h, self.w)


class FixedSizeResize(T.Augmentation):
    """Resize every image to ``(width, height)`` whatever its aspect ratio (:class:`CV2ResizeTransform`)."""

    def __init__(self, width: int, height: int):
        super().__init__()
        self.width, self.height = int(width), int(height)

    def get_transform(self, image):
        h, w = image.shape[:2]
        return CV2ResizeTransform(h, w, self.height, self.width)


def build_test_resize(cfg) -> T.Augmentation:
    """The test-time resize of ``cfg``: ``INPUT.TEST_RESIZE_MODE`` "shortest_edge" (Detectron2's
    ``ResizeShortestEdge(MIN_SIZE_TEST, MAX_SIZE_TEST)``, aspect kept) or "fixed" (``INPUT.TEST_FIXED_SIZE``
    (width, height), released)."""
    mode = cfg.INPUT.TEST_RESIZE_MODE
    if mode == "fixed":
        w, h = cfg.INPUT.TEST_FIXED_SIZE
        return FixedSizeResize(w, h)
    if mode != "shortest_edge":
        raise ValueError(f"INPUT.TEST_RESIZE_MODE must be 'shortest_edge' or 'fixed', got {mode!r}")
    return T.ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST)
