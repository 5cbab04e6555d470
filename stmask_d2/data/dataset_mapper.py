"""Mappers from YouTube-VIS video dicts to model inputs (formats in docs/ARCHITECTURE.md).

* :class:`YTVISPairDatasetMapper` (training): a key-frame sample -> a frame pair with one shared transform.
* :class:`YTVISTestDatasetMapper` (inference): a video dict -> a lazy frame source, nothing is read.
"""
import copy
import logging
import os

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T

from ..utils.video import FrameReadError, ImageListSource, check_image_pixels
from .ytvis import YTVISFormatError

__all__ = ["YTVISPairDatasetMapper", "YTVISTestDatasetMapper", "sample_reference_frame", "frames_with_instances",
           "BadFrameError"]


class BadFrameError(YTVISFormatError):
    """A training frame could not be read / decoded or its annotation could not be built; the message names the
    dataset, video id, frame index and file, and the fix (one line)."""


_FIXES = {
    "missing": "restore the file or fix file_names / IMAGE_ROOT",
    "read": "re-extract or re-encode the frame",
    "size": "fix the video's height / width in the JSON or resize the frame",
    "annotation": "fix the frame's segmentation in the JSON",
}

logger = logging.getLogger(__name__)


class _FrameProblem(Exception):
    def __init__(self, t, what, kind):
        super().__init__(what)
        self.t, self.what, self.kind = t, what, kind


def _short(e):
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[0][:200] if lines else "no message"


def frames_with_instances(video):
    """Indices of the frames of a video dict with at least one non-crowd instance: the training key frames and the
    frames a reference frame is drawn from (docs/METHOD.md §9)."""
    return [t for t, anns in enumerate(video["annotations"]) if any(a.get("iscrowd", 0) == 0 for a in anns)]


def sample_reference_frame(valid_frames, key_frame, frame_range, rng=np.random):
    """docs/METHOD.md §9: a frame drawn uniformly from ``valid_frames`` at index distance 1..frame_range from
    ``key_frame``; ``key_frame`` itself when there is none."""
    cands = [t for t in valid_frames if 0 < abs(t - key_frame) <= frame_range]
    if not cands:
        return key_frame
    return int(cands[rng.randint(len(cands))])


