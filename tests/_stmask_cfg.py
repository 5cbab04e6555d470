"""The project's default config in-process: what `get_cfg(); add_stmask_config(cfg)` gave before the Detectron2
defaults that STMask changes moved to configs/Base-STMask.yaml (issue 13)."""
import os

from detectron2.config import get_cfg

from stmask_d2.config import add_stmask_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE_CONFIG = os.path.join(ROOT, "configs", "Base-STMask.yaml")


def base_cfg(dcn=True):
    """get_cfg() + add_stmask_config + configs/Base-STMask.yaml, on the CPU. ``dcn``: the released DCN layout
    (res3-res5 may be deformable, every MODEL.RESNETS.DEFORM_INTERVAL blocks) instead of the plain ResNet of the
    base file. The STMask keys keep the defaults of stmask_d2/config.py (TF on, no pretrained weights)."""
    cfg = get_cfg()
    add_stmask_config(cfg)
    defaults = cfg.clone()
    cfg.merge_from_file(BASE_CONFIG)
    cfg.MODEL.STMASK = defaults.MODEL.STMASK  # unit tests use the key defaults of stmask_d2/config.py
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.DEVICE = "cpu"
    if dcn:
        cfg.MODEL.RESNETS.DEFORM_ON_PER_STAGE = [False, True, True, True]
    return cfg
