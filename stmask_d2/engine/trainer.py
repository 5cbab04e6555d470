"""``STMaskTrainer`` (a Detectron2 ``DefaultTrainer``) used by train_net.py and the tools; the config path
(``build_cfg`` / ``setup_cfg``) is :mod:`stmask_d2.engine.setup`, re-exported here."""
import itertools
import json
import logging
import os
import random
import weakref

import numpy as np
import torch
from detectron2.data import DatasetCatalog, DatasetMapper, MetadataCatalog, build_detection_test_loader
from detectron2.data import build_detection_train_loader
from detectron2.data.samplers import TrainingSampler
from detectron2.engine import DefaultTrainer, create_ddp_model
from detectron2.engine.train_loop import TrainerBase
from detectron2.evaluation import COCOEvaluator, DatasetEvaluators
from detectron2.solver.build import get_default_optimizer_params
from detectron2.utils import comm
from detectron2.utils.env import seed_all_rng
from detectron2.utils.logger import setup_logger

from .checkpoint import AtomicDetectionCheckpointer
from .errors import ConfigError
from .grad_clip import add_batched_gradient_clipping
from .setup import build_cfg, setup_cfg  # noqa: F401  (re-exported)
from .train_loop import NonFiniteSkippingAMPTrainer, NonFiniteSkippingTrainer

__all__ = ["STMaskTrainer", "setup_cfg", "build_cfg", "check_datasets", "is_video_dataset", "ResumableTrainingSampler"]

logger = logging.getLogger(__name__)


class _UserErrorLogFilter(logging.Filter):
    """Drops Detectron2's "Exception during training:" traceback when the exception is a user error (a bad
    frame, see ``DATALOADER.SKIP_BAD_FRAMES``): train_net.py prints it as one line. ``STMASK_DEBUG=1`` keeps it."""

    def filter(self, record):
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None or os.environ.get("STMASK_DEBUG", "") not in ("", "0"):
            return True
        from .errors import is_user_error

        return not is_user_error(exc)


logging.getLogger("detectron2.engine.train_loop").addFilter(_UserErrorLogFilter())


def _fused_adamw_supported(model):
    """PyTorch's fused AdamW runs on CPU and CUDA parameters of a floating dtype (all of one device type)."""
    kinds = {(p.device.type, p.dtype.is_floating_point) for p in model.parameters() if p.requires_grad}
    return len(kinds) == 1 and next(iter(kinds)) in {("cpu", True), ("cuda", True)}


def is_video_dataset(dataset_name):
    """True for datasets registered with ``register_ytvis_instances`` (YouTube-VIS format)."""
    return MetadataCatalog.get(dataset_name).get("evaluator_type", None) == "ytvis"


class ResumableTrainingSampler(TrainingSampler):
    """Detectron2's ``TrainingSampler`` (infinite, seeded shuffle) that can start ``start`` indices into its
    stream, so that a resumed run continues the data order instead of replaying it from the beginning."""

    def __init__(self, size, shuffle=True, seed=None):
        super().__init__(size, shuffle=shuffle, seed=seed)
        self.start = 0

    def __iter__(self):
        yield from itertools.islice(self._infinite_indices(), self.start + self._rank, None, self._world_size)


def _ddp(model):
    """Detectron2's ``create_ddp_model`` (buffers not broadcast, ``find_unused_parameters=True``: the TF head and
    FCB get no gradient on a batch without a shared identity), without ``device_ids`` for a CPU model (gloo)."""
    if comm.get_world_size() == 1:
        return model
    on_cuda = next(model.parameters()).device.type == "cuda"
    if on_cuda:
        return create_ddp_model(model, broadcast_buffers=False, find_unused_parameters=True)
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, broadcast_buffers=False, find_unused_parameters=True)


def _get_rng_state():
    np_state = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *[float(x) for x in np_state[2:]]],
        "torch": torch.get_rng_state(),
    }


def _set_rng_state(state):
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    torch.set_rng_state(state["torch"])


def _truncate_metrics_json(path, start_iter):
    """Drop the records of ``metrics.json`` from ``start_iter`` on (written by the interrupted run after the
    checkpoint it resumes from) and a last line cut by a crash, in place (the file's ``JSONWriter`` appends).
    Only a tail is removed, so a crash here loses nothing that is kept."""
    if not os.path.isfile(path):
        return
    with open(path, "rb+") as f:
        data = f.read()
        keep, dropped, offset = 0, 0, 0
        for line in data.splitlines(keepends=True):
            end = offset + len(line)
            try:
                it = json.loads(line).get("iteration", -1)
                ok = line.endswith(b"\n") and it < start_iter
            except (ValueError, AttributeError):
                ok = False
            if not ok:
                dropped = len(data[offset:].splitlines())
                break
            keep, offset = end, end
        if keep < len(data):
            f.truncate(keep)
            logger.info(f"Resuming at iteration {start_iter}: dropped {dropped} record(s) of {path} written after "
                        f"the checkpoint.")


