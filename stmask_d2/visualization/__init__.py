"""Dataset and results visualisation (library side of ``tools/visualize_data.py`` and
``tools/visualize_json_results.py``).

* :func:`make_contact_sheet`: a grid of annotated frames with a title and an optional text panel.
* :func:`visualize_dataset`: ground-truth tracks of a registered dataset drawn with the demo's palette and labels,
  one contact sheet per video (optionally an mp4).
* :func:`visualize_results`: predictions beside the ground truth per video, each predicted track's video IoU
  against its best ground-truth track and the per-video AP (the evaluator's own IoU / AP code).
"""
from .contact_sheet import make_contact_sheet, sample_frames, write_image, write_video  # noqa: F401
from .data import gt_instances, video_name, visualize_dataset  # noqa: F401
from .results import per_video_report, visualize_results  # noqa: F401

__all__ = ["make_contact_sheet", "sample_frames", "write_image", "write_video", "gt_instances", "video_name",
           "visualize_dataset", "per_video_report", "visualize_results"]
