"""Image-level view of a YouTube-VIS split: every annotated frame as one Detectron2 image record.

This lets the frame-level network be trained on / evaluated with Detectron2's standard image tools
(``DatasetMapper``, ``COCOEvaluator``), e.g. the frame-level mask AP of STMask on video frames:

    register_ytvis_frames("synthetic_vis_valid_sub_frames", "synthetic_vis_valid_sub")
    python train_net.py --eval-only ... DATASETS.TEST '("synthetic_vis_valid_sub_frames",)'
"""
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

__all__ = ["ytvis_to_frame_dicts", "register_ytvis_frames"]


def ytvis_to_frame_dicts(video_dicts, frame_stride=1):
    """Turn video dicts (``load_ytvis_json`` output) into Detectron2 image dicts.

    Args:
        video_dicts: list of video dicts with per-frame "annotations".
        frame_stride: keep every ``frame_stride``-th frame of each video.
    Returns:
        list of {"file_name", "height", "width", "image_id", "annotations": [{"bbox" (XYWH_ABS), "bbox_mode",
        "category_id" (contiguous), "segmentation", "iscrowd"}]}; frames without annotations are kept (they count
        false positives) and image ids are consecutive from 1.
    """
    out = []
    for v in video_dicts:
        if "annotations" not in v:
            raise ValueError(
                f"Video {v['video_id']} has no annotations: an image-level view needs an annotated split."
            )
        for t in range(0, v["length"], frame_stride):
            anns = [
                {
                    "bbox": list(a["bbox"]),
                    "bbox_mode": a.get("bbox_mode", BoxMode.XYWH_ABS),
                    "category_id": a["category_id"],
                    "segmentation": a["segmentation"],
                    "iscrowd": a.get("iscrowd", 0),
                }
                for a in v["annotations"][t]
            ]
            out.append(
                {
                    "file_name": v["file_names"][t],
                    "height": v["height"],
                    "width": v["width"],
                    "image_id": len(out) + 1,
                    "annotations": anns,
                }
            )
    return out


def register_ytvis_frames(name, video_dataset_name, frame_stride=1):
    """Register ``name`` as the image-level view of the registered YouTube-VIS dataset ``video_dataset_name``
    (evaluated with ``COCOEvaluator``; metadata classes are shared)."""

    def load():
        dicts = ytvis_to_frame_dicts(DatasetCatalog.get(video_dataset_name), frame_stride)
        src = MetadataCatalog.get(video_dataset_name)
        MetadataCatalog.get(name).set(
            thing_classes=list(src.thing_classes),
            thing_dataset_id_to_contiguous_id={i: i for i in range(len(src.thing_classes))},
        )
        return dicts

    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
    DatasetCatalog.register(name, load)
    MetadataCatalog.get(name).set(evaluator_type="coco", video_dataset=video_dataset_name)