class STMaskTrainer(DefaultTrainer):
    """DefaultTrainer for STMask: video pair loader, YouTube-VIS evaluator, atomic checkpoints, DDP that tolerates
    parameters without gradient in an iteration (e.g. the TF head on a batch without a shared identity), and a
    training step that skips non-finite losses (``SOLVER.SKIP_NONFINITE_LOSS``).

    COCO-style image datasets work too (single-frame training, ``COCOEvaluator``), for the supplement's COCO table.
    """

    def __init__(self, cfg):
        TrainerBase.__init__(self)
        if not logging.getLogger("detectron2").isEnabledFor(logging.INFO):
            setup_logger()
        cfg = DefaultTrainer.auto_scale_workers(cfg, comm.get_world_size())
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        self._train_sampler = getattr(data_loader, "stmask_sampler", None)
        model = _ddp(model)
        if cfg.SOLVER.AMP.ENABLED:  # bf16 autocast on CPU, fp16 autocast + GradScaler on CUDA
            self._trainer = NonFiniteSkippingAMPTrainer(
                model, data_loader, optimizer, skip_nonfinite=cfg.SOLVER.SKIP_NONFINITE_LOSS,
                precision=cfg.SOLVER.AMP.PRECISION, device_type=torch.device(cfg.MODEL.DEVICE).type,
            )
            logger.info(f"Mixed-precision training (SOLVER.AMP): {self._trainer.precision} autocast on "
                        f"{self._trainer.device_type}.")
        else:
            self._trainer = NonFiniteSkippingTrainer(
                model, data_loader, optimizer, skip_nonfinite=cfg.SOLVER.SKIP_NONFINITE_LOSS
            )
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = AtomicDetectionCheckpointer(model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self))
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.register_hooks(self.build_hooks())

    def build_hooks(self):
        """Detectron2's hooks; metrics are written at least as often as checkpoints (every
        min(20, SOLVER.CHECKPOINT_PERIOD) iterations), so a resumed run's metrics.json has no gap."""
        from detectron2.engine.hooks import PeriodicWriter

        ret = super().build_hooks()
        for h in ret:
            if isinstance(h, PeriodicWriter):
                h._period = max(1, min(h._period, self.cfg.SOLVER.CHECKPOINT_PERIOD))
        return ret

    # ------------------------------------------------------------------------------------------------------------
    # resume: iteration, optimizer, scheduler (Detectron2), plus RNG state, data order and metrics.json
    # ------------------------------------------------------------------------------------------------------------
    def state_dict(self):
        ret = super().state_dict()
        ret["rng"] = _get_rng_state()  # of the main process (the one that saves)
        return ret

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        self._loaded_rng = state_dict.get("rng")

    def resume_or_load(self, resume=True):
        """Detectron2's ``resume_or_load``; when resuming from a checkpoint of iteration i, also continue the
        training sampler's stream at the sample of iteration i + 1, restore the RNG state of the main process
        (other processes are reseeded from SEED, rank and iteration) and drop metrics.json records after i."""
        self._loaded_rng = None
        super().resume_or_load(resume=resume)
        if not (resume and self.start_iter > 0):
            return
        logger.info(f"Resumed from {self.checkpointer.get_checkpoint_file()}: training continues at iteration "
                    f"{self.start_iter} of {self.max_iter}.")
        if self._train_sampler is not None:
            self._train_sampler.start = self.start_iter * self.cfg.SOLVER.IMS_PER_BATCH
        if comm.is_main_process() and self._loaded_rng is not None:
            _set_rng_state(self._loaded_rng)
        elif self.cfg.SEED >= 0:
            seed_all_rng(self.cfg.SEED + 1000003 * comm.get_rank() + self.start_iter)
        if comm.is_main_process():
            _truncate_metrics_json(os.path.join(self.cfg.OUTPUT_DIR, "metrics.json"), self.start_iter)

    # ------------------------------------------------------------------------------------------------------------
    @classmethod
    def build_optimizer(cls, cfg, model):
        """SGD with momentum (released) or AdamW (``SOLVER.OPTIMIZER: ADAMW``, for models trained from scratch),
        with Detectron2's per-parameter weight decay / lr rules and gradient clipping (``SOLVER.CLIP_GRADIENTS``;
        per-parameter norm clipping batched: :mod:`stmask_d2.engine.grad_clip`)."""
        name = cfg.SOLVER.OPTIMIZER.upper()
        if name == "SGD":
            plain = cfg.clone()
            plain.defrost()
            plain.SOLVER.CLIP_GRADIENTS.ENABLED = False  # added below, batched
            return add_batched_gradient_clipping(cfg, super().build_optimizer(plain, model))
        if name != "ADAMW":
            raise ConfigError(f"SOLVER.OPTIMIZER must be SGD or ADAMW, got {cfg.SOLVER.OPTIMIZER!r}.")
        params = get_default_optimizer_params(
            model,
            base_lr=cfg.SOLVER.BASE_LR,
            weight_decay_norm=cfg.SOLVER.WEIGHT_DECAY_NORM,
            bias_lr_factor=cfg.SOLVER.BIAS_LR_FACTOR,
            weight_decay_bias=cfg.SOLVER.WEIGHT_DECAY_BIAS,
        )
        return add_batched_gradient_clipping(cfg, torch.optim.AdamW)(
            params, lr=cfg.SOLVER.BASE_LR, weight_decay=cfg.SOLVER.WEIGHT_DECAY,
            **({"fused": True} if cfg.SOLVER.ADAMW_FUSED and _fused_adamw_supported(model) else {}),
        )

    @classmethod
    def build_train_loader(cls, cfg):
        names = list(cfg.DATASETS.TRAIN)
        video = [is_video_dataset(n) for n in names]
        if all(video):
            from ..data import YTVISKeyFrameDataset, YTVISPairDatasetMapper, YTVISFormatError
            from ..data import get_ytvis_key_frame_dicts

            try:
                samples = get_ytvis_key_frame_dicts(names)
            except YTVISFormatError:
                raise
            except (FileNotFoundError, ValueError) as e:  # missing JSON, split without annotations, no key frame
                raise ConfigError(f"DATASETS.TRAIN {tuple(names)}: {e}") from e
            dataset = YTVISKeyFrameDataset(samples)
            sampler = ResumableTrainingSampler(len(dataset), seed=cfg.SEED if cfg.SEED >= 0 else None)
            loader = build_detection_train_loader(
                dataset,
                mapper=YTVISPairDatasetMapper(cfg, is_train=True),
                sampler=sampler,
                total_batch_size=cfg.SOLVER.IMS_PER_BATCH,
                aspect_ratio_grouping=False,
                num_workers=cfg.DATALOADER.NUM_WORKERS,
            )
            loader.stmask_sampler = sampler
            return loader
        if any(video):
            raise ValueError(
                f"DATASETS.TRAIN mixes YouTube-VIS video datasets and image datasets: {names}. Train on one kind."
            )
        return build_detection_train_loader(cfg, mapper=DatasetMapper(cfg, is_train=True))

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        if is_video_dataset(dataset_name):
            from ..data import YTVISFormatError, build_ytvis_test_loader

            try:
                return build_ytvis_test_loader(cfg, dataset_name)
            except YTVISFormatError:
                raise
            except FileNotFoundError as e:
                raise ConfigError(f"DATASETS.TEST {dataset_name!r}: {e}") from e
        if cfg.INPUT.TEST_RESIZE_MODE == "fixed":  # released: every image resized to TEST_FIXED_SIZE by OpenCV
            from ..data.transforms import build_test_resize

            args = DatasetMapper.from_config(cfg, is_train=False)
            args["augmentations"] = [build_test_resize(cfg)]
            return build_detection_test_loader(cfg, dataset_name, mapper=DatasetMapper(**args))
        return build_detection_test_loader(cfg, dataset_name)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        if output_folder is None:
            output_folder = os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        if is_video_dataset(dataset_name):
            from ..evaluation import YTVISEvaluator

            return YTVISEvaluator(
                dataset_name,
                output_dir=output_folder,
                hota=cfg.TEST.YTVIS_HOTA,
                max_tracks_per_video=cfg.MODEL.STMASK.TEST.MAX_TRACKS_PER_VIDEO,
                keep_order=cfg.MODEL.STMASK.TEST.RESULTS_ORDER != "score",
            )
        return DatasetEvaluators([COCOEvaluator(dataset_name, output_dir=output_folder)])


def check_datasets(cfg, eval_only=False):
    """Parse the YouTube-VIS datasets a run is about to use (DATASETS.TEST, and DATASETS.TRAIN unless
    ``eval_only``): field types, sizes, RLE consistency; with ``DATASETS.CHECK_FILES`` also their frame files.
    train_net.py calls it before anything is written; errors are one line (``YTVISFormatError`` /
    :class:`ConfigError`). The parse is cached, the data loader reuses it."""
    from ..data import YTVISFormatError, check_ytvis_files

    names = ([] if eval_only else list(cfg.DATASETS.TRAIN)) + list(cfg.DATASETS.TEST)
    for name in dict.fromkeys(names):
        if not is_video_dataset(name):
            continue
        try:
            videos = DatasetCatalog.get(name)
        except YTVISFormatError:
            raise
        except (FileNotFoundError, ValueError) as e:
            raise ConfigError(f"dataset {name!r}: {e}") from e
        if cfg.DATASETS.CHECK_FILES:
            check_ytvis_files(videos, name, cfg.INPUT.MAX_FRAME_PIXELS)
