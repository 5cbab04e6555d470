"""Mappers from YouTube-VIS video dicts to model inputs (formats in docs/ARCHITECTURE.md).

* :class:`YTVISPairDatasetMapper` (training): a key-frame sample -> a frame pair with one shared transform.
* :class:`YTVISTestDatasetMapper` (inference): a video dict -> a lazy frame source, nothing is read.
"""
import copy
import logging

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T

from ..utils.video import ImageListSource

__all__ = ["YTVISPairDatasetMapper", "YTVISTestDatasetMapper", "sample_reference_frame"]

logger = logging.getLogger(__name__)


def _frames_with_instances(video):
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
                 sampling_frame_order="sorted", is_train=True):
        """
        Args:
            augmentations (list[Augmentation | Transform]): e.g. ResizeShortestEdge + RandomFlip.
            image_format (str): "RGB" or "BGR" (any Detectron2 ``read_image`` format).
            sampling_frame_range (int): max index distance of the reference frame (released STMask: 2).
            sampling_frame_order (str): "sorted" (earlier frame first) or "random" (key frame first).
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
        }

    def _read(self, video, t):
        path = video["file_names"][t]
        image = utils.read_image(path, format=self.image_format)
        utils.check_image_size({"file_name": path, "height": video["height"], "width": video["width"]}, image)
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
        video, key = sample["video"], int(sample["key_frame"])
        if "annotations" not in video:
            raise ValueError(f"video {video['video_id']} has no annotations; the pair mapper needs a train split.")
        ref = sample_reference_frame(_frames_with_instances(video), key, self.sampling_frame_range)
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
            out_instances.append(self._instances(video["annotations"][t], transforms, image_shape))
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
    def __init__(self, *, image_format="RGB"):
        self.image_format = image_format

    @classmethod
    def from_config(cls, cfg):
        return {"image_format": cfg.INPUT.FORMAT}

    def __call__(self, video):
        return {
            "video_id": video["video_id"],
            "height": video["height"],
            "width": video["width"],
            "length": video["length"],
            "frames": ImageListSource(video["file_names"], self.image_format),
            "file_names": list(video["file_names"]),
        }
