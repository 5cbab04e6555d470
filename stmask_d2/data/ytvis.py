"""Load YouTube-VIS / OVIS format annotation JSONs into per-video dataset dicts and register them.

The output format is fixed in ``docs/ARCHITECTURE.md`` ("Data: dataset dicts"). In short, one dict per video::

    {"video_id", "height", "width", "length", "file_names": [abs path] * length,
     "annotations": [[{"id", "category_id" (contiguous), "bbox", "bbox_mode", "segmentation", "iscrowd"}, ...]
                     * length]}      # absent for splits without annotations (YTVIS valid/test, OVIS valid/test)
"""
import json
import logging
import os

import numpy as np
import pycocotools.mask as mask_util
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode
from detectron2.utils.file_io import PathManager

from ..utils.json_io import parse_json_bytes
from ..utils.categories import dataset_to_contiguous_id
from ..utils.rle import rle_bbox, rle_total

__all__ = ["load_ytvis_json", "register_ytvis_instances", "YTVISFormatError", "check_ytvis_files", "rle_total"]

logger = logging.getLogger(__name__)


class YTVISFormatError(ValueError):
    """A YouTube-VIS format annotation file is malformed; the message names the file, the record and the fix."""


def _err(json_file, where, what):
    return YTVISFormatError(f"{json_file}: {where}: {what}")


def _read_json(json_file):
    if not PathManager.exists(json_file):
        raise FileNotFoundError(
            f"YouTube-VIS annotation file {json_file!r} does not exist. Check the path (builtin splits live under "
            f"$DETECTRON2_DATASETS, see datasets/README.md)."
        )
    with PathManager.open(json_file, "rb") as f:
        raw = f.read()
    return parse_json_bytes(
        raw, json_file, YTVISFormatError, "; the file is probably truncated or not a YouTube-VIS annotation file."
    )


def _category_mapping(json_file, data, dataset_name):
    """Return {dataset id: contiguous id}; set / check the metadata of ``dataset_name``."""
    cats = data.get("categories")
    if not isinstance(cats, list) or not cats:
        raise _err(json_file, "top level", 'missing or empty "categories" list; copy it from the train JSON.')
    for c in cats:
        if not isinstance(c, dict) or "id" not in c or "name" not in c:
            raise _err(json_file, f"category {c!r}", 'every category needs an "id" and a "name".')
        _check_id(json_file, f"category {c!r}", "id", c["id"])
    cats = sorted(cats, key=lambda c: c["id"])
    json_ids = [c["id"] for c in cats]
    if len(set(json_ids)) != len(json_ids):
        raise _err(json_file, "categories", f"duplicate category ids {json_ids}.")
    if dataset_name is None:
        return dataset_to_contiguous_id(cats)
    meta = MetadataCatalog.get(dataset_name)
    id_map = getattr(meta, "thing_dataset_id_to_contiguous_id", None)
    if id_map is None:
        id_map = dataset_to_contiguous_id(cats)
        meta.set(thing_classes=[c["name"] for c in cats], thing_dataset_id_to_contiguous_id=id_map)
        return id_map
    id_map = {int(k): v for k, v in id_map.items()}
    missing = sorted(set(json_ids) - set(id_map))
    if missing:
        raise _err(
            json_file, "categories",
            f"category ids {missing} are not in the metadata of dataset {dataset_name!r} "
            f"({sorted(id_map)}); register the file under another name or fix its categories.",
        )
    classes = getattr(meta, "thing_classes", None)
    if classes is not None:
        differ = [(c["id"], c["name"], classes[id_map[c["id"]]]) for c in cats
                  if c["name"].lower() != str(classes[id_map[c["id"]]]).lower()]
        if differ:
            logger.warning(
                f"{json_file}: category names differ from the metadata of {dataset_name!r} "
                f"(id, json name, metadata name): {differ[:5]}{' ...' if len(differ) > 5 else ''}"
            )
    return id_map


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)


def _check_id(json_file, where, key, v):
    if not _is_int(v):
        raise _err(json_file, where, f'"{key}" must be an integer, got {json.dumps(v)[:60]}.')


