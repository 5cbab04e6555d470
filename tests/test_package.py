
import stmask_d2
from _stmask_cfg import base_cfg  # noqa: E402


def test_config_keys_added():
    cfg = base_cfg()
    assert cfg.MODEL.META_ARCHITECTURE == "STMask"
    assert cfg.MODEL.STMASK.TF.CORR_PATCH_SIZE == 11
    assert cfg.MODEL.ANCHOR_GENERATOR.KERNEL_SHAPES == [[3, 3], [3, 5], [5, 3]]
    assert stmask_d2.__version__
