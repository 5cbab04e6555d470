"""Load YouTube-VIS / OVIS format annotation JSONs into per-video dataset dicts and register them.

The output format is fixed in ``docs/ARCHITECTURE.md`` ("Data: dataset dicts"). In short, one dict per video::

    {"video_id", "height", "width", "length", "file_names": [abs path] * length,
     "annotations": [[{"id", "category_id" (contiguous), "bbox", "bbox_mode", "segmentation", "iscrowd"}, ...]
                     * length]}      # absent for splits without annotations (YTVIS valid/test, OVIS valid/test)
"""
import json
import logging
import os

import pycocotools.mask as mask_util
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode
from detectron2.utils.file_io import PathManager

__all__ = ["load_ytvis_json", "register_ytvis_instances", "YTVISFormatError"]

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
    with PathManager.open(json_file, "r") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise YTVISFormatError(
                f"{json_file}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}); "
                f"the file is probably truncated or not a YouTube-VIS annotation file."
            ) from e


def _category_mapping(json_file, data, dataset_name):
    """Return {dataset id: contiguous id}; set / check the metadata of ``dataset_name``."""
    cats = data.get("categories")
    if not isinstance(cats, list) or not cats:
        raise _err(json_file, "top level", 'missing or empty "categories" list; copy it from the train JSON.')
    for c in cats:
        if not isinstance(c, dict) or "id" not in c or "name" not in c:
            raise _err(json_file, f"category {c!r}", 'every category needs an "id" and a "name".')
    cats = sorted(cats, key=lambda c: c["id"])
    json_ids = [c["id"] for c in cats]
    if len(set(json_ids)) != len(json_ids):
        raise _err(json_file, "categories", f"duplicate category ids {json_ids}.")
    if dataset_name is None:
        return {cid: i for i, cid in enumerate(json_ids)}
    meta = MetadataCatalog.get(dataset_name)
    id_map = getattr(meta, "thing_dataset_id_to_contiguous_id", None)
    if id_map is None:
        id_map = {cid: i for i, cid in enumerate(json_ids)}
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


def _valid_polygons(polys):
    return [p for p in polys if isinstance(p, list) and len(p) % 2 == 0 and len(p) >= 6]


def _frame_segmentations(json_file, where, segs, h, w):
    """Normalise one annotation's per-frame segmentations: None | compressed RLE dict | list of polygons.

    Uncompressed RLEs (integer ``counts``) are converted in one pycocotools call per annotation.
    """
    out = [None] * len(segs)
    uncompressed = []
    for t, s in enumerate(segs):
        if s is None:
            continue
        if isinstance(s, dict):
            if "counts" not in s or "size" not in s:
                raise _err(json_file, f"{where}, frame {t}", 'an RLE needs "counts" and "size".')
            if list(s["size"]) != [h, w]:
                raise _err(json_file, f"{where}, frame {t}",
                           f"RLE size {s['size']} differs from the video size [{h}, {w}] (height, width).")
            if isinstance(s["counts"], list):
                uncompressed.append(t)
            elif isinstance(s["counts"], (str, bytes)):
                counts = s["counts"].decode("ascii") if isinstance(s["counts"], bytes) else s["counts"]
                out[t] = {"size": [h, w], "counts": counts}
            else:
                raise _err(json_file, f"{where}, frame {t}", "RLE counts must be a string or a list of ints.")
        elif isinstance(s, list):
            polys = _valid_polygons(s)
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


def _bbox_from_segmentation(seg, h, w):
    if isinstance(seg, dict):
        rle = {"size": seg["size"], "counts": seg["counts"].encode("ascii")}
    else:
        rle = mask_util.merge(mask_util.frPyObjects(seg, h, w))
    return [float(v) for v in mask_util.toBbox(rle)]


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

    videos, by_id = [], {}
    for i, v in enumerate(data["videos"]):
        vid = v.get("id") if isinstance(v, dict) else None
        where = f"video id {vid}" if vid is not None else f"videos[{i}]"
        if not isinstance(v, dict):
            raise _err(json_file, where, "each video must be an object.")
        for k in ("id", "height", "width", "file_names"):
            if k not in v:
                raise _err(json_file, where, f'missing key "{k}" (needed: id, height, width, file_names).')
        names = v["file_names"]
        if not isinstance(names, list) or not names:
            raise _err(json_file, where, '"file_names" must be a non-empty list of relative frame paths.')
        length = int(v.get("length", len(names)))
        if length != len(names):
            raise _err(json_file, where, f'"length" is {length} but "file_names" has {len(names)} entries.')
        if vid in by_id:
            raise _err(json_file, where, "duplicate video id.")
        rec = {
            "video_id": vid,
            "height": int(v["height"]),
            "width": int(v["width"]),
            "length": length,
            "file_names": [os.path.abspath(os.path.join(image_root, f)) for f in names],
        }
        if has_anns:
            rec["annotations"] = [[] for _ in range(length)]
        by_id[vid] = rec
        videos.append(rec)

    num_inst = num_zero = num_masks = 0
    seen_ann_ids = set()
    for j, a in enumerate(anns or []):
        aid = a.get("id") if isinstance(a, dict) else None
        where = f"annotation id {aid}" if aid is not None else f"annotations[{j}]"
        if not isinstance(a, dict):
            raise _err(json_file, where, "each annotation must be an object.")
        for k in ("id", "video_id", "category_id", "segmentations"):
            if k not in a:
                raise _err(json_file, where, f'missing key "{k}" (needed: id, video_id, category_id, segmentations).')
        where = f"annotation id {aid} (video id {a['video_id']})"
        if aid in seen_ann_ids:
            raise _err(json_file, where, "duplicate annotation id; annotation ids are track ids and must be unique.")
        seen_ann_ids.add(aid)
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
        bboxes = a.get("bboxes") or [None] * length
        if len(bboxes) != length:
            raise _err(json_file, where, f'"bboxes" has {len(bboxes)} entries but the video has {length} frames.')
        segs = _frame_segmentations(json_file, where, segs, h, w)
        cat = id_map[a["category_id"]]
        iscrowd = int(a.get("iscrowd", 0) or 0)
        present = False
        for t, seg in enumerate(segs):
            if seg is None:
                continue
            box = bboxes[t]
            if box is None:
                box = _bbox_from_segmentation(seg, h, w)
            elif len(box) != 4:
                raise _err(json_file, f"{where}, frame {t}", f"bbox must be [x, y, w, h], got {box}.")
            if box[2] <= 0 or box[3] <= 0:
                num_zero += 1
                continue
            video["annotations"][t].append({
                "id": aid, "category_id": cat, "bbox": [float(x) for x in box], "bbox_mode": BoxMode.XYWH_ABS,
                "segmentation": seg, "iscrowd": iscrowd,
            })
            num_masks += 1
            present = True
        num_inst += present

    if num_zero:
        logger.warning(f"{json_file}: dropped {num_zero} per-frame instances with a zero-area box "
                       f"(the frames and the instances' other frames are kept).")
    logger.info(
        f"Loaded {len(videos)} videos, {num_inst} instances ({num_masks} masks) from {json_file}"
        + ("" if has_anns else " (no annotations)")
    )
    return videos


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
    DatasetCatalog.register(name, lambda: load_ytvis_json(json_file, image_root, name))
    MetadataCatalog.get(name).set(json_file=json_file, image_root=image_root, evaluator_type="ytvis", **metadata)
