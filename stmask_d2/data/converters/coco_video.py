"""COCO-style per-frame annotations with a track id (CVAT's "COCO 1.0" export of a video task) -> YouTube-VIS.

Input: one COCO JSON whose ``images`` are the frames and whose ``annotations`` carry a track id in
``attributes.track_id`` (CVAT), ``track_id`` or ``instance_id``. Segmentations are polygons, compressed or
uncompressed RLE (pycocotools rasterises polygons exactly as the evaluator does).

Videos: images are grouped by their ``video_id`` key when every image has one, otherwise by the folder of their
``file_name`` (a flat export is one video). Frames are ordered by ``frame_id`` when every image has one, otherwise
by file name (natural order: ``2.jpg`` before ``10.jpg``). Class names and ids come from the source's
``categories``.
"""
import os
from collections import defaultdict

import pycocotools.mask as mask_util
import tqdm

from ...utils.json_io import parse_json_bytes
from ...utils.rle import rle_to_json
from ...utils.errors import MissingFileError
from .common import ConversionError, YTVISBuilder, check_rle_string, image_size, natural_key

__all__ = ["convert_coco_video", "TRACK_ID_KEYS"]

TRACK_ID_KEYS = ("attributes.track_id", "track_id", "instance_id")


def _track_id(a):
    attrs = a.get("attributes")
    if isinstance(attrs, dict) and attrs.get("track_id") is not None:
        return attrs["track_id"]
    for k in ("track_id", "instance_id"):
        if a.get(k) is not None:
            return a[k]
    return None


def _to_rle(seg, h, w, where):
    """Compressed RLE dict of one COCO segmentation (polygons, RLE) at (h, w); None for an empty one."""
    if isinstance(seg, list):
        polys = [p for p in seg if isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0]
        if len(polys) != len(seg) or any(not all(isinstance(x, (int, float)) for x in p) for p in polys):
            raise ConversionError(f"{where}: polygons must be lists of at least 3 (x, y) number pairs")
        if not polys:
            return None
        rle = mask_util.merge(mask_util.frPyObjects(polys, h, w))
    elif isinstance(seg, dict):
        if "counts" not in seg or "size" not in seg:
            raise ConversionError(f"{where}: an RLE segmentation needs 'counts' and 'size'")
        if list(seg["size"]) != [h, w]:
            raise ConversionError(f"{where}: RLE size {seg['size']} differs from the image size [{h}, {w}]")
        if isinstance(seg["counts"], list):
            if any(not isinstance(c, int) or c < 0 for c in seg["counts"]) or sum(seg["counts"]) != h * w:
                raise ConversionError(f"{where}: uncompressed RLE counts must be non-negative integers summing to "
                                      f"{h}*{w}={h * w}")
            rle = mask_util.frPyObjects(seg, h, w)
        else:
            counts = check_rle_string(seg["counts"], h, w, where)
            rle = {"size": [h, w], "counts": counts.encode("ascii")}
    else:
        raise ConversionError(f"{where}: segmentation must be polygons or an RLE dict, got {type(seg).__name__}")
    return rle_to_json(rle)


def convert_coco_video(json_file, image_root, check_images=True):
    """Convert a COCO JSON with per-annotation track ids into a YouTube-VIS dict.

    Args:
        json_file (str): the COCO file (CVAT "COCO 1.0" export of a video task, or any COCO file whose annotations
            have ``attributes.track_id`` / ``track_id`` / ``instance_id``).
        image_root (str): folder the images' ``file_name`` are relative to; the output keeps these paths, so the
            same folder is the IMAGE_ROOT of ``--register-ytvis``.
        check_images (bool): check that every frame file exists and has the size given in ``images``.
    Returns:
        dict: the YouTube-VIS JSON (see :mod:`stmask_d2.data.converters.common`).
    Raises:
        FileNotFoundError: ``json_file`` is missing.
        ConversionError: malformed source; one line naming the file and the annotation / frame.
    """
    data = _read_coco(json_file)
    builder = _make_builder(json_file, data)
    images = _index_images(json_file, data)
    frame_of = _add_videos(builder, json_file, images, image_root, check_images)
    for i, a in enumerate(tqdm.tqdm(data["annotations"], desc="annotations", unit="ann",
                                    disable=len(data["annotations"]) < 2000)):
        _add_annotation(builder, json_file, i, a, images, frame_of)
    return builder.to_json()


def _read_coco(json_file):
    """The COCO dict of ``json_file``, with its "images", "annotations" and "categories" lists checked."""
    if not os.path.isfile(json_file):
        raise MissingFileError(f"{json_file}: COCO annotation file does not exist")
    with open(json_file, "rb") as f:
        data = parse_json_bytes(f.read(), json_file, ConversionError)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
            or not isinstance(data.get("annotations"), list) or not isinstance(data.get("categories"), list):
        raise ConversionError(f"{json_file}: top level: a COCO file needs 'images', 'annotations' and "
                              f"'categories' lists")
    return data


def _make_builder(json_file, data):
    """The :class:`YTVISBuilder` of the source's categories (checked: integer ids, names, not empty, unique)."""
    cats = []
    for i, c in enumerate(data["categories"]):
        if not isinstance(c, dict) or not isinstance(c.get("id"), int) or not isinstance(c.get("name"), str):
            raise ConversionError(f"{json_file}: categories[{i}]: needs an integer 'id' and a 'name'")
        cats.append((c["id"], c["name"]))
    if not cats:
        raise ConversionError(f"{json_file}: categories: the list is empty")
    try:
        return YTVISBuilder(cats, description=f"converted from COCO video annotations {json_file}")
    except ValueError as e:
        raise ConversionError(f"{json_file}: categories: {e}") from None


