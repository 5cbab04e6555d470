"""MOTS text files (KITTI-MOTS / MOTSChallenge) -> YouTube-VIS.

One text file per sequence, one object mask per line::

    <frame> <object id> <class id> <image height> <image width> <compressed COCO RLE>

Object ids are ``class_id * 1000 + instance``; class 10 with object id 10000 marks "ignore" regions (dropped by
default). KITTI-MOTS classes: 1 car, 2 pedestrian (MOTSChallenge uses 2 only).

Sequence name: the file's stem (``instances_txt/0000.txt`` -> ``0000``), or the folder above ``gt/`` for
MOTSChallenge's ``MOTS20-02/gt/gt.txt`` -> ``MOTS20-02``. Frames: ``IMAGE_ROOT/<seq>/img1`` when it exists
(MOTSChallenge), else ``IMAGE_ROOT/<seq>`` (KITTI ``training/image_02``); every image there is a frame of the video
(frames without a line are kept, with no mask), and the ``<frame>`` number of a line is the number in the image's
file name (``000000.png`` = 0 for KITTI, ``000001.jpg`` = 1 for MOTSChallenge).
"""
import logging
import os
import re

import tqdm

from ...utils.errors import MissingFileError
from .common import ConversionError, YTVISBuilder, check_rle_string, image_size, list_frames, natural_key

__all__ = ["convert_mots", "KITTI_MOTS_CLASSES", "sequence_name", "sequence_frame_dir"]

logger = logging.getLogger(__name__)

KITTI_MOTS_CLASSES = {1: "car", 2: "pedestrian"}


def sequence_name(txt_file):
    stem = os.path.splitext(os.path.basename(txt_file))[0]
    parent = os.path.basename(os.path.dirname(os.path.abspath(txt_file)))
    if stem == "gt" and parent == "gt":  # MOTSChallenge: <seq>/gt/gt.txt
        return os.path.basename(os.path.dirname(os.path.dirname(os.path.abspath(txt_file))))
    return stem


def sequence_frame_dir(image_root, seq):
    """Frame folder of a sequence relative to ``image_root``: ``<seq>/img1`` if it exists, else ``<seq>``."""
    return os.path.join(seq, "img1") if os.path.isdir(os.path.join(image_root, seq, "img1")) else seq


def _frame_number(name):
    m = re.search(r"(\d+)(?=\.[^.]+$)", name)
    return int(m.group(1)) if m else None


def convert_mots(txt_files, image_root, class_names=None, ignore_class_ids=(10,), check_overlap=True):
    """Convert MOTS text files (one per sequence) into a YouTube-VIS dict.

    Args:
        txt_files (list[str]): text files or folders of ``*.txt`` files (e.g. KITTI-MOTS ``instances_txt``).
        image_root (str): folder with one frame folder per sequence (see the module docstring).
        class_names (dict[int, str] or None): class id -> name (YouTube-VIS category ids are the class ids);
            default KITTI-MOTS ``{1: "car", 2: "pedestrian"}``.
        ignore_class_ids: class ids of ignore regions, dropped (counted in the log).
        check_overlap (bool): masks of one frame must not overlap (the MOTS rule); checked when True.
    Returns:
        dict: the YouTube-VIS JSON.
    Raises:
        FileNotFoundError: a text file or folder is missing.
        ConversionError: malformed line / missing frame: one line naming the file and line number.
    """
    class_names = dict(KITTI_MOTS_CLASSES if class_names is None else class_names)
    files = _text_files(txt_files)
    seqs = [sequence_name(f) for f in files]
    dup = sorted({s for s in seqs if seqs.count(s) > 1})
    if dup:
        raise ConversionError(f"{files[seqs.index(dup[0])]}: sequence name {dup[0]!r} is given twice")
    builder = YTVISBuilder(sorted(class_names.items()), description="converted from MOTS text files")
    ignored = 0
    for txt, seq in zip(tqdm.tqdm(files, desc="MOTS sequences", unit="seq"), seqs):
        ignored += _add_sequence(builder, txt, image_root, seq, class_names, ignore_class_ids, check_overlap)
    if ignored:
        logger.info(f"dropped {ignored} ignore-region masks (class ids {list(ignore_class_ids)})")
    return builder.to_json()


