"""Issue 10 fixes: even FCA kernels, FCB on locations with several anchors, released no-TF tracker, initial weights
independent of optional parts, per-class score threshold, every track written, stem trainable."""
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.structures import Boxes

from stmask_d2.config import add_stmask_config
from stmask_d2.modeling.anchor_generator import FCAAnchorGenerator
from stmask_d2.modeling.heads.fcb import FCB
from stmask_d2.modeling.heads.prediction_head import FCAConvs, STMaskPredictionHead
from stmask_d2.modeling.postprocess import detect_frame
from stmask_d2.tracking import OnlineTracker, VideoResults

from _tiny_setup import CONFIG, one_thread  # noqa: F401


# ---------------------------------------------------------------------------------------------------------------
# even FCA kernels
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kernel", [(3, 2), (2, 3), (2, 2), (4, 3)])
def test_even_kernel_conv_taps_and_anchor_match(kernel):
    """An impulse at cell (y, x) reaches the outputs at locations whose kernel covers it: taps at offsets
    -(k-1)//2 .. k//2 (extra row below, extra column right); the anchor box is exactly those cells."""
    kh, kw = kernel
    conv = FCAConvs(1, 1, [kernel])
    with torch.no_grad():
        conv.convs[0].weight.fill_(1.0)
    x = torch.zeros(1, 1, 9, 9)
    x[0, 0, 4, 4] = 1.0
    out = conv(x)[0, 0]
    assert out.shape == (9, 9)
    ys, xs = (out > 0).nonzero(as_tuple=True)
    # location (y, x) sees rows y - (kh-1)//2 .. y + kh//2: the impulse row 4 is seen from y in [4 - kh//2, 4 + (kh-1)//2]
    assert set(ys.tolist()) == set(range(4 - kh // 2, 4 + (kh - 1) // 2 + 1))
    assert set(xs.tolist()) == set(range(4 - kw // 2, 4 + (kw - 1) // 2 + 1))
    # anchors: the box of kernel (kh, kw) at location (0, 0) covers cells rows -(kh-1)//2 .. kh//2, same for columns
    stride = 8
    gen = FCAAnchorGenerator(strides=[stride], kernel_shapes=[kernel], scales=[1.0])
    (boxes,) = gen([torch.zeros(1, 1, 3, 3)])
    x1, y1, x2, y2 = boxes.tensor[0].tolist()
    assert x1 == -((kw - 1) // 2) * stride and x2 == (kw // 2 + 1) * stride
    assert y1 == -((kh - 1) // 2) * stride and y2 == (kh // 2 + 1) * stride


def test_even_kernels_grouped_equals_separate_and_lazy_path():
    kernels = [(3, 3), (3, 2), (2, 3)]
    args = dict(in_channels=8, num_classes=3, conv_dim=8, num_tower_convs=1, mask_dim=4, track_dim=6,
                kernel_shapes=kernels)
    torch.manual_seed(0)
    sep = STMaskPredictionHead(fca_impl="separate", **args)
    grp = STMaskPredictionHead(fca_impl="grouped", **args)
    grp.load_state_dict(sep.state_dict())
    feats = [torch.randn(1, 8, 6, 7), torch.randn(1, 8, 3, 4)]
    with torch.no_grad():
        a, b = sep(feats), grp(feats)
        for k in ("pred_logits", "pred_deltas", "pred_coeffs", "pred_embeds"):
            torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-5)
        idx = torch.tensor([0, 5, 40, 125, 126, 161])
        coeffs, embeds = sep.predict_at(a["upfeatures"], idx)
        torch.testing.assert_close(coeffs, a["pred_coeffs"][0, idx], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(embeds, a["pred_embeds"][0, idx], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mode", ["ada", "ali"])
def test_fcb_even_kernel_keeps_size(mode):
    m = FCB(4, 3, (3, 2), mode)
    assert m(torch.randn(2, 4, 5, 6), torch.randn(2, 4, 5, 6)).shape == (2, 3, 5, 6)


# ---------------------------------------------------------------------------------------------------------------
# FCB with several anchors per kernel (Table 5)
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["ada", "ali"])
def test_fcb_each_anchor_calibrated_by_its_own_deltas(mode):
    cells = [(3 / 2**0.5, 3 * 2**0.5), (3.0, 3.0), (3 * 2**0.5, 3 / 2**0.5)]
    torch.manual_seed(0)
    head = STMaskPredictionHead(in_channels=8, num_classes=3, conv_dim=8, num_tower_convs=1, mask_dim=4,
                                track_dim=6, kernel_shapes=[(3, 3)], anchors_per_kernel=3, fcb_mode=mode,
                                fcb_branches=["class", "mask", "track"], anchor_cells=cells)
    assert len(head.class_pred) == 3 and all(isinstance(m, FCB) for m in head.class_pred)
    if mode == "ali":
        assert [m.anchor_cells for m in head.class_pred] == cells
    x = torch.randn(1, 8, 5, 6)
    with torch.no_grad():
        out = head([x])
        up = head.upfeature(x)
        box = head.box_pred(head.box_tower(up))  # (1, 3 * 5, H, W), anchor-major
        tower = head.class_tower(up)
        logits = out["pred_logits"].view(1, 5, 6, 3, 4)
        for j in range(3):
            ref = head.class_pred[j](tower, box[:, 5 * j: 5 * j + 4])  # anchor j's own deltas
            torch.testing.assert_close(logits[0, :, :, j].permute(2, 0, 1), ref[0], atol=1e-5, rtol=1e-5)


def test_table5_fcb_configs_build():
    from stmask_d2.modeling.anchor_generator import anchor_cell_sizes

    cfg = get_cfg()
    add_stmask_config(cfg)
    cfg.merge_from_file("configs/ablations/table5_fcb_ali.yaml")
    cells = anchor_cell_sizes(cfg)
    assert len(cells) == 3 and cells[0] == (3.0, 3.0) and cells[1][0] > cells[1][1]


# ---------------------------------------------------------------------------------------------------------------
# initial weights independent of optional parts
# ---------------------------------------------------------------------------------------------------------------
def _tiny_model(opts):
    from detectron2.modeling import build_model

    cfg = get_cfg()
    add_stmask_config(cfg)
    cfg.merge_from_file(CONFIG)
    cfg.merge_from_list(["MODEL.DEVICE", "cpu"] + opts)
    torch.manual_seed(cfg.SEED)
    return build_model(cfg)


def test_shared_initial_weights_independent_of_tf_and_fcb():
    base = _tiny_model(["MODEL.STMASK.TF.ENABLED", "False", "MODEL.STMASK.FCB.MODE", "none"]).state_dict()
    tf = _tiny_model(["MODEL.STMASK.TF.ENABLED", "True", "MODEL.STMASK.FCB.MODE", "none"]).state_dict()
    fcb = _tiny_model(["MODEL.STMASK.TF.ENABLED", "True", "MODEL.STMASK.FCB.MODE", "ada",
                       "MODEL.STMASK.FCB.BRANCHES", "['class', 'mask']"]).state_dict()
    assert any(k.startswith("tf_head.") for k in tf) and not any(k.startswith("tf_head.") for k in base)
    shared = [k for k in base if k in tf and base[k].shape == tf[k].shape]
    assert len(shared) == len(base)
    for k in shared:
        assert torch.equal(base[k], tf[k]), k
    for k in fcb:
        if k.startswith(("head.class_pred", "head.coeff_pred")):
            continue
        ref = tf[k] if k.startswith("tf_head.") else base[k]
        assert torch.equal(ref, fcb[k]), k
    # different seeds still give different weights
    other = _tiny_model(["SEED", "8"]).state_dict()
    assert not torch.equal(other["head.box_pred.convs.0.weight"], base["head.box_pred.convs.0.weight"])


# ---------------------------------------------------------------------------------------------------------------
# released no-TF tracker
# ---------------------------------------------------------------------------------------------------------------
def _dets(boxes, scores, embeds, classes=None):
    n = len(boxes)
    masks = torch.zeros(n, 20, 20)
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        masks[i, y1 // 4: y2 // 4, x1 // 4: x2 // 4] = 0.9
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).view(n, 4),
        "scores": torch.tensor(scores),
        "classes": torch.tensor(classes or [0] * n, dtype=torch.long),
        "coeffs": torch.zeros(n, 4),
        "embeds": torch.nn.functional.normalize(torch.tensor(embeds, dtype=torch.float32).view(n, 2), dim=1),
        "masks": masks,
    }


def test_frame_level_tracker_emits_only_current_detections():
    tr = OnlineTracker(frame_level=True)
    out = tr.update(_dets([[0, 0, 20, 20], [40, 40, 72, 72]], [0.9, 0.8], [[1, 0], [0, 1]]))
    assert out["track_ids"].tolist() == [0, 1]
    # frame 2: only the second object is detected (moved a little): only it is emitted, with its own box / score
    out = tr.update(_dets([[44, 40, 76, 72]], [0.7], [[0, 1]]))
    assert out["track_ids"].tolist() == [1] and out["scores"].tolist() == [pytest.approx(0.7)]
    assert out["boxes"].tolist() == [[44, 40, 76, 72]] and out["ages"].tolist() == [0]
    # frame 3: nothing detected -> nothing emitted (no stale missing track)
    empty = _dets([], [], [])
    assert tr.update(empty)["track_ids"].numel() == 0
    # frame 4: the first object again: matched to its last detection (id 0), not a new track
    out = tr.update(_dets([[0, 0, 20, 20]], [0.9], [[1, 0]]))
    assert out["track_ids"].tolist() == [0]
    with pytest.raises(AssertionError, match="no propagated"):
        tr.update(_dets([[0, 0, 20, 20]], [0.9], [[1, 0]]), propagated={})


def test_frame_level_tracker_ambiguous_detection_keeps_memory():
    tr = OnlineTracker(frame_level=True)
    tr.update(_dets([[0, 0, 40, 40], [20, 0, 60, 40]], [0.9, 0.8], [[1, 0], [0, 1]]))
    before = tr.memory["boxes"].clone()
    # a detection overlapping both rows (mask IoU > 0.3 with 2 rows): keeps an id, the memory is not overwritten
    out = tr.update(_dets([[8, 0, 52, 40]], [0.95], [[1, 0]]))
    assert out["track_ids"].tolist() == [0] and out["boxes"].tolist() == [[8, 0, 52, 40]]
    assert torch.equal(tr.memory["boxes"], before)


def test_no_tf_config_selects_frame_level_tracker():
    cfg = get_cfg()
    add_stmask_config(cfg)
    cfg.MODEL.STMASK.TF.ENABLED = False
    assert OnlineTracker(cfg).frame_level
    cfg.MODEL.STMASK.TRACKER.NO_TF_MODE = "propagate"
    assert not OnlineTracker(cfg).frame_level
    cfg.MODEL.STMASK.TF.ENABLED = True
    cfg.MODEL.STMASK.TRACKER.NO_TF_MODE = "released"
    assert not OnlineTracker(cfg).frame_level


# ---------------------------------------------------------------------------------------------------------------
# per-class NMS score threshold, every track written, stem trainable
# ---------------------------------------------------------------------------------------------------------------
def test_per_class_nms_drops_scores_at_or_below_threshold():
    from detectron2.modeling.box_regression import Box2BoxTransform

    anchors = Boxes(torch.tensor([[0, 0, 10, 10], [50, 50, 60, 60], [100, 0, 110, 10]], dtype=torch.float32))
    # class probabilities 0.9 (x centerness -0.5 / 0.05 / 0.5): only the last has score > 0.05
    logits = torch.tensor([[5.0, -5.0, 2.7]] * 3)
    centerness = torch.tensor([-0.5, 0.05, 0.5])
    dets = detect_frame(logits, torch.zeros(3, 4), torch.zeros(3, 2), torch.zeros(3, 2), centerness, anchors,
                        Box2BoxTransform(weights=(10.0, 10.0, 5.0, 5.0)), (120, 120), cross_class=False)
    assert dets.anchor_indices.tolist() == [2] and float(dets.scores[0]) > 0.05


def test_every_track_written_by_default():
    from stmask_d2.evaluation.evaluator import instances_to_ytvis_results

    cfg = get_cfg()
    add_stmask_config(cfg)
    assert cfg.MODEL.STMASK.TEST.MAX_TRACKS_PER_VIDEO == 0
    acc = VideoResults()
    acc.add_frame(0, list(range(150)), [0.5] * 150, [0] * 150, [{"size": [2, 2], "counts": "4"}] * 150)
    tracks = acc.finalize(1, cfg.MODEL.STMASK.TEST.MAX_TRACKS_PER_VIDEO)
    assert len(tracks) == 150
    out = instances_to_ytvis_results({"video_id": 1, "length": 1, "tracks": tracks}, {0: 1})
    assert len(out) == 150


def test_stem_trains_by_default():
    cfg = get_cfg()
    add_stmask_config(cfg)
    cfg.merge_from_file("configs/Base-STMask.yaml")
    assert cfg.MODEL.BACKBONE.FREEZE_AT == 0


def test_image_batches_keep_masks():
    """Detectron2's DatasetMapper keeps instance masks only with MODEL.MASK_ON (frame-level / COCO training)."""
    cfg = get_cfg()
    add_stmask_config(cfg)
    cfg.merge_from_file("configs/Base-STMask.yaml")  # where the STMask values of Detectron2 keys are set
    assert cfg.MODEL.MASK_ON
