"""Inference options that keep the math (MODEL.STMASK.INFERENCE): BatchNorm folding, channels_last, bf16 option.
Each is compared with the plain fp32 path (1e-4; bf16 with a bf16 tolerance)."""
import logging
import os

import numpy as np
import pytest
import torch
from detectron2.layers import Conv2d, FrozenBatchNorm2d
from torch import nn

from stmask_d2.layers import DeformConv2d
from stmask_d2.modeling import inference_opts
from stmask_d2.modeling.fold_bn import disable_bn_folding, enable_bn_folding

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOL = dict(rtol=1e-4, atol=1e-4)


def _randomise_norms(module, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (FrozenBatchNorm2d, nn.BatchNorm2d)):
                c = m.running_mean.numel()
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
                m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                m.bias.copy_(torch.randn(c, generator=g) * 0.2)


@pytest.mark.parametrize("norm", ["FrozenBN", "BN"])
def test_fold_conv_and_deform_conv_equal_unfolded(norm):
    torch.manual_seed(0)
    mk = (lambda c: FrozenBatchNorm2d(c)) if norm == "FrozenBN" else (lambda c: nn.BatchNorm2d(c))
    conv = Conv2d(5, 7, 3, padding=1, bias=norm == "BN", norm=mk(7), activation=nn.ReLU())
    dcn = DeformConv2d(7, 6, 3, padding=1, norm=mk(6))
    _randomise_norms(conv, 1)
    _randomise_norms(dcn, 2)
    conv.eval()
    dcn.eval()
    x = torch.randn(2, 5, 9, 11)
    off, mask = torch.randn(2, 18, 9, 11), torch.rand(2, 9, 9, 11)
    with torch.no_grad():
        ref = dcn(conv(x), off, mask)
    sd = {k: v.clone() for k, v in {**conv.state_dict(), **{"d." + k: v for k, v in dcn.state_dict().items()}}.items()}
    assert enable_bn_folding(conv) == 1 and enable_bn_folding(dcn) == 1
    with torch.inference_mode():
        out = dcn(conv(x), off, mask)
    assert "_fold_cache" in conv.__dict__ and "_fold_cache" in dcn.__dict__  # the folded path ran
    torch.testing.assert_close(out, ref, **TOL)
    # the state dict is untouched; with gradients recorded the original conv + norm runs
    new = {**conv.state_dict(), **{"d." + k: v for k, v in dcn.state_dict().items()}}
    assert sd.keys() == new.keys() and all(torch.equal(sd[k], new[k]) for k in sd)
    y = dcn(conv(x.requires_grad_()), off, mask)
    y.sum().backward()
    torch.testing.assert_close(y.detach(), ref, **TOL)
    # new statistics (e.g. a checkpoint loaded after folding was enabled) invalidate the cache
    _randomise_norms(conv, 3)
    with torch.no_grad():
        folded = conv(x)
    disable_bn_folding(conv)
    assert "forward" not in conv.__dict__
    with torch.no_grad():
        torch.testing.assert_close(folded, conv(x), **TOL)


def test_bn_in_training_mode_is_not_folded():
    conv = Conv2d(3, 4, 3, padding=1, bias=False, norm=nn.BatchNorm2d(4))
    enable_bn_folding(conv)
    conv.train()
    x = torch.randn(2, 3, 5, 5)
    with torch.no_grad():
        y = conv(x)  # batch statistics: must not use the running ones
    torch.testing.assert_close(y.mean(dim=(0, 2, 3)), torch.zeros(4), rtol=0, atol=1e-5)


# ---------------------------------------------------------------------------------------------------------------
# whole model: R50-DCN (FrozenBN, deformable blocks), FCB ada, TF, tracking
# ---------------------------------------------------------------------------------------------------------------
def _model(*opts):
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model

    from stmask_d2.config import add_stmask_config

    cfg = get_cfg()
    add_stmask_config(cfg)
    cfg.merge_from_file(os.path.join(ROOT, "configs", "youtubevis_2019", "STMask_R50_DCN_ada_TF.yaml"))
    cfg.merge_from_list([
        "MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu", "INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "112",
        "MODEL.STMASK.TEST.SCORE_THRESH", "0.0", "MODEL.STMASK.TEST.NMS_TOP_K", "60",
        "MODEL.STMASK.TEST.MAX_DETECTIONS", "12", *opts,
    ])
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    _randomise_norms(model.backbone)
    with torch.no_grad():
        for name, p in model.head.named_parameters():
            if name.endswith("bias") or "offset_conv" in name:
                p.normal_(0, 0.1)
    return model


