"""DAVIS-style indexed PNG folders -> YouTube-VIS.

Layout (DAVIS 2017)::

    ANNOTATIONS/<seq>/<frame>.png     indexed (palette or grey) PNG: 0 background, k = object k, VOID excluded
    IMAGE_ROOT/<seq>/<frame>.jpg      frames; each needs the annotation PNG of the same stem

e.g. ``--annotations DAVIS/Annotations/480p --image-root DAVIS/JPEGImages/480p``. An object keeps its index in
every frame, so the index is the track id. Class names: from a DAVIS ``davis_semantics.json``-style file
(``{"<seq>": {"<object index>": "<class name>"}}``) or one name for every object (``class_name``).
"""
import os

import numpy as np
import tqdm

from ...utils.json_io import parse_json_bytes
from ...utils.errors import MissingFileError
from .common import ConversionError, YTVISBuilder, image_size, list_frames, natural_key, rle_from_mask

__all__ = ["convert_davis", "read_index_png", "category_list"]


def read_index_png(path):
    """(H, W) integer array of an indexed ("P") or grey ("L"/"I") PNG; :class:`ConversionError` otherwise."""
    from PIL import Image

    if not os.path.isfile(path):
        raise ConversionError(f"{path}: annotation PNG does not exist")
    try:
        with Image.open(path) as im:
            mode = im.mode
            if mode not in ("P", "L", "I", "I;16", "1"):
                raise ConversionError(f"{path}: PNG mode {mode} is not indexed; save masks as palette ('P') or "
                                      f"grey ('L') PNGs whose values are object indices")
            arr = np.array(im)
    except ConversionError:
        raise
    except Exception as e:
        raise ConversionError(f"{path}: cannot read the PNG ({e})") from None
    return arr.astype(np.int64)


def category_list(names, categories=None, where="classes"):
    """Category ``[(id, name)]`` for the class names used: ``categories`` (ordered list, ids 1..K) when given,
    else the sorted unique names. A used name missing from ``categories`` raises :class:`ConversionError`."""
    if categories:
        if len(set(categories)) != len(categories):
            raise ConversionError(f"--categories: duplicate names in {list(categories)}")
        missing = sorted(set(names) - set(categories))
        if missing:
            raise ConversionError(f"{where}: class names {missing} are not in --categories {list(categories)}")
        order = list(categories)
    else:
        order = sorted(set(names))
    return [(i + 1, n) for i, n in enumerate(order)]


def convert_davis(annotations_root, image_root, sequences=None, semantics=None, class_name="object",
                  categories=None, void_value=255):
    """Convert DAVIS-style indexed PNG folders into a YouTube-VIS dict.

    Args:
        annotations_root (str): folder of ``<seq>/<frame>.png``.
        image_root (str): folder of ``<seq>/<frame>.jpg`` (any image extension).
        sequences (list[str] or None): sequences to convert (default: every folder of ``annotations_root``).
        semantics (str or dict or None): ``{seq: {object index (str): class name}}`` or a path to such a JSON.
        class_name (str): class of objects without semantics.
        categories (list[str] or None): category order (ids 1..K); default sorted names.
        void_value (int or None): index that is not an object (DAVIS: 255 marks void borders).
    Raises:
        FileNotFoundError: a root folder is missing.
        ConversionError: a missing / non-indexed / wrongly sized PNG, naming the file (the frame).
    """
    for p, what in ((annotations_root, "annotations folder"), (image_root, "image root")):
        if not os.path.isdir(p):
            raise MissingFileError(f"{p}: DAVIS {what} does not exist")
    semantics = _load_semantics(semantics)
    if sequences is None:
        sequences = sorted((d for d in os.listdir(annotations_root)
                            if os.path.isdir(os.path.join(annotations_root, d))), key=natural_key)
        if not sequences:
            raise ConversionError(f"{annotations_root}: no sequence folders")

    # pass 1: read every index map once, keep each object's per-frame RLE (not the maps), collect class names
    videos = []
    names_used = []
    for seq in tqdm.tqdm(sequences, desc="DAVIS sequences", unit="seq"):
        frames, objects, h, w = _read_sequence(annotations_root, image_root, seq, void_value)
        cls = _object_classes(seq, objects, semantics, class_name)
        names_used += [cls[k] for k in sorted(objects)]
        videos.append((seq, frames, objects, cls, h, w))

    # pass 2: the categories are known, build the JSON
    cats = category_list(names_used or [class_name], categories)
    cat_id = {n: i for i, n in cats}
    builder = YTVISBuilder(cats, description="converted from DAVIS-style indexed PNGs")
    for seq, frames, objects, cls, h, w in videos:
        v = builder.add_video([f"{seq}/{n}" for n in frames], h, w)
        for k in sorted(objects):
            for t, (rle, png) in sorted(objects[k].items()):
                builder.add_mask(v, k, t, cat_id[cls[k]], rle, where=png)
    return builder.to_json()


def _load_semantics(semantics):
    """``semantics`` as given (dict or None), or the dict of the JSON file it names."""
    if not isinstance(semantics, (str, os.PathLike)):
        return semantics
    if not os.path.isfile(semantics):
        raise MissingFileError(f"{semantics}: semantics file does not exist")
    with open(semantics, "rb") as f:
        semantics = parse_json_bytes(f.read(), semantics, ConversionError)
    if not isinstance(semantics, dict):
        raise ConversionError("semantics: expected {sequence: {object index: class name}}")
    return semantics


def _read_sequence(annotations_root, image_root, seq, void_value):
    """Read the index PNG of every frame of ``seq`` once. Returns (frame file names, {object index: {t: (RLE,
    PNG path)}}, h, w); every frame and PNG must have the first frame's size."""
    frames = list_frames(os.path.join(image_root, seq))
    objects = {}
    h = w = None
    for t, n in enumerate(frames):
        png = os.path.join(annotations_root, seq, os.path.splitext(n)[0] + ".png")
        if not os.path.isfile(png):
            raise ConversionError(f"{png}: frame {n} of sequence {seq} has no annotation PNG")
        idx = read_index_png(png)
        fh, fw = image_size(os.path.join(image_root, seq, n))
        if idx.shape != (fh, fw):
            raise ConversionError(f"{png}: annotation is {idx.shape[0]}x{idx.shape[1]} but frame {n} is "
                                  f"{fh}x{fw} (height x width)")
        if h is None:
            h, w = fh, fw
        elif (fh, fw) != (h, w):
            raise ConversionError(f"{os.path.join(image_root, seq, n)}: frame size {fh}x{fw} differs from the "
                                  f"sequence's first frame {h}x{w}")
        for k in np.unique(idx).tolist():
            if k == 0 or k == void_value:
                continue
            objects.setdefault(k, {})[t] = (rle_from_mask(idx == k), png)
    return frames, objects, h, w


def _object_classes(seq, objects, semantics, class_name):
    """{object index: class name} of the ``objects`` of ``seq``: from ``semantics`` when given (then every object
    needs a name), else ``class_name``."""
    seq_sem = semantics.get(seq, {}) if isinstance(semantics, dict) else {}
    cls = {}
    for k in sorted(objects):
        name = seq_sem.get(str(k), seq_sem.get(k)) if isinstance(seq_sem, dict) else None
        if semantics is not None and name is None:
            raise ConversionError(f"semantics: sequence {seq!r} object {k} has no class name "
                                  f"(add \"{k}\": NAME under \"{seq}\")")
        cls[k] = str(name) if name is not None else class_name
    return cls