def _valid_polygons(polys):
    return [p for p in polys if isinstance(p, list) and len(p) % 2 == 0 and len(p) >= 6
            and all(_is_num(x) for x in p)]


def _frame_segmentations(json_file, where, segs, h, w, stats=None):
    """Normalise one annotation's per-frame segmentations: None | compressed RLE dict | list of polygons.

    Uncompressed RLEs (integer ``counts``) are converted in one pycocotools call per annotation. RLE runs must
    not cover more than h * w pixels (error); shorter ones leave the rest background (counted in
    ``stats["short_rle"]``); polygons with fewer than 3 points are dropped (``stats["bad_polygons"]``).
    """
    stats = stats if stats is not None else {}
    out = [None] * len(segs)
    uncompressed = []
    for t, s in enumerate(segs):
        if s is None:
            continue
        if isinstance(s, dict):
            counts = _check_rle(json_file, f"{where}, frame {t}", s, h, w, stats)
            if isinstance(counts, list):
                uncompressed.append(t)
            else:
                out[t] = {"size": [h, w], "counts": counts}
        elif isinstance(s, list):
            polys = _valid_polygons(s)
            if len(polys) < len(s):
                stats["bad_polygons"] = stats.get("bad_polygons", 0) + len(s) - len(polys)
            out[t] = polys if polys else None  # degenerate polygons: instance absent in that frame
        else:
            raise _err(json_file, f"{where}, frame {t}",
                       f"segmentation must be null, an RLE dict or a list of polygons, got {type(s).__name__}.")
    if uncompressed:
        try:
            rles = mask_util.frPyObjects([segs[t] for t in uncompressed], h, w)
        except Exception as e:  # pycocotools raises bare Exceptions / TypeErrors on bad counts
            raise _err(json_file, where, f"cannot read the uncompressed RLE counts ({e}).") from e
        for t, r in zip(uncompressed, rles):
            out[t] = {"size": [h, w], "counts": r["counts"].decode("ascii")}
    return out


def _check_rle(json_file, where, s, h, w, stats):
    """Check one frame's RLE dict ``s`` against the video size (h, w) and return its counts (list or str); an RLE
    covering fewer than h * w pixels is counted in ``stats["short_rle"]``."""
    if "counts" not in s or "size" not in s:
        raise _err(json_file, where, 'an RLE needs "counts" and "size".')
    if not isinstance(s["size"], list) or list(s["size"]) != [h, w]:
        raise _err(json_file, where, f"RLE size {s['size']} differs from the video size [{h}, {w}] (height, width).")
    counts = s["counts"]
    if isinstance(counts, list) and not all(_is_int(c) for c in counts):
        raise _err(json_file, where, "uncompressed RLE counts must be a list of integers.")
    if not isinstance(counts, (list, str)):
        raise _err(json_file, where, "RLE counts must be a string or a list of ints.")
    total = rle_total(counts)
    if total < 0 or total > h * w:
        raise _err(json_file, where,
                   f"RLE counts cover {'an invalid number of' if total < 0 else total} pixels but the mask "
                   f"has {h}x{w} = {h * w}; re-encode the mask with pycocotools.mask.encode.")
    if total < h * w:
        stats["short_rle"] = stats.get("short_rle", 0) + 1
    return counts