def _index_images(json_file, data):
    """{image id: image dict} of the source's images (each with id, file_name, height, width; ids unique)."""
    images = {}
    for i, im in enumerate(data["images"]):
        if not isinstance(im, dict) or any(k not in im for k in ("id", "file_name", "height", "width")):
            raise ConversionError(f"{json_file}: images[{i}]: needs 'id', 'file_name', 'height' and 'width'")
        _check_image_fields(json_file, i, im)
        if im["id"] in images:
            raise ConversionError(f"{json_file}: images[{i}] ({im['file_name']}): duplicate image id {im['id']}")
        images[im["id"]] = im
    if not images:
        raise ConversionError(f"{json_file}: images: the list is empty")
    return images


def _is_id(v):
    """An id of a COCO file: an integer or a non-empty string (hashable, sortable among its kind)."""
    return (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, str) and v != "")


def _check_image_fields(json_file, i, im):
    where = f"{json_file}: images[{i}]"
    if not _is_id(im["id"]):
        raise ConversionError(f"{where}: 'id' must be an integer or a string, got {im['id']!r}")
    if not isinstance(im["file_name"], str) or not im["file_name"]:
        raise ConversionError(f"{where}: 'file_name' must be a non-empty string, got {im['file_name']!r}")
    for k in ("height", "width"):
        v = im[k]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v != int(v) or v < 1:
            raise ConversionError(f"{where} ({im['file_name']}): '{k}' must be a positive integer, got {v!r}")
    if "video_id" in im and not _is_id(im["video_id"]):
        raise ConversionError(f"{where} ({im['file_name']}): 'video_id' must be an integer or a string, got "
                              f"{im['video_id']!r}")
    f = im.get("frame_id", 0)
    if isinstance(f, bool) or not isinstance(f, (int, float)):
        raise ConversionError(f"{where} ({im['file_name']}): 'frame_id' must be a number, got {f!r}")


def _add_videos(builder, json_file, images, image_root, check_images):
    """Group ``images`` into videos (by ``video_id`` or folder), order their frames (by ``frame_id`` or natural
    file name), check their sizes and add them to ``builder``; returns {image id: (video index, frame index)}."""
    by_video_key = all("video_id" in im for im in images.values())
    by_frame_id = all("frame_id" in im for im in images.values())
    groups = defaultdict(list)
    for im in images.values():
        groups[im["video_id"] if by_video_key else os.path.dirname(im["file_name"])].append(im)
    frame_of = {}
    for key in sorted(groups, key=natural_key):
        ims = groups[key]
        ims.sort(key=(lambda im: im["frame_id"]) if by_frame_id else (lambda im: natural_key(im["file_name"])))
        h, w = _video_size(json_file, key, ims, image_root, check_images)
        v = builder.add_video([im["file_name"] for im in ims], h, w)
        for t, im in enumerate(ims):
            frame_of[im["id"]] = (v, t)
    return frame_of


def _video_size(json_file, key, ims, image_root, check_images):
    """(h, w) of a video's frames ``ims``: every frame must have the first one's size (in the COCO file, and on
    disk when ``check_images``)."""
    h, w = int(ims[0]["height"]), int(ims[0]["width"])
    for im in ims:
        if (int(im["height"]), int(im["width"])) != (h, w):
            raise ConversionError(f"{json_file}: frame {im['file_name']}: size {im['height']}x{im['width']} "
                                  f"differs from the video's first frame {h}x{w}")
    if check_images:
        for im in tqdm.tqdm(ims, desc=f"check frames of video {key or '.'}", unit="frame", leave=False,
                            disable=len(ims) < 200):
            size = image_size(os.path.join(image_root, im["file_name"]))
            if size != (h, w):
                raise ConversionError(f"{os.path.join(image_root, im['file_name'])}: image is {size[0]}x"
                                      f"{size[1]} but the COCO file says {h}x{w} (height x width)")
    return h, w


def _add_annotation(builder, json_file, i, a, images, frame_of):
    """Add annotation ``i`` (``a``) of the source to its track and frame in ``builder`` (empty masks skipped)."""
    if not isinstance(a, dict) or any(k not in a for k in ("image_id", "category_id", "segmentation")):
        raise ConversionError(f"{json_file}: annotations[{i}]: needs 'image_id', 'category_id' and "
                              f"'segmentation'")
    for k in ("image_id", "category_id"):
        if not _is_id(a[k]):
            raise ConversionError(f"{json_file}: annotations[{i}] (id {a.get('id')}): '{k}' must be an integer or "
                                  f"a string, got {a[k]!r}")
    im = images.get(a["image_id"])
    if im is None:
        raise ConversionError(f"{json_file}: annotations[{i}] (id {a.get('id')}): unknown image_id "
                              f"{a['image_id']}")
    where = f"{json_file}: annotations[{i}] (id {a.get('id')}, frame {im['file_name']})"
    tid = _track_id(a)
    if tid is None:
        raise ConversionError(f"{where}: no track id ({' / '.join(TRACK_ID_KEYS)}); export the video task "
                              f"with tracks (CVAT: annotate with tracks, export 'COCO 1.0')")
    if isinstance(tid, float) and tid.is_integer():
        tid = int(tid)
    if not _is_id(tid):
        raise ConversionError(f"{where}: the track id must be an integer or a string, got {tid!r}")
    v, t = frame_of[a["image_id"]]
    # CVAT exports its mask shapes as RLE with iscrowd=1: they are ordinary instances, kept as such
    rle = _to_rle(a["segmentation"], int(im["height"]), int(im["width"]), where)
    if rle is not None:
        builder.add_mask(v, tid, t, a["category_id"], rle, where)
