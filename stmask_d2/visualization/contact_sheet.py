"""Contact sheets (a grid of frames with captions, a title and a text panel) and atomic image writing (videos:
:func:`stmask_d2.utils.video.write_video`, re-exported here)."""
import os

import cv2
import numpy as np

from ..utils.errors import InputError
from ..utils.io import atomic_write
from ..utils.video import write_video  # noqa: F401  (re-exported)

__all__ = ["make_contact_sheet", "sample_frames", "write_image", "write_video"]

_FONT = cv2.FONT_HERSHEY_SIMPLEX


def sample_frames(length, max_frames):
    """Up to ``max_frames`` frame indices spread evenly over ``length`` frames, first and last included."""
    if max_frames <= 0 or length <= max_frames:
        return list(range(length))
    return sorted({int(round(x)) for x in np.linspace(0, length - 1, max_frames)})


def _text_block(lines, width, scale=0.5, color=(20, 20, 20), bg=(255, 255, 255)):
    """A (h, width, 3) RGB panel with one text line per entry (cut to the width)."""
    lh = int(22 * scale / 0.5)
    panel = np.full((max(1, len(lines)) * lh + 8, width, 3), bg, np.uint8)
    for i, line in enumerate(lines):
        text, col = (line if isinstance(line, tuple) else (line, color))
        max_chars = max(8, int(width / (10.5 * scale / 0.5)))
        if len(text) > max_chars:
            text = text[:max_chars - 3] + "..."
        cv2.putText(panel, text, (6, (i + 1) * lh), _FONT, scale, tuple(int(c) for c in col), 1, cv2.LINE_AA)
    return panel


def make_contact_sheet(tiles, captions=None, title=None, columns=4, tile_width=320, footer=None):
    """Arrange RGB frames into one sheet.

    Args:
        tiles (list[np.ndarray]): (H, W, 3) uint8 RGB images (any sizes: each is resized to ``tile_width``).
        captions (list[str] or None): one caption per tile, written in a band under it.
        title (str or list[str] or None): lines above the grid.
        columns (int): tiles per row.
        footer (list[str | (str, rgb)] or None): lines under the grid (e.g. a legend).
    Returns:
        (H, W, 3) uint8 RGB sheet.
    """
    if not tiles:
        raise ValueError("make_contact_sheet needs at least one tile")
    columns = max(1, min(columns, len(tiles)))
    th = max(int(round(t.shape[0] * tile_width / t.shape[1])) for t in tiles)
    cap_h = 22 if captions else 0
    pad = 4
    rows = (len(tiles) + columns - 1) // columns
    width = columns * (tile_width + pad) + pad
    grid = np.full((rows * (th + cap_h + pad) + pad, width, 3), 255, np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        h = int(round(tile.shape[0] * tile_width / tile.shape[1]))
        small = cv2.resize(tile, (tile_width, h), interpolation=cv2.INTER_AREA if tile.shape[1] > tile_width
                           else cv2.INTER_LINEAR)
        y, x = pad + r * (th + cap_h + pad), pad + c * (tile_width + pad)
        grid[y:y + h, x:x + tile_width] = small
        if captions:
            cv2.putText(grid, str(captions[i])[:48], (x + 2, y + th + 16), _FONT, 0.45, (20, 20, 20), 1, cv2.LINE_AA)
    parts = []
    if title:
        parts.append(_text_block([title] if isinstance(title, str) else list(title), width, scale=0.55))
    parts.append(grid)
    if footer:
        parts.append(_text_block(list(footer), width, scale=0.45))
    return np.concatenate(parts, axis=0)


def write_image(path, rgb, quality=92):
    """Write an RGB image atomically (format from the extension: .jpg / .png)."""
    ext = os.path.splitext(path)[1].lower() or ".jpg"
    params = [int(cv2.IMWRITE_JPEG_QUALITY), quality] if ext in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise InputError(f"{path}: OpenCV cannot encode {ext} images (use .png or .jpg)")
    atomic_write(path, lambda f: f.write(buf.tobytes()))