def load_ytvis_json(json_file, image_root, dataset_name=None):
    """Load a YouTube-VIS format JSON (YTVIS 2019/2021, OVIS, or custom) into per-video dataset dicts.

    Args:
        json_file (str): annotation file (train format, or valid/test format without annotations).
        image_root (str): folder that the videos' relative ``file_names`` are joined to.
        dataset_name (str or None): when given, ``MetadataCatalog.get(dataset_name)`` gets ``thing_classes`` and
            ``thing_dataset_id_to_contiguous_id`` from the JSON categories unless they are already set (like
            Detectron2's ``load_coco_json``); already-set metadata defines the contiguous ids.

    Returns:
        list[dict]: one dict per video in the ``docs/ARCHITECTURE.md`` format. ``"annotations"`` is present only
        when the file has annotations (a missing key or ``null`` both mean "no annotations"). Accepted
        segmentations: compressed RLE, uncompressed RLE (converted to compressed), polygons, null. A null bbox
        with a mask is derived from the mask.

    Filtering (each counted in the log):
        * instances whose box has zero width or height in a frame are dropped from that frame only (the frame
          and the other instances in it are kept; the instance stays in the frames where it has area);
        * polygons with fewer than 3 points are dropped (instance absent in that frame).

    Raises:
        FileNotFoundError: the JSON file does not exist.
        YTVISFormatError (a ValueError): malformed JSON or records; the message names the file, the video or
            annotation id and what to fix.
    """
    data = _read_json(json_file)
    if not isinstance(data, dict):
        raise _err(json_file, "top level", "expected a JSON object with videos / annotations / categories.")
    if not isinstance(data.get("videos"), list):
        raise _err(json_file, "top level", 'missing "videos" list; is this a YouTube-VIS format file?')
    id_map = _category_mapping(json_file, data, dataset_name)
    anns = data.get("annotations")  # absent (YTVIS valid/test) or null (OVIS valid/test)
    has_anns = anns is not None
    if has_anns and not isinstance(anns, list):
        raise _err(json_file, "top level", '"annotations" must be a list or null.')

    by_id = {}
    for i, v in enumerate(data["videos"]):
        rec = _load_video(json_file, i, v, image_root, has_anns)
        if rec["video_id"] in by_id:
            raise _err(json_file, _where(v, i, "video"), "duplicate video id.")
        by_id[rec["video_id"]] = rec

    stats = {"instances": 0, "zero_area": 0, "masks": 0}  # + "short_rle", "bad_polygons" from the segmentations
    seen_ann_ids = set()
    for j, a in enumerate(anns or []):
        where = _check_record(json_file, j, a, "annotation", ("id", "video_id", "category_id", "segmentations"))
        _check_id(json_file, where, "video_id", a["video_id"])
        _check_id(json_file, where, "category_id", a["category_id"])
        where = f"annotation id {a['id']} (video id {a['video_id']})"
        if a["id"] in seen_ann_ids:
            raise _err(json_file, where, "duplicate annotation id; annotation ids are track ids and must be unique.")
        seen_ann_ids.add(a["id"])
        _add_annotation(json_file, where, a, by_id, id_map, stats)
    videos = list(by_id.values())
    _log_load_summary(json_file, videos, has_anns, stats)
    return videos


def _where(rec, index, kind):
    """How an error names record ``index`` of the ``kind`` list ("video id 3", or "videos[0]" without an id)."""
    rid = rec.get("id") if isinstance(rec, dict) else None
    return f"{kind} id {rid}" if rid is not None else f"{kind}s[{index}]"


def _check_record(json_file, index, rec, kind, keys):
    """Check that record ``index`` of the ``kind`` list is an object with the ``keys`` and an integer "id";
    returns how errors name it (see :func:`_where`)."""
    where = _where(rec, index, kind)
    if not isinstance(rec, dict):
        raise _err(json_file, where, f"each {kind} must be an object.")
    for k in keys:
        if k not in rec:
            raise _err(json_file, where, f'missing key "{k}" (needed: {", ".join(keys)}).')
    _check_id(json_file, where, "id", rec["id"])
    return where


def _load_video(json_file, i, v, image_root, has_anns):
    """The dataset dict of ``videos[i]`` (without annotations yet: one empty list per frame when ``has_anns``)."""
    where = _check_record(json_file, i, v, "video", ("id", "height", "width", "file_names"))
    for k in ("height", "width"):
        if not _is_int(v[k]) or v[k] <= 0:
            raise _err(json_file, where, f'"{k}" must be a positive integer (pixels), got '
                                         f'{json.dumps(v[k])[:60]}.')
    names = v["file_names"]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise _err(json_file, where, '"file_names" must be a non-empty list of relative frame paths (strings).')
    length = v.get("length", len(names))
    if not _is_int(length):
        raise _err(json_file, where, f'"length" must be an integer, got {json.dumps(length)[:60]}.')
    if length != len(names):
        raise _err(json_file, where, f'"length" is {length} but "file_names" has {len(names)} entries.')
    rec = {
        "video_id": v["id"],
        "height": int(v["height"]),
        "width": int(v["width"]),
        "length": length,
        "file_names": [os.path.abspath(os.path.join(image_root, f)) for f in names],
    }
    if has_anns:
        rec["annotations"] = [[] for _ in range(length)]
    return rec


