"""Track visualiser: every track keeps ONE colour for its whole life and is labelled "[id] class score".

Built on Detectron2's :class:`~detectron2.utils.visualizer.Visualizer` primitives (``overlay_instances``:
boxes, label placement and font sizing as in Detectron2). Unlike Detectron2's ``VideoVisualizer``, which
re-identifies instances by mask IoU between frames to keep colours stable, STMask's tracker already gives
identities, so the colour is a pure function of the track id (:func:`track_color`): no state, the same id gets
the same colour in any frame, any video and any process.

Two mask styles (``fast_masks``):

* ``True`` (default, the demo's hot path): masks are alpha-blended into the frame with NumPy in one vectorised
  pass (no polygon extraction), then ``overlay_instances`` draws boxes and labels only.
* ``False``: masks go through ``overlay_instances`` as polygons (Detectron2's exact look, slower: contour
  extraction and matplotlib polygon rendering per instance).

Frames larger than ``max_matplotlib_pixels`` (default 4 MP) get their boxes and labels drawn with OpenCV instead
of Detectron2's matplotlib canvas, whose buffers grow to ~20 bytes per pixel (2 GB at 8000x8000); masks are then
blended in row bands. Memory per frame stays a few frame-sized buffers at any size.

Input / output frames are HxWx3 uint8 **RGB**.
"""
from typing import Optional, Sequence

import cv2
import numpy as np
from detectron2.structures import Instances
from detectron2.utils.colormap import colormap
from detectron2.utils.visualizer import ColorMode, Visualizer

__all__ = ["TrackVisualizer", "track_color", "track_labels"]

_PALETTE = colormap(rgb=True, maximum=1).astype(np.float32)  # (74, 3) Detectron2's colours, RGB in [0, 1]


def track_color(track_id: int) -> np.ndarray:
    """RGB colour in [0, 1] (shape (3,)) of a track id; deterministic, consecutive ids get distant colours.

    The id is scrambled with Knuth's multiplicative hash before indexing Detectron2's palette so that ids 1, 2,
    3 ... do not walk the palette in order (neighbouring palette entries are similar hues).
    """
    idx = ((int(track_id) * 2654435761) & 0xFFFFFFFF) % len(_PALETTE)
    return _PALETTE[idx]


def track_labels(track_ids, classes, scores, class_names: Optional[Sequence[str]] = None):
    """Labels ``"[id] class 87%"`` (Detectron2's percentage style); class names from ``class_names`` when given
    and in range, else the contiguous class index. ``scores=None`` (ground truth): ``"[id] class"``."""
    labels = []
    for k, (tid, c) in enumerate(zip(track_ids, classes)):
        c = int(c)
        name = class_names[c] if class_names is not None and 0 <= c < len(class_names) else str(c)
        labels.append(f"[{int(tid)}] {name}" + ("" if scores is None else f" {float(scores[k]) * 100:.0f}%"))
    return labels


