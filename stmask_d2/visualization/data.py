"""Ground-truth tracks of a registered YouTube-VIS dataset drawn with the demo's palette and labels
(:class:`~stmask_d2.utils.visualizer.TrackVisualizer`): one contact sheet per video, optionally an mp4."""
import logging
import os

import numpy as np
import torch
import tqdm
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import Boxes, BoxMode, Instances

from ..utils.rle import decode_rle
from ..utils.errors import InputError
from ..utils.video import ImageListSource
from ..utils.visualizer import TrackVisualizer
from .contact_sheet import make_contact_sheet, sample_frames, write_image, write_video

__all__ = ["gt_instances", "video_name", "visualize_dataset", "decode_segmentation"]

logger = logging.getLogger(__name__)


def video_name(video):
    """A file-name-safe name of a video dict: the folder of its first frame (e.g. "0a2f5f3c2b"), or its id."""
    name = os.path.basename(os.path.dirname(video["file_names"][0])) if video.get("file_names") else ""
    name = name or f"video_{video.get('video_id')}"
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def decode_segmentation(seg, h, w):
    """(h, w) bool mask of a dataset-dict segmentation (compressed RLE dict or polygon list)."""
    return decode_rle(seg, h, w)


def gt_instances(annotations, h, w):
    """Instances (``track_ids``, ``pred_classes``, ``pred_boxes`` XYXY, ``pred_masks`` (N, h, w)) of one frame's
    dataset-dict annotations; no ``scores`` (the labels read "[id] class")."""
    inst = Instances((h, w))
    n = len(annotations)
    inst.track_ids = torch.tensor([int(a["id"]) for a in annotations], dtype=torch.int64)
    inst.pred_classes = torch.tensor([int(a["category_id"]) for a in annotations], dtype=torch.int64)
    boxes = [BoxMode.convert(a["bbox"], a.get("bbox_mode", BoxMode.XYWH_ABS), BoxMode.XYXY_ABS) for a in annotations]
    inst.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(n, 4))
    masks = np.zeros((n, h, w), bool)
    for k, a in enumerate(annotations):
        if a.get("segmentation") is not None:
            masks[k] = decode_segmentation(a["segmentation"], h, w)
    inst.pred_masks = torch.from_numpy(masks)
    return inst


def _check_dataset(name):
    if name not in DatasetCatalog.list():
        raise InputError(f"--dataset {name!r} is not registered; use a predefined split (datasets/README.md) or "
                         f"--register-ytvis {name} JSON IMAGE_ROOT")
    videos = DatasetCatalog.get(name)
    if videos and "annotations" not in videos[0]:
        raise InputError(f"--dataset {name!r} has no annotations (a valid/test split?); nothing to draw")
    return videos


def make_output_dir(output_dir):
    """Create ``output_dir`` (``--output``); one-line :class:`InputError` when it cannot be."""
    try:
        os.makedirs(output_dir, exist_ok=True)
    except OSError as e:
        raise InputError(f"--output {output_dir!r} cannot be created ({e.strerror or e})") from e


def visualize_dataset(dataset_name, output_dir, num_videos=None, video_out=False, max_frames=12, columns=4,
                      tile_width=320, fps=6.0, alpha=0.5):
    """Draw the ground truth of ``dataset_name``; returns the list of written files.

    Writes ``<output_dir>/<video>.png`` (contact sheet of up to ``max_frames`` frames spread over the video, title
    with the video's id, size, length and tracks) and, with ``video_out``, ``<output_dir>/<video>.mp4`` (every
    frame). Raises ``InputError`` (a user error, one line) for an unknown dataset or one without annotations.
    """
    videos = _check_dataset(dataset_name)
    meta = MetadataCatalog.get(dataset_name)
    vis = TrackVisualizer(meta, alpha=alpha)
    classes = list(getattr(meta, "thing_classes", None) or [])
    if num_videos is not None and num_videos > 0:
        videos = videos[:num_videos]
    make_output_dir(output_dir)
    written = []
    for video in tqdm.tqdm(videos, desc=f"drawing {dataset_name}", unit="video"):
        h, w, T = video["height"], video["width"], video["length"]
        src = ImageListSource(video["file_names"], "RGB")
        name = video_name(video)

        def drawn(t):
            frame = src[t]
            if frame.shape[:2] != (h, w):
                raise InputError(f"{video['file_names'][t]}: frame is {frame.shape[0]}x{frame.shape[1]} but the "
                                 f"annotation file says {h}x{w}")
            return vis.draw_frame(frame, gt_instances(video["annotations"][t], h, w))

        idx = sample_frames(T, max_frames)
        tiles = [drawn(t) for t in idx]
        tracks = {}
        for anns in video["annotations"]:
            for a in anns:
                tracks.setdefault(a["id"], [a["category_id"], 0])[1] += 1
        legend = [(f"[{tid}] {classes[c] if 0 <= c < len(classes) else c}: {n}/{T} frames",
                   tuple(int(x) for x in vis_color(tid))) for tid, (c, n) in sorted(tracks.items())]
        title = f"{dataset_name} | video {video['video_id']} '{name}' | {w}x{h}, {T} frames | {len(tracks)} tracks"
        sheet = make_contact_sheet(tiles, [f"frame {t}" for t in idx], title, columns, tile_width, legend)
        path = os.path.join(output_dir, f"{name}.png")
        write_image(path, sheet)
        written.append(path)
        if video_out:
            vpath = os.path.join(output_dir, f"{name}.mp4")
            write_video(vpath, (drawn(t) for t in range(T)), fps)
            written.append(vpath)
    return written


def vis_color(track_id):
    """RGB 0..255 colour of a track id (the demo's palette), darkened for text on white."""
    from ..utils.visualizer import track_color

    c = track_color(track_id) * 255.0
    return np.clip(c * min(1.0, 150.0 / max(float(c.max()), 1.0)), 0, 255)  # brightest channel <= 150