def _text_files(txt_files):
    """The MOTS text files of ``txt_files`` (files, or folders whose ``*.txt`` are taken in natural order)."""
    files = []
    for p in txt_files:
        if os.path.isdir(p):
            found = sorted((os.path.join(p, f) for f in os.listdir(p) if f.endswith(".txt")), key=natural_key)
            if not found:
                raise ConversionError(f"{p}: folder has no .txt MOTS file")
            files += found
        elif os.path.isfile(p):
            files.append(p)
        else:
            raise MissingFileError(f"{p}: MOTS text file does not exist")
    return files


def _frame_index(frame_dir, names):
    """{frame number in the file name: frame index} of the frames ``names`` of ``frame_dir`` (numbers unique)."""
    index = {}
    for t, n in enumerate(names):
        num = _frame_number(n)
        if num is None:
            raise ConversionError(f"{os.path.join(frame_dir, n)}: frame file name has no frame number")
        if num in index:
            raise ConversionError(f"{os.path.join(frame_dir, n)}: frame number {num} is also {names[index[num]]}")
        index[num] = t
    return index


def _add_sequence(builder, txt, image_root, seq, class_names, ignore_class_ids, check_overlap):
    """Add sequence ``seq`` (its frames, and the masks of its text file ``txt``) to ``builder``; returns the
    number of ignore-region lines dropped."""
    import pycocotools.mask as mask_util

    rel_dir = sequence_frame_dir(image_root, seq)
    frame_dir = os.path.join(image_root, rel_dir)
    names = list_frames(frame_dir)
    h, w = image_size(os.path.join(frame_dir, names[0]))
    index = _frame_index(frame_dir, names)
    v = builder.add_video([os.path.join(rel_dir, n) for n in names], h, w)
    frame_masks = {}  # t -> list of (object id, rle bytes dict, line number)
    ignored = 0
    with open(txt) as f:
        for ln, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{txt}: line {ln}"
            parsed = _parse_line(where, line, class_names, ignore_class_ids, index, frame_dir, h, w)
            if parsed is None:
                ignored += 1
                continue
            frame, obj, cls, counts = parsed
            t = index[frame]
            if check_overlap:
                cur = {"size": [h, w], "counts": counts.encode("ascii")}
                for other, orle, oln in frame_masks.get(t, ()):
                    if mask_util.area(mask_util.merge([cur, orle], intersect=True)) > 0:
                        raise ConversionError(f"{where}: mask of object {obj} overlaps object {other} "
                                              f"(line {oln}) in frame {frame}; MOTS masks must not overlap")
                frame_masks.setdefault(t, []).append((obj, cur, ln))
            builder.add_mask(v, obj, t, cls, {"size": [h, w], "counts": counts}, where)
    return ignored


def _parse_line(where, line, class_names, ignore_class_ids, index, frame_dir, h, w):
    """(frame number, object id, class id, checked RLE counts str) of one MOTS line, or None for an ignore
    region. ``index``: the frame numbers of ``frame_dir`` (see :func:`_frame_index`); (h, w) the frame size."""
    parts = line.split()
    if len(parts) != 6:
        raise ConversionError(f"{where}: expected 6 fields 'frame id class_id height width rle', got {len(parts)}")
    try:
        frame, obj, cls, lh, lw = (int(x) for x in parts[:5])
    except ValueError:
        raise ConversionError(f"{where}: the first 5 fields must be integers, got {parts[:5]}") from None
    if cls in ignore_class_ids:
        return None
    if cls not in class_names:
        raise ConversionError(f"{where}: class id {cls} has no name; pass --classes {cls}=NAME "
                              f"(known: {sorted(class_names)})")
    if frame not in index:
        raise ConversionError(f"{where}: frame {frame} has no image in {frame_dir}")
    if (lh, lw) != (h, w):
        raise ConversionError(f"{where}: size {lh}x{lw} differs from the frames' {h}x{w} (height x width)")
    return frame, obj, cls, check_rle_string(parts[5], h, w, where)
