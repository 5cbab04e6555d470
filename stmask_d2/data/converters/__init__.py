"""Converters of common video annotation formats into YouTube-VIS JSON (CLI: ``python -m stmask_d2.data.convert``).

* :func:`convert_coco_video`: COCO per-frame annotations with a track id (CVAT's video export).
* :func:`convert_mots`: MOTS text files (KITTI-MOTS / MOTSChallenge).
* :func:`convert_davis`: DAVIS-style indexed PNG folders.
* :func:`convert_instance_pngs`: folders of per-instance PNGs.

Each returns the YouTube-VIS dict (write it with :func:`write_ytvis_json`) and raises :class:`ConversionError`
(a ``ValueError``) with one line naming the file and the line / frame for malformed sources.
"""
from .coco_video import convert_coco_video
from .common import ConversionError, YTVISBuilder, write_ytvis_json
from .davis import convert_davis
from .instance_pngs import convert_instance_pngs
from .mots import KITTI_MOTS_CLASSES, convert_mots

__all__ = ["ConversionError", "YTVISBuilder", "write_ytvis_json", "convert_coco_video", "convert_mots",
           "convert_davis", "convert_instance_pngs", "KITTI_MOTS_CLASSES"]
