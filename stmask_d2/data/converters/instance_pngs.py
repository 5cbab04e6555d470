"""Folders of per-instance mask PNGs -> YouTube-VIS.

Layout::

    MASKS/<video>/<track>/<frame>.png    one binary mask per track and frame (pixels > threshold are the object)
    IMAGE_ROOT/<video>/<frame>.jpg       frames (any image extension); a mask's stem names its frame

``<track>`` is ``<id>`` or ``<class name>_<id>`` (e.g. ``person_3``, ``giant_panda_12``): the number is the track id
and the name, when present, the class (else ``class_name``). A track without a PNG for a frame is absent there.
Masks may overlap (YouTube-VIS allows it).
"""
import os
import re

import numpy as np
import tqdm

from ...utils.errors import MissingFileError
from .common import ConversionError, YTVISBuilder, image_size, list_frames, natural_key, rle_from_mask
from .davis import category_list

__all__ = ["convert_instance_pngs", "parse_track_folder", "read_binary_png"]


def parse_track_folder(name):
    """``"person_3"`` -> ("person", 3); ``"3"`` -> (None, 3); anything else -> None."""
    m = re.fullmatch(r"(?:(.+)_)?(\d+)", name)
    if not m:
        return None
    return m.group(1), int(m.group(2))


def read_binary_png(path, threshold=0):
    """(H, W) bool mask: pixels (max over colour channels, alpha ignored) greater than ``threshold``."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.mode == "P":
                im = im.convert("RGB")  # palette masks: the colour, not the index
            arr = np.array(im)
    except Exception as e:
        raise ConversionError(f"{path}: cannot read the mask PNG ({e})") from None
    if arr.ndim == 3:
        arr = arr[..., :3].max(axis=2)
    return arr > threshold


def convert_instance_pngs(masks_root, image_root, class_name="object", categories=None, threshold=0):
    """Convert folders of per-instance PNGs into a YouTube-VIS dict.

    Args:
        masks_root (str): folder of ``<video>/<track>/<frame>.png``.
        image_root (str): folder of ``<video>/<frame>.<ext>``.
        class_name (str): class of tracks whose folder has no class name.
        categories (list[str] or None): category order (ids 1..K); default sorted names.
        threshold (int): a pixel is in the mask when its value is greater than this.
    Raises:
        FileNotFoundError: a root folder is missing.
        ConversionError: a bad track folder, a mask without frame, a mask of the wrong size (naming the file).
    """
    for p, what in ((masks_root, "masks folder"), (image_root, "image root")):
        if not os.path.isdir(p):
            raise MissingFileError(f"{p}: {what} does not exist")
    video_names = sorted((d for d in os.listdir(masks_root) if os.path.isdir(os.path.join(masks_root, d))),
                         key=natural_key)
    if not video_names:
        raise ConversionError(f"{masks_root}: no video folders (expected <video>/<track>/<frame>.png)")
    plan = [_plan_video(masks_root, image_root, vname, class_name) for vname in video_names]
    names_used = [cls for _, _, _, _, tracks in plan for _, cls, _ in tracks]
    cats = category_list(names_used or [class_name], categories)
    builder = YTVISBuilder(cats, description="converted from per-instance PNG folders")
    _add_masks(builder, plan, {n: i for i, n in cats}, threshold)
    return builder.to_json()


def _plan_video(masks_root, image_root, vname, class_name):
    """(vname, frame file names, h, w, [(track id, class name, [(frame index, PNG path)])]) of one video, from its
    track folders (read in natural order; nothing is decoded yet)."""
    frames = list_frames(os.path.join(image_root, vname))
    stems = {os.path.splitext(n)[0]: t for t, n in enumerate(frames)}
    h, w = image_size(os.path.join(image_root, vname, frames[0]))
    tracks = []
    vdir = os.path.join(masks_root, vname)
    for tname in sorted(os.listdir(vdir), key=natural_key):
        tdir = os.path.join(vdir, tname)
        if not os.path.isdir(tdir):
            continue
        parsed = parse_track_folder(tname)
        if parsed is None:
            raise ConversionError(f"{tdir}: track folder must be named <id> or <class>_<id> (e.g. person_3)")
        cls, tid = parsed
        if any(tid == o for o, _, _ in tracks):
            raise ConversionError(f"{tdir}: track id {tid} is used by another folder of video {vname}")
        tracks.append((tid, cls if cls is not None else class_name, _track_files(tdir, stems, image_root, vname)))
    return vname, frames, h, w, tracks


def _track_files(tdir, stems, image_root, vname):
    """[(frame index, PNG path)] of the ``*.png`` of track folder ``tdir``; ``stems``: {frame stem: index}."""
    files = []
    for f in sorted(os.listdir(tdir), key=natural_key):
        if not f.lower().endswith(".png"):
            continue
        stem = os.path.splitext(f)[0]
        if stem not in stems:
            raise ConversionError(f"{os.path.join(tdir, f)}: no frame {stem}.* in {os.path.join(image_root, vname)}")
        files.append((stems[stem], os.path.join(tdir, f)))
    return files


def _add_masks(builder, plan, cat_id, threshold):
    """Read every mask PNG of ``plan`` (see :func:`_plan_video`) and add the videos and masks to ``builder``;
    ``cat_id``: {class name: category id}."""
    total = sum(len(files) for _, _, _, _, tracks in plan for _, _, files in tracks)
    bar = tqdm.tqdm(total=total, desc="instance masks", unit="mask")
    try:
        for vname, frames, h, w, tracks in plan:
            v = builder.add_video([f"{vname}/{n}" for n in frames], h, w)
            for tid, cls, files in tracks:
                for t, path in files:
                    m = read_binary_png(path, threshold)
                    if m.shape != (h, w):
                        raise ConversionError(f"{path}: mask is {m.shape[0]}x{m.shape[1]} but the frames are "
                                              f"{h}x{w} (height x width)")
                    builder.add_mask(v, tid, t, cat_id[cls], rle_from_mask(m), where=path)
                    bar.update(1)
    finally:
        bar.close()
