"""`add_stmask_config` only adds STMask keys (the Detectron2 defaults STMask changes live in
configs/Base-STMask.yaml), and no dumped config depends on the machine (MODEL.DEVICE "auto" is resolved when the
model is built)."""
import os

import pytest
import torch
from detectron2.config import get_cfg

from stmask_d2.config import add_stmask_config, resolve_device

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE = os.path.join(ROOT, "configs", "Base-STMask.yaml")
SYNTHETIC = os.path.join(ROOT, "configs", "synthetic", "STMask_R18_synthetic.yaml")


def _flat(node, prefix=""):
    out = {}
    for k, v in node.items():
        if isinstance(v, dict):
            out.update(_flat(v, prefix + k + "."))
        else:
            out[prefix + k] = v
    return out


def _dump(config_file=None):
    cfg = get_cfg()
    add_stmask_config(cfg)
    if config_file:
        cfg.merge_from_file(config_file)
    return cfg.dump()


def test_add_stmask_config_keeps_every_detectron2_default():
    d2 = _flat(get_cfg())
    cfg = get_cfg()
    add_stmask_config(cfg)
    ours = _flat(cfg)
    changed = {k: (v, ours[k]) for k, v in d2.items() if ours[k] != v}
    assert changed == {}, f"add_stmask_config changed Detectron2 defaults (move them to Base-STMask.yaml): {changed}"
    assert any(k.startswith("MODEL.STMASK.") for k in ours)  # and it did add the STMask keys


@pytest.mark.parametrize("config_file", [None, BASE, SYNTHETIC])
def test_dumped_config_does_not_depend_on_cuda(monkeypatch, config_file):
    dumps = []
    for available in (True, False):
        monkeypatch.setattr(torch.cuda, "is_available", lambda a=available: a)
        dumps.append(_dump(config_file))
    assert dumps[0] == dumps[1]


def test_base_config_sets_the_stmask_detectron2_keys():
    cfg = get_cfg()
    add_stmask_config(cfg)
    cfg.merge_from_file(BASE)
    assert cfg.MODEL.DEVICE == "auto" and cfg.MODEL.META_ARCHITECTURE == "STMask"
    assert cfg.INPUT.FORMAT == "RGB" and cfg.MODEL.RESNETS.STRIDE_IN_1X1 is False
    assert cfg.MODEL.BACKBONE.NAME == "build_stmask_resnet_fpn_backbone"
    assert cfg.MODEL.ANCHOR_GENERATOR.NAME == "FCAAnchorGenerator"
    assert cfg.MODEL.RESNETS.DEFORM_ON_PER_STAGE == [False, False, False, False]  # plain; *_DCN configs turn it on


def test_resolve_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu" and resolve_device("AUTO") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda"
    assert resolve_device("cpu") == "cpu" and resolve_device("cuda:1") == "cuda:1"


def test_build_model_resolves_auto_device(monkeypatch):
    from stmask_d2.modeling import build_model

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = get_cfg()
    add_stmask_config(cfg)
    cfg.merge_from_file(SYNTHETIC)
    assert cfg.MODEL.DEVICE == "auto"
    cfg.freeze()
    model = build_model(cfg)
    assert model.device.type == "cpu"
    assert cfg.MODEL.DEVICE == "auto"  # the config itself is not rewritten


def test_detectron2_build_model_with_auto_device(monkeypatch):
    """Detectron2's build_model (trainer, predictor) works with "auto": STMask resolves it when it is built."""
    from detectron2.modeling import build_model

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = get_cfg()
    add_stmask_config(cfg)
    cfg.merge_from_file(SYNTHETIC)
    dumped = cfg.dump()
    cfg.freeze()
    model = build_model(cfg)
    assert model.device.type == "cpu" and cfg.MODEL.DEVICE == "cpu" and cfg.is_frozen()
    assert "DEVICE: auto" in dumped
