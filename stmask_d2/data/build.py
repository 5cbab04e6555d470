"""Data loaders for video instance segmentation: key-frame pair training loader and per-video test loader."""
import logging

import numpy as np
import torch.utils.data as torchdata
from detectron2.data import DatasetCatalog, build_detection_test_loader, build_detection_train_loader
from detectron2.data.common import DatasetFromList
from detectron2.data.detection_utils import check_metadata_consistency

from .dataset_mapper import YTVISPairDatasetMapper, YTVISTestDatasetMapper, frames_with_instances

__all__ = ["get_ytvis_key_frame_dicts", "YTVISKeyFrameDataset", "build_ytvis_train_loader", "build_ytvis_test_loader"]

logger = logging.getLogger(__name__)


def _load_videos(dataset_names):
    if isinstance(dataset_names, str):
        dataset_names = [dataset_names]
    assert len(dataset_names), "DATASETS.TRAIN is empty"
    videos = []
    for name in dataset_names:
        vids = DatasetCatalog.get(name)
        for v in vids:  # named in the data loader's one-line errors
            v.setdefault("dataset_name", name)
        if not vids:
            raise ValueError(f"Dataset {name!r} has no videos.")
        if any("annotations" not in v for v in vids):
            raise ValueError(
                f"Dataset {name!r} has no annotations (a valid/test split?); training needs a split with "
                f"annotations, e.g. *_train or *_train_sub."
            )
        videos.extend(vids)
    if len(dataset_names) > 1:
        check_metadata_consistency("thing_classes", dataset_names)
    return videos


def get_ytvis_key_frame_dicts(dataset_names):
    """Flatten the videos of ``dataset_names`` into training samples ``{"video": video dict, "key_frame": t}``,
    one per annotated frame with at least one (non-crowd) instance (docs/METHOD.md §9). Samples of one video share
    the same video dict object. Raises ``ValueError`` when a dataset has no annotations."""
    videos = _load_videos(dataset_names)
    samples = [{"video": v, "key_frame": t} for v in videos for t in frames_with_instances(v)]
    logger.info(f"{len(samples)} key frames from {len(videos)} videos of {dataset_names}")
    if not samples:
        raise ValueError(f"No annotated frame with an instance in {dataset_names}.")
    return samples


class YTVISKeyFrameDataset(torchdata.Dataset):
    """Map-style dataset of key-frame samples that stores each video once (pickled, like Detectron2's
    ``DatasetFromList(serialize=True)``), instead of once per key frame: YTVIS 2019 has ~60k key frames in 2.2k
    videos, so a plain list of samples would copy every video dict ~27 times into each worker."""

    def __init__(self, samples):
        videos, index, vid_pos = [], [], {}
        for s in samples:
            pos = vid_pos.get(id(s["video"]))
            if pos is None:
                pos = vid_pos[id(s["video"])] = len(videos)
                videos.append(s["video"])
            index.append((pos, int(s["key_frame"])))
        self._videos = DatasetFromList(videos, copy=False, serialize=True)
        self._index = np.asarray(index, dtype=np.int64).reshape(-1, 2)

    def __len__(self):
        return len(self._index)

    def __getitem__(self, idx):
        v, t = self._index[idx]
        return {"video": self._videos[int(v)], "key_frame": int(t)}


def build_ytvis_train_loader(cfg, mapper=None, *, dataset=None):
    """Infinite training loader of frame pairs (``YTVISPairDatasetMapper``) over the key frames of
    ``cfg.DATASETS.TRAIN``, built with Detectron2's ``build_detection_train_loader`` (TrainingSampler,
    ``cfg.SOLVER.IMS_PER_BATCH`` pairs per batch over all workers, aspect-ratio grouping off). Each batch is a list
    of pair dicts. ``dataset``: optional list of key-frame samples to use instead of ``cfg.DATASETS.TRAIN``."""
    samples = dataset if dataset is not None else get_ytvis_key_frame_dicts(cfg.DATASETS.TRAIN)
    if mapper is None:
        mapper = YTVISPairDatasetMapper(cfg, is_train=True)
    return build_detection_train_loader(
        YTVISKeyFrameDataset(samples),
        mapper=mapper,
        total_batch_size=cfg.SOLVER.IMS_PER_BATCH,
        aspect_ratio_grouping=False,
        num_workers=cfg.DATALOADER.NUM_WORKERS,
    )


def build_ytvis_test_loader(cfg, dataset_name, mapper=None):
    """Loader over the videos of ``dataset_name`` (batch = a list with one video), each mapped by
    ``YTVISTestDatasetMapper`` to a lazy frame source (Detectron2 ``build_detection_test_loader``,
    InferenceSampler: every video exactly once across workers / processes)."""
    videos = DatasetCatalog.get(dataset_name)
    if mapper is None:
        mapper = YTVISTestDatasetMapper(cfg)
    return build_detection_test_loader(
        videos, mapper=mapper, batch_size=1, num_workers=cfg.DATALOADER.NUM_WORKERS
    )
