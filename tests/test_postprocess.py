import math

import pytest
import torch
import torch.nn.functional as F

from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.structures import Boxes

from stmask_d2.layers import assemble_masks
from stmask_d2.modeling.postprocess import build_masks, detect_frame, frame_to_original

B2B = Box2BoxTransform(weights=(10.0, 10.0, 5.0, 5.0))
C, K, D = 3, 4, 8


def _logits(fg_probs):
    """(A, C+1) logits whose softmax gives the requested foreground probabilities (background = index C)."""
    p = torch.tensor(fg_probs, dtype=torch.float32)
    p = torch.cat([p, (1 - p.sum(1, keepdim=True)).clamp(min=1e-6)], 1)
    return p.log()


def _setup():
    anchors = Boxes(
        torch.tensor(
            [
                [0.0, 0, 40, 40],  # 0
                [2.0, 0, 42, 40],  # 1 overlaps 0 strongly
                [100.0, 100, 140, 140],  # 2
                [200.0, 20, 240, 60],  # 3 low score
                [300.0, 350, 340, 400],  # 4 centre (320, 375) in the padding (input h = 360)
            ]
        )
    )
    fg = [[0.8, 0.1, 0.05], [0.1, 0.7, 0.1], [0.05, 0.05, 0.6], [0.04, 0.03, 0.02], [0.9, 0.0, 0.05]]
    a = len(fg)
    torch.manual_seed(0)
    return dict(
        logits=_logits(fg),
        deltas=torch.zeros(a, 4),
        coeffs=torch.randn(a, K),
        embeds=F.normalize(torch.randn(a, D), dim=1),
        centerness=torch.tensor([0.5, 1.0, 0.9, 1.0, 1.0]),
        anchors=anchors,
    )


def test_scores_times_centerness_threshold_and_cross_class_nms():
    s = _setup()
    inst = detect_frame(**s, box2box_transform=B2B, image_size=(360, 640))
    # anchor 3 is below the 0.05 threshold; 0 (0.8*0.5 = 0.4) is suppressed by 1 (0.7*1.0) across classes
    assert inst.anchor_indices.tolist() == [4, 1, 2]
    assert torch.allclose(inst.scores, torch.tensor([0.9, 0.7, 0.54]), atol=1e-5)
    assert inst.pred_classes.tolist() == [0, 1, 2]
    assert torch.equal(inst.pred_coeffs, s["coeffs"][[4, 1, 2]])
    assert torch.equal(inst.pred_embeddings, s["embeds"][[4, 1, 2]])
    assert torch.equal(inst.pred_boxes.tensor, s["anchors"].tensor[[4, 1, 2]])  # zero deltas
    assert inst.image_size == (360, 640)
    # without centerness the order changes and anchor 0 wins over 1
    inst = detect_frame(**{**s, "centerness": None}, box2box_transform=B2B, image_size=(360, 640))
    assert inst.anchor_indices.tolist() == [4, 0, 2]
    assert not inst.has("pred_centerness")
    # higher threshold
    inst = detect_frame(**s, box2box_transform=B2B, image_size=(360, 640), score_thresh=0.65)
    assert inst.anchor_indices.tolist() == [4, 1]


def test_cross_class_keeps_best_max_dets():
    s = _setup()
    inst = detect_frame(**s, box2box_transform=B2B, image_size=(360, 640), max_dets=2)
    assert inst.anchor_indices.tolist() == [4, 1]  # the two best of the three NMS survivors [4, 1, 2]
    assert torch.equal(inst.pred_coeffs, s["coeffs"][[4, 1]])
    inst = detect_frame(**s, box2box_transform=B2B, image_size=(360, 640), max_dets=100)
    assert inst.anchor_indices.tolist() == [4, 1, 2]


def test_branches_at_equals_dense_coeffs_and_embeds():
    s = _setup()
    dense = detect_frame(**s, box2box_transform=B2B, image_size=(360, 640))
    asked = []

    def branches_at(sel):
        asked.append(sel.clone())
        return s["coeffs"][sel], s["embeds"][sel]

    lazy = detect_frame(**{**s, "coeffs": None, "embeds": None}, box2box_transform=B2B, image_size=(360, 640),
                        branches_at=branches_at)
    assert len(asked) == 1 and asked[0].tolist() == [4, 1, 2]  # survivors only
    assert list(lazy.get_fields()) == list(dense.get_fields())
    for k, v in dense.get_fields().items():
        a, b = lazy.get(k), v
        assert torch.equal(a.tensor if hasattr(a, "tensor") else a, b.tensor if hasattr(b, "tensor") else b), k
    with pytest.raises(ValueError):
        detect_frame(**{**s, "coeffs": None}, box2box_transform=B2B, image_size=(360, 640))