def _add_annotation(json_file, where, a, by_id, id_map, stats):
    """Append annotation ``a`` (keys and ids already checked) to the frames of its video in ``by_id`` where it
    has a mask and a box of non-zero area; counts "instances", "zero_area", "masks" (and the segmentation
    statistics) in ``stats``."""
    video = by_id.get(a["video_id"])
    if video is None:
        raise _err(json_file, where, "video_id is not in the videos list.")
    if a["category_id"] not in id_map:
        raise _err(json_file, where,
                   f"unknown category_id {a['category_id']}; known ids: {sorted(id_map)}. Add it to categories.")
    length, h, w = video["length"], video["height"], video["width"]
    segs = a["segmentations"]
    if not isinstance(segs, list) or len(segs) != length:
        n = len(segs) if isinstance(segs, list) else type(segs).__name__
        raise _err(json_file, where,
                   f'"segmentations" has {n} entries but the video has {length} frames; '
                   f"it needs one entry (RLE, polygons or null) per frame.")
    bboxes = _frame_bboxes(json_file, where, a.get("bboxes"), length)
    segs = _frame_segmentations(json_file, where, segs, h, w, stats)
    iscrowd = a.get("iscrowd", 0) or 0
    if iscrowd not in (0, 1):
        raise _err(json_file, where, f'"iscrowd" must be 0 or 1, got {json.dumps(iscrowd)[:60]}.')
    present = False
    for t, seg in enumerate(segs):
        if seg is None:
            continue
        box = bboxes[t] if bboxes[t] is not None else rle_bbox(seg, h, w)
        if box[2] <= 0 or box[3] <= 0:
            stats["zero_area"] += 1
            continue
        video["annotations"][t].append({
            "id": a["id"], "category_id": id_map[a["category_id"]], "bbox": [float(x) for x in box],
            "bbox_mode": BoxMode.XYWH_ABS, "segmentation": seg, "iscrowd": iscrowd,
        })
        stats["masks"] += 1
        present = True
    stats["instances"] += present


def _frame_bboxes(json_file, where, bboxes, length):
    """The annotation's per-frame boxes: ``length`` entries, each [x, y, w, h] (4 numbers) or None (None: all)."""
    if bboxes is None:
        return [None] * length
    if not isinstance(bboxes, list):
        raise _err(json_file, where, f'"bboxes" must be a list with one [x, y, w, h] or null per frame, got '
                                     f'{json.dumps(bboxes)[:60]}.')
    if len(bboxes) != length:
        raise _err(json_file, where, f'"bboxes" has {len(bboxes)} entries but the video has {length} frames.')
    for t, box in enumerate(bboxes):
        if box is not None and (not isinstance(box, list) or len(box) != 4 or not all(_is_num(x) for x in box)):
            raise _err(json_file, f"{where}, frame {t}",
                       f"bbox must be null or [x, y, w, h] (4 numbers), got {json.dumps(box)[:60]}.")
    return bboxes


def _log_load_summary(json_file, videos, has_anns, stats):
    """Warn about what the loader dropped or filled in (``stats``) and log the counts."""
    if stats.get("bad_polygons"):
        logger.warning(f"{json_file}: dropped {stats['bad_polygons']} polygons with fewer than 3 points (an "
                       f"instance without another polygon in that frame is absent there).")
    if stats.get("short_rle"):
        logger.warning(f"{json_file}: {stats['short_rle']} RLE masks have counts covering fewer pixels than the "
                       f"frame; the rest of those masks is taken as background.")
    if stats["zero_area"]:
        logger.warning(f"{json_file}: dropped {stats['zero_area']} per-frame instances with a zero-area box "
                       f"(the frames and the instances' other frames are kept).")
    logger.info(
        f"Loaded {len(videos)} videos, {stats['instances']} instances ({stats['masks']} masks) from {json_file}"
        + ("" if has_anns else " (no annotations)")
    )


