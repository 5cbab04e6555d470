"""``STMaskTrainer`` (a Detectron2 ``DefaultTrainer``) and ``setup_cfg`` used by train_net.py and the tools."""
import logging
import os
import weakref

from detectron2.config import get_cfg
from detectron2.data import DatasetMapper, MetadataCatalog, build_detection_test_loader
from detectron2.data import build_detection_train_loader
from detectron2.engine import DefaultTrainer, create_ddp_model, default_setup
from detectron2.engine.train_loop import TrainerBase
from detectron2.evaluation import COCOEvaluator, DatasetEvaluators
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from ..config import add_stmask_config
from .checkpoint import AtomicDetectionCheckpointer
from .train_loop import NonFiniteSkippingTrainer

__all__ = ["STMaskTrainer", "setup_cfg", "is_video_dataset"]

logger = logging.getLogger(__name__)


def is_video_dataset(dataset_name):
    """True for datasets registered with ``register_ytvis_instances`` (YouTube-VIS format)."""
    return MetadataCatalog.get(dataset_name).get("evaluator_type", None) == "ytvis"


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
        model = create_ddp_model(model, broadcast_buffers=False, find_unused_parameters=True)
        self._trainer = NonFiniteSkippingTrainer(
            model, data_loader, optimizer, skip_nonfinite=cfg.SOLVER.SKIP_NONFINITE_LOSS
        )
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = AtomicDetectionCheckpointer(model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self))
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.register_hooks(self.build_hooks())

    @classmethod
    def build_train_loader(cls, cfg):
        names = list(cfg.DATASETS.TRAIN)
        video = [is_video_dataset(n) for n in names]
        if all(video):
            from ..data import build_ytvis_train_loader

            return build_ytvis_train_loader(cfg)
        if any(video):
            raise ValueError(
                f"DATASETS.TRAIN mixes YouTube-VIS video datasets and image datasets: {names}. Train on one kind."
            )
        return build_detection_train_loader(cfg, mapper=DatasetMapper(cfg, is_train=True))

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        if is_video_dataset(dataset_name):
            from ..data import build_ytvis_test_loader

            return build_ytvis_test_loader(cfg, dataset_name)
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
            )
        return DatasetEvaluators([COCOEvaluator(dataset_name, output_dir=output_folder)])


def setup_cfg(args, freeze=True):
    """Build the config from ``args.config_file`` and ``args.opts``, register ``--register-ytvis`` datasets and
    run Detectron2's ``default_setup`` (logging, seeds, config dump).

    A misspelt key in the yaml or in the command line raises ``KeyError`` naming it (Detectron2's message).
    """
    cfg = get_cfg()
    add_stmask_config(cfg)
    if getattr(args, "register_ytvis", None):
        from ..data import register_ytvis_from_args

        register_ytvis_from_args(args)
    if args.config_file:
        if not os.path.isfile(args.config_file):
            raise FileNotFoundError(f"Config file '{args.config_file}' does not exist (see configs/).")
        cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    if freeze:
        cfg.freeze()
    default_setup(cfg, args)
    setup_logger(output=cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="stmask_d2")
    return cfg
