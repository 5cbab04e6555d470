from detectron2.config import get_cfg

import stmask_d2
from stmask_d2.config import add_stmask_config


def test_config_keys_added():
    cfg = get_cfg()
    add_stmask_config(cfg)
    assert cfg.MODEL.META_ARCHITECTURE == "STMask"
    assert cfg.MODEL.STMASK.TF.CORR_PATCH_SIZE == 11
    assert cfg.MODEL.ANCHOR_GENERATOR.KERNEL_SHAPES == [[3, 3], [3, 5], [5, 3]]
    assert stmask_d2.__version__