def register_ytvis_instances(name, metadata, json_file, image_root):
    """Register a YouTube-VIS format dataset under ``name`` (DatasetCatalog + MetadataCatalog).

    Nothing is read until ``DatasetCatalog.get(name)``. Registering the same name again with the same
    json_file / image_root is a no-op; with different ones it raises (choose another name).

    Args:
        name (str): dataset name, e.g. "my_vis_train".
        metadata (dict): extra metadata, e.g. ``{"thing_classes": [...], "thing_dataset_id_to_contiguous_id":
            {...}}``; may be empty, then the classes come from the JSON on first load.
        json_file (str), image_root (str): annotation file and frame folder.
    """
    assert isinstance(name, str), name
    assert isinstance(json_file, (str, os.PathLike)), json_file
    assert isinstance(image_root, (str, os.PathLike)), image_root
    json_file, image_root = os.fspath(json_file), os.fspath(image_root)
    if name in DatasetCatalog.list():
        meta = MetadataCatalog.get(name)
        if getattr(meta, "json_file", None) == json_file and getattr(meta, "image_root", None) == image_root:
            return
        raise ValueError(
            f"Dataset {name!r} is already registered with json_file={getattr(meta, 'json_file', None)!r}, "
            f"image_root={getattr(meta, 'image_root', None)!r}; register {json_file!r} under another name."
        )
    DatasetCatalog.register(name, _CachedLoader(name, json_file, image_root))
    MetadataCatalog.get(name).set(json_file=json_file, image_root=image_root, evaluator_type="ytvis", **metadata)


class _CachedLoader:
    """``load_ytvis_json`` for ``DatasetCatalog``, parsed once per process while the file is unchanged: the
    start-up validation of train_net.py and the data loader then share one parse."""

    def __init__(self, name, json_file, image_root):
        self.name, self.json_file, self.image_root = name, json_file, image_root
        self._key = self._videos = None

    def __call__(self):
        try:
            st = os.stat(self.json_file)
            key = (st.st_mtime_ns, st.st_size)
        except OSError:
            key = None
        if key is None or key != self._key:
            self._videos = load_ytvis_json(self.json_file, self.image_root, self.name)
            self._key = key
        return self._videos


def check_ytvis_files(videos, dataset_name, max_pixels=0):
    """Check that every frame file of ``videos`` (``load_ytvis_json`` output) exists and is not empty, and that
    each video's first frame has the size given in the JSON (only the image header is read). Raises
    :class:`YTVISFormatError` with one line naming the dataset, video id, frame index, file and the fix.
    ``max_pixels``: also refuse frames larger than ``INPUT.MAX_FRAME_PIXELS`` (0: no limit)."""
    from PIL import Image

    skip = "or set DATASETS.CHECK_FILES False to skip this check"
    for v in videos:
        for t, path in enumerate(v["file_names"]):
            where = f"dataset {dataset_name!r}, video id {v['video_id']}, frame {t}, file {path!r}"
            try:
                size = os.stat(path).st_size
            except OSError:
                raise YTVISFormatError(f"{where}: the file does not exist; restore it or fix file_names / IMAGE_ROOT, "
                                       f"{skip}.") from None
            if size == 0:
                raise YTVISFormatError(f"{where}: the file is empty (0 bytes); re-extract the frame, {skip}.")
            if t:
                continue
            try:
                with Image.open(path) as im:
                    w, h = im.size
            except Exception as e:
                raise YTVISFormatError(f"{where}: not a readable image ({type(e).__name__}); re-extract the frame, "
                                       f"{skip}.") from None
            if (h, w) != (v["height"], v["width"]):
                raise YTVISFormatError(
                    f"{where}: the frame is {w}x{h} (width x height) but the JSON says {v['width']}x{v['height']}; "
                    f"fix the video's height / width in the JSON or resize the frames, {skip}.")
            if max_pixels and h * w > max_pixels:
                raise YTVISFormatError(
                    f"{where}: the frame is {w}x{h} = {h * w} pixels, more than INPUT.MAX_FRAME_PIXELS = {max_pixels}; "
                    f"downscale the frames or raise INPUT.MAX_FRAME_PIXELS (0 disables the limit).")