class YTVISPairDatasetMapper:
    """Training mapper: ``{"video": video dict, "key_frame": t}`` -> one frame pair.

    The reference frame is sampled with :func:`sample_reference_frame` among the annotated frames that have at
    least one (non-crowd) instance. Augmentations are sampled once on the key frame and the same transforms are
    applied to both frames. Per frame, ``Instances`` hold gt_boxes (pixel XYXY), gt_classes (contiguous),
    gt_masks (BitMasks) and gt_ids (track ids); an instance absent in a frame, a crowd instance, or one that
    becomes empty after the transform (Detectron2 ``filter_empty_instances``, same rule on both frames) is not
    in that frame's ``Instances``.

    Output::

        {"video_id", "frame_indices": [i, j], "image": [Tensor(3, H, W) uint8] * 2,
         "instances": [Instances] * 2, "height", "width", "file_names": [two paths]}
    """

    @configurable
    def __init__(self, *, augmentations, image_format="RGB", sampling_frame_range=2,
                 sampling_frame_order="sorted", is_train=True, skip_bad_frames=False, max_frame_pixels=0):
        """
        Args:
            augmentations (list[Augmentation | Transform]): e.g. ResizeShortestEdge + RandomFlip.
            image_format (str): "RGB" or "BGR" (any Detectron2 ``read_image`` format).
            sampling_frame_range (int): max index distance of the reference frame (released STMask: 2).
            sampling_frame_order (str): "sorted" (earlier frame first) or "random" (key frame first).
            skip_bad_frames (bool): a sample whose frames cannot be read returns None (Detectron2's MapDataset
                then draws another sample) and the running count of skipped frames is logged; False raises
                :class:`BadFrameError` (one line naming dataset, video id, frame index, file and fix).
            max_frame_pixels (int): frames with more pixels are refused before decoding (0: no limit).
        """
        if sampling_frame_order not in ("sorted", "random"):
            raise ValueError(f'INPUT.SAMPLING_FRAME_ORDER must be "sorted" or "random", got {sampling_frame_order!r}')
        if sampling_frame_range < 0:
            raise ValueError(f"INPUT.SAMPLING_FRAME_RANGE must be >= 0, got {sampling_frame_range}")
        self.augmentations = T.AugmentationList(augmentations)
        self.image_format = image_format
        self.sampling_frame_range = int(sampling_frame_range)
        self.sampling_frame_order = sampling_frame_order
        self.is_train = is_train
        self.skip_bad_frames = bool(skip_bad_frames)
        self.max_frame_pixels = int(max_frame_pixels)
        self.num_skipped = 0
        logger.info(f"[YTVISPairDatasetMapper] augmentations: {augmentations}; reference frame within "
                    f"+-{sampling_frame_range}, order {sampling_frame_order}")

    @classmethod
    def from_config(cls, cfg, is_train=True):
        return {
            "augmentations": utils.build_augmentation(cfg, is_train),
            "image_format": cfg.INPUT.FORMAT,
            "sampling_frame_range": cfg.INPUT.SAMPLING_FRAME_RANGE,
            "sampling_frame_order": cfg.INPUT.SAMPLING_FRAME_ORDER,
            "is_train": is_train,
            "skip_bad_frames": cfg.DATALOADER.SKIP_BAD_FRAMES,
            "max_frame_pixels": cfg.INPUT.MAX_FRAME_PIXELS,
        }

    def _read(self, video, t):
        path = video["file_names"][t]
        if not os.path.isfile(path):
            raise _FrameProblem(t, "the file does not exist", "missing")
        try:
            check_image_pixels(path, self.max_frame_pixels)
            image = utils.read_image(path, format=self.image_format)
        except FrameReadError as e:
            raise _FrameProblem(t, str(e), "size") from e
        except Exception as e:  # PIL: UnidentifiedImageError / OSError (empty, truncated, not an image)
            if "cannot identify image file" in str(e):  # PIL's message repeats the path
                raise _FrameProblem(t, "cannot decode it (empty, truncated or not an image file)", "read") from e
            raise _FrameProblem(t, f"cannot decode it ({type(e).__name__}: {_short(e)})", "read") from e
        h, w = image.shape[:2]
        if (h, w) != (video["height"], video["width"]):
            raise _FrameProblem(t, f"it is {w}x{h} (width x height) but the JSON says "
                                   f"{video['width']}x{video['height']}", "size")
        return image

    def _instances(self, annos, transforms, image_shape):
        annos = [
            utils.transform_instance_annotations(copy.deepcopy(a), transforms, image_shape)
            for a in annos if a.get("iscrowd", 0) == 0
        ]
        for a in annos:  # PIL-resized masks are read-only arrays; torch wants writable ones
            seg = a.get("segmentation")
            if isinstance(seg, np.ndarray) and not seg.flags.writeable:
                a["segmentation"] = seg.copy()
        instances = utils.annotations_to_instances(annos, image_shape, mask_format="bitmask")
        instances.gt_ids = torch.tensor([a["id"] for a in annos], dtype=torch.int64)
        return utils.filter_empty_instances(instances)

    def __call__(self, sample):
        try:
            return self._map(sample)
        except _FrameProblem as p:
            video = sample["video"]
            files = video.get("file_names") or []
            path = files[p.t] if 0 <= p.t < len(files) else "?"
            where = (f"dataset {video.get('dataset_name', '?')!r}, video id {video.get('video_id')}, frame {p.t}, "
                     f"file {path!r}")
            if not self.skip_bad_frames:
                raise BadFrameError(f"{where}: {p.what}; {_FIXES[p.kind]}, or set DATALOADER.SKIP_BAD_FRAMES True "
                                    f"to skip such frames.") from p.__cause__
            self.num_skipped += 1
            logger.warning(f"Skipped a bad training frame ({where}: {p.what}); {self.num_skipped} skipped so far "
                           f"in this data-loading process (DATALOADER.SKIP_BAD_FRAMES).")
            return None

    def _map(self, sample):
        video, key = sample["video"], int(sample["key_frame"])
        if "annotations" not in video:
            raise ValueError(f"video {video['video_id']} has no annotations; the pair mapper needs a train split.")
        ref = sample_reference_frame(frames_with_instances(video), key, self.sampling_frame_range)
        order = sorted([key, ref]) if self.sampling_frame_order == "sorted" else [key, ref]

        key_image = self._read(video, key)
        aug_input = T.AugInput(key_image)
        transforms = self.augmentations(aug_input)
        images = {key: aug_input.image}
        if ref != key:
            images[ref] = transforms.apply_image(self._read(video, ref))
        image_shape = aug_input.image.shape[:2]

        out_images, out_instances = [], []
        for t in order:
            out_images.append(torch.as_tensor(np.ascontiguousarray(images[t].transpose(2, 0, 1))))
            try:
                out_instances.append(self._instances(video["annotations"][t], transforms, image_shape))
            except Exception as e:  # pycocotools / shapes: a segmentation that does not decode
                raise _FrameProblem(t, f"its annotation cannot be decoded ({type(e).__name__}: {_short(e)})",
                                    "annotation") from e
        return {
            "video_id": video["video_id"],
            "frame_indices": order,
            "image": out_images,
            "instances": out_instances,
            "height": video["height"],
            "width": video["width"],
            "file_names": [video["file_names"][t] for t in order],
        }


class YTVISTestDatasetMapper:
    """Inference mapper: video dict -> ``{"video_id", "height", "width", "length", "frames", "file_names"}``.

    ``frames`` is an :class:`~stmask_d2.utils.video.ImageListSource` (``frames[t]`` reads frame t from disk as
    HWC uint8 in ``image_format``); the mapper itself reads nothing, so memory does not grow with video length.
    """

    @configurable
    def __init__(self, *, image_format="RGB", max_frame_pixels=0):
        """``max_frame_pixels``: frames with more pixels are refused (one line) before decoding; 0: no limit."""
        self.image_format = image_format
        self.max_frame_pixels = int(max_frame_pixels or 0)

    @classmethod
    def from_config(cls, cfg):
        return {"image_format": cfg.INPUT.FORMAT, "max_frame_pixels": cfg.INPUT.MAX_FRAME_PIXELS}

    def __call__(self, video):
        return {
            "video_id": video["video_id"],
            "height": video["height"],
            "width": video["width"],
            "length": video["length"],
            "frames": ImageListSource(video["file_names"], self.image_format, max_pixels=self.max_frame_pixels),
            "file_names": list(video["file_names"]),
        }