class TrackVisualizer:
    """Draws tracked instances (``track_ids``, ``pred_boxes``, ``scores``, ``pred_classes``, ``pred_masks``)
    on RGB frames.

    Args:
        metadata: Detectron2 ``Metadata`` (``thing_classes`` used for labels), or None.
        instance_mode: ``ColorMode.IMAGE`` or ``ColorMode.IMAGE_BW`` (grey background outside the masks).
        alpha: mask opacity, in [0, 1].
        fast_masks: see the module docstring.
        draw_boxes: draw the boxes (False: masks and labels only; labels stay where they would be with boxes).
        draw_labels: draw the "[id] class score" labels.
    """

    def __init__(self, metadata=None, instance_mode=ColorMode.IMAGE, alpha: float = 0.5, fast_masks: bool = True,
                 draw_boxes: bool = True, draw_labels: bool = True, max_matplotlib_pixels: int = 4_000_000):
        if instance_mode not in (ColorMode.IMAGE, ColorMode.IMAGE_BW):
            raise ValueError(f"TrackVisualizer supports ColorMode.IMAGE and IMAGE_BW, got {instance_mode}.")
        self.metadata = metadata
        self.instance_mode = instance_mode
        self.alpha = float(alpha)
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"mask alpha must be in [0, 1], got {alpha}")
        self.fast_masks = fast_masks
        self.draw_boxes = bool(draw_boxes)
        self.draw_labels = bool(draw_labels)
        self.max_matplotlib_pixels = int(max_matplotlib_pixels)
        classes = getattr(metadata, "thing_classes", None) if metadata is not None else None
        self.class_names = list(classes) if classes else None

    def draw_frame(self, frame: np.ndarray, instances: Instances, labels: Optional[Sequence[str]] = None) -> np.ndarray:
        """
        Args:
            frame: (H, W, 3) uint8 RGB.
            instances: tracked instances of this frame at (H, W), on any device (``scores`` optional: ground
                truth is labelled "[id] class").
            labels: one label per instance instead of the default "[id] class score".
        Returns:
            (H, W, 3) uint8 RGB annotated frame (a new array; ``frame`` is not modified).
        """
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"draw_frame needs an HxWx3 RGB frame, got shape {frame.shape}.")
        n = len(instances)
        masks = None
        if n and instances.has("pred_masks"):
            masks = instances.pred_masks
            if hasattr(masks, "crop") and (self.instance_mode == ColorMode.IMAGE_BW or not self.fast_masks):
                masks = masks.tensor()  # LazyMasks on a path that needs them all at once
            if not hasattr(masks, "crop"):
                masks = (masks.cpu().numpy() if hasattr(masks, "cpu") else np.asarray(masks)).astype(bool)
        img = frame
        if self.instance_mode == ColorMode.IMAGE_BW:
            img = self._grey_background(frame, masks)
        if n == 0:
            return np.array(img, dtype=np.uint8, copy=True)

        ids = instances.track_ids.tolist()
        colors = [track_color(t) for t in ids]
        if labels is None:
            scores = instances.scores.tolist() if instances.has("scores") else None
            labels = track_labels(ids, instances.pred_classes.tolist(), scores, self.class_names)
        labels = list(labels)
        if len(labels) != n:
            raise ValueError(f"draw_frame got {len(labels)} labels for {n} instances")
        boxes = instances.pred_boxes.tensor.cpu().numpy() if instances.has("pred_boxes") else None

        large = frame.shape[0] * frame.shape[1] > self.max_matplotlib_pixels
        if (self.fast_masks or large) and masks is not None:
            img = self._blend_masks(img, masks, colors)
            masks = None
        if large:
            return self._draw_boxes_labels_cv2(img, boxes, labels, colors)
        vis = Visualizer(img, self.metadata, instance_mode=ColorMode.IMAGE)
        if self.draw_boxes or boxes is None:  # Detectron2 places the labels (box corner, or mask centre)
            out = vis.overlay_instances(
                boxes=boxes if self.draw_boxes else None,
                labels=labels if self.draw_labels else None,
                masks=list(masks) if masks is not None else None,
                assigned_colors=colors,
                alpha=self.alpha,
            )
        else:  # no boxes drawn: labels where they would be with boxes, so hiding boxes moves nothing else
            if masks is not None:
                vis.overlay_instances(masks=list(masks), assigned_colors=colors, alpha=self.alpha)
            if self.draw_labels:
                self._draw_labels_at_boxes(vis, boxes, labels, colors)
            out = vis.output
        return out.get_image()

    @staticmethod
    def _draw_labels_at_boxes(vis, boxes, labels, colors):
        """Labels placed, sized and coloured as ``overlay_instances`` does with boxes, without drawing the boxes."""
        from detectron2.utils.visualizer import _SMALL_OBJECT_AREA_THRESH

        areas = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
        out = vis.output
        for i in np.argsort(-areas, kind="stable").tolist():
            x0, y0, x1, y1 = boxes[i]
            text_pos = (x0, y0)
            if (y1 - y0) * (x1 - x0) < _SMALL_OBJECT_AREA_THRESH * out.scale or y1 - y0 < 40 * out.scale:
                text_pos = (x1, y0) if y1 >= out.height - 5 else (x0, y1)
            height_ratio = (y1 - y0) / np.sqrt(out.height * out.width)
            font_size = np.clip((height_ratio - 0.02) / 0.08 + 1, 1.2, 2) * 0.5 * vis._default_font_size
            vis.draw_text(labels[i], text_pos, color=vis._change_color_brightness(colors[i], brightness_factor=0.7),
                          horizontal_alignment="left", font_size=font_size)

    def _blend_masks(self, img: np.ndarray, masks: np.ndarray, colors) -> np.ndarray:
        """One pass over the pixels: later (smaller) masks are painted over larger ones, like Visualizer.
        ``masks``: (N, H, W) bool array, or a LazyMasks (pasted one instance at a time, cropped to its region)."""
        lazy = hasattr(masks, "crop")
        if lazy:  # two passes (areas, then painting) so that one pasted mask at a time is held
            areas = np.array(masks.areas())
        else:
            areas = masks.reshape(len(masks), -1).sum(1)
        order = np.argsort(-areas, kind="stable")
        # label map: index (1-based, in drawing order) of the top-most mask per pixel, 0 = background
        top = np.zeros(img.shape[:2], dtype=np.int16 if len(order) < 32767 else np.int32)
        for rank, k in enumerate(order, start=1):
            if lazy:
                x0, y0, c = masks.crop(int(k))
                top[y0:y0 + c.shape[0], x0:x0 + c.shape[1]][c.numpy()] = rank
            else:
                top[masks[k]] = rank
        out = np.array(img, dtype=np.uint8, copy=True)
        lut = np.zeros((len(order) + 1, 3), dtype=np.float32)
        lut[1:] = np.stack([colors[k] for k in order]) * 255.0
        band = max(1, (1 << 20) // max(1, top.shape[1]))  # ~1M pixels per pass: float temporaries stay small
        for r0 in range(0, top.shape[0], band):
            t = top[r0:r0 + band]
            fg = t > 0
            if not fg.any():
                continue
            o = out[r0:r0 + band]
            px = o[fg].astype(np.float32)
            o[fg] = (px * (1.0 - self.alpha) + lut[t[fg]] * self.alpha + 0.5).astype(np.uint8)
        return out

    def _draw_boxes_labels_cv2(self, img: np.ndarray, boxes, labels, colors) -> np.ndarray:
        """Boxes and "[id] class score" labels drawn with OpenCV on a copy of ``img`` (large frames), each only when
        ``draw_boxes`` / ``draw_labels`` is set; labels sit at the box corner (top-left of the frame without boxes)."""
        out = np.array(img, dtype=np.uint8, copy=True)
        H, W = out.shape[:2]
        thick = max(1, int(round(max(H, W) / 800)))
        scale = max(0.5, max(H, W) / 1600)
        font = cv2.FONT_HERSHEY_SIMPLEX
        for k, label in enumerate(labels):
            color = tuple(int(v * 255) for v in colors[k])
            x0, y0 = 0, 0
            if boxes is not None:
                x0, y0, x1, y1 = (int(round(float(v))) for v in boxes[k])
                if self.draw_boxes:
                    cv2.rectangle(out, (x0, y0), (x1, y1), color, thick, cv2.LINE_AA)
            if not self.draw_labels:
                continue
            (tw, th), base = cv2.getTextSize(label, font, scale, thick)
            ty = max(th + base, y0)
            cv2.rectangle(out, (x0, ty - th - base), (x0 + tw, ty), (0, 0, 0), -1)
            cv2.putText(out, label, (x0, ty - base), font, scale, color, thick, cv2.LINE_AA)
        return out

    @staticmethod
    def _grey_background(frame: np.ndarray, masks: Optional[np.ndarray]) -> np.ndarray:
        grey = frame.astype(np.float32).mean(axis=2, keepdims=True).astype(np.uint8)
        out = np.repeat(grey, 3, axis=2)
        if masks is not None and len(masks):
            fg = masks.any(axis=0)
            out[fg] = frame[fg]
        return out