def test_box_decoding():
    s = _setup()
    s["deltas"][2] = torch.tensor([1.0, -1.0, math.log(2) / 0.2, 0.0])  # cx += 0.1*40, w *= 2
    inst = detect_frame(**s, box2box_transform=B2B, image_size=(360, 640))
    box = inst.pred_boxes.tensor[inst.anchor_indices == 2][0]
    assert torch.allclose(box, torch.tensor([84.0, 96.0, 164.0, 136.0]), atol=1e-4)


def test_per_class_nms_path():
    s = _setup()
    inst = detect_frame(**s, box2box_transform=B2B, image_size=(360, 640), cross_class=False, max_dets=100)
    # classes differ, so anchors 0 and 1 both survive; anchor 1 also scores class 0 (0.1) and class 2 (0.1)
    pairs = list(zip(inst.anchor_indices.tolist(), inst.pred_classes.tolist()))
    assert pairs[:4] == [(4, 0), (1, 1), (2, 2), (0, 0)]
    assert (inst.scores[:-1] >= inst.scores[1:]).all()
    assert all(c != 0 or a != 1 for a, c in pairs)  # (1, class 0) suppressed by (0, class 0)
    inst = detect_frame(**s, box2box_transform=B2B, image_size=(360, 640), cross_class=False, max_dets=2)
    assert len(inst) == 2


def test_sigmoid_mode_and_empty():
    s = _setup()
    s["logits"] = torch.full((5, C), -10.0)
    s["logits"][2, 1] = 2.0
    inst = detect_frame(**s, box2box_transform=B2B, image_size=(360, 640), softmax=False)
    assert inst.anchor_indices.tolist() == [2] and inst.pred_classes.tolist() == [1]
    s["logits"][2, 1] = -10.0
    inst = detect_frame(**s, box2box_transform=B2B, image_size=(360, 640), softmax=False)
    assert len(inst) == 0
    protos = torch.rand(K, 96, 160)
    build_masks(inst, protos)
    out = frame_to_original(inst, (360, 640), (720, 1280))
    assert len(out) == 0 and out.pred_masks.shape == (0, 720, 1280)


def test_masks_only_for_survivors_and_original_size():
    s = _setup()
    inst = detect_frame(**s, box2box_transform=B2B, image_size=(360, 640))
    protos = torch.rand(K, 96, 160)
    build_masks(inst, protos)
    assert inst.pred_masks_soft.shape == (3, 96, 160)
    ref = assemble_masks(protos, s["coeffs"][[4, 1, 2]], s["anchors"].tensor[[4, 1, 2]] / 4)
    assert torch.allclose(inst.pred_masks_soft, ref)
    out = frame_to_original(inst, (360, 640), (720, 1280))
    # the instance centred in the padding is dropped
    assert out.anchor_indices.tolist() == [1, 2]
    assert out.image_size == (720, 1280)
    assert torch.allclose(out.pred_boxes.tensor[1], torch.tensor([200.0, 200, 280, 280]))
    assert out.pred_masks.dtype == torch.bool and out.pred_masks.shape == (2, 720, 1280)
    full = F.interpolate(inst.pred_masks_soft[1:, None, :90], size=(720, 1280), mode="bilinear", align_corners=False)
    full = full[:, 0]
    sure = (full - 0.5).abs() > 1e-5
    assert torch.equal(out.pred_masks[sure], (full > 0.5)[sure])
    # masks stay inside the padded crop region
    assert not out.pred_masks[1, :, :180].any() and not out.pred_masks[1, :, 300:].any()
    out2 = frame_to_original(inst, (360, 640), (720, 1280), score_thresh=0.6)
    assert out2.anchor_indices.tolist() == [1]
    out3 = frame_to_original(inst, (360, 640), (720, 1280), paste_in_box=True)
    assert not out3.pred_masks[1, :, :200].any()