def _frames(n, h=60, w=100):
    rng = np.random.RandomState(0)
    return [rng.randint(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]


def _extract(model, frame):
    tfm = model.test_resize.get_transform(frame)
    with torch.inference_mode():
        return model.extract(model.preprocess([model._frame_tensor(frame, tfm)]))


def _flat(out):
    features, head_out, protos = out
    ts = [features[k] for k in sorted(features)] + [protos]
    ts += [v for k, v in sorted(head_out.items()) if isinstance(v, torch.Tensor)] + list(head_out["upfeatures"])
    return ts


def _close(a, b):
    """Equal within 1e-4 of the tensor's scale (the R50 activations with random statistics reach tens)."""
    scale = max(1.0, b.abs().max().item())
    assert (a - b).abs().max().item() <= 1e-4 * scale, ((a - b).abs().max().item(), scale)


def _assert_same_tracks(a, b):
    for x, y in zip(a, b):
        assert len(x) == len(y) and len(x) > 0
        assert torch.equal(x.track_ids, y.track_ids) and torch.equal(x.pred_classes, y.pred_classes)
        torch.testing.assert_close(x.scores, y.scores, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(x.pred_boxes.tensor, y.pred_boxes.tensor, rtol=1e-4, atol=1e-3)
        assert (x.pred_masks != y.pred_masks).float().mean().item() <= 1e-3


@pytest.fixture(scope="module")
def r50():
    return _model()


def test_model_fold_bn_equal_unfolded(r50):
    model = r50
    n_folded = sum(1 for m in model.backbone.modules() if "forward" in m.__dict__)
    assert n_folded > 50  # every conv with a FrozenBN of R50, deformable ones included
    frames = _frames(2)
    folded_out = _flat(_extract(model, frames[0]))
    folded = list(model.track_frames(frames, 60, 100))
    disable_bn_folding(model.backbone)
    try:
        ref_out = _flat(_extract(model, frames[0]))
        ref = list(model.track_frames(frames, 60, 100))
    finally:
        enable_bn_folding(model.backbone)
    for a, b in zip(folded_out, ref_out):
        _close(a, b)
    _assert_same_tracks(folded, ref)


def test_model_channels_last_equal(r50):
    model = r50
    frames = _frames(2)
    ref_out = _flat(_extract(model, frames[0]))
    ref = list(model.track_frames(frames, 60, 100))
    model.channels_last = True
    try:
        out = _flat(_extract(model, frames[0]))
        cl = list(model.track_frames(frames, 60, 100))
        assert model.backbone.bottom_up.stem.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    finally:
        model.channels_last = False
    for a, b in zip(out, ref_out):
        _close(a, b)
    _assert_same_tracks(cl, ref)


def test_bf16_option(r50, monkeypatch, caplog):
    model = r50
    frame = _frames(1)[0]
    ref = _flat(_extract(model, frame))
    model.inference_dtype = "bfloat16"
    try:
        monkeypatch.setattr(inference_opts, "cpu_has_native_bf16", lambda: False)
        monkeypatch.setattr(inference_opts, "_logged", set())
        with caplog.at_level(logging.INFO, logger="stmask_d2.modeling.inference_opts"):
            fallback = _flat(_extract(model, frame))
            _extract(model, frame)
        msgs = [r.getMessage() for r in caplog.records if "no native bf16" in r.getMessage()]
        assert len(msgs) == 1, msgs  # one line, fp32 elsewhere
        for a, b in zip(fallback, ref):
            assert torch.equal(a, b)
        monkeypatch.setattr(inference_opts, "cpu_has_native_bf16", lambda: True)
        out = _flat(_extract(model, frame))
        assert all(t.dtype == torch.float32 for t in out)
        for a, b in zip(out, ref):  # bf16 keeps 8 bits of mantissa: relative error of a few 1e-2 after R50
            assert (a - b).norm() <= 0.1 * b.norm() + 1e-3
        tracks = list(model.track_frames(_frames(2), 60, 100))
        assert all(len(t) > 0 for t in tracks)
    finally:
        model.inference_dtype = "float32"
    assert inference_opts.resolve_inference_dtype("float32", "cpu") == torch.float32
    with pytest.raises(ValueError, match="DTYPE"):
        inference_opts.resolve_inference_dtype("int8", "cpu")
