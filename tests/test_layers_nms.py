import torch
from torchvision.ops import nms as tv_nms

from stmask_d2.layers import fast_nms, fast_nms_per_class


def _chain():
    # A overlaps B (IoU 0.6), B overlaps C (IoU 0.6), A and C do not overlap enough.
    boxes = torch.tensor([[0.0, 0, 10, 10], [2.5, 0, 12.5, 10], [5.0, 0, 15, 10]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    return boxes, scores


def test_fast_nms_suppressed_still_suppress():
    boxes, scores = _chain()
    keep = fast_nms(boxes, scores, 0.5, 200)
    assert keep.tolist() == [0]  # C is suppressed by the suppressed B
    assert tv_nms(boxes, scores, 0.5).tolist() == [0, 2]  # greedy NMS would keep C


def test_fast_nms_order_threshold_topk():
    boxes = torch.tensor([[0.0, 0, 10, 10], [50, 50, 60, 60], [0, 0, 10, 11], [100, 100, 110, 110]])
    scores = torch.tensor([0.3, 0.9, 0.5, 0.1])
    keep = fast_nms(boxes, scores, 0.5, 200)
    assert keep.tolist() == [1, 2, 3]  # sorted by score desc; box 0 suppressed by box 2 (IoU 10/11)
    assert fast_nms(boxes, scores, 0.95, 200).tolist() == [1, 2, 0, 3]  # IoU 0.909 <= 0.95
    assert fast_nms(boxes, scores, 0.5, 2).tolist() == [1, 2]  # top_k before NMS
    assert fast_nms(boxes[:0], scores[:0]).numel() == 0
    # IoU exactly at threshold is kept (strict >)
    b = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 20]])
    assert fast_nms(b, torch.tensor([1.0, 0.5]), 0.5).tolist() == [0, 1]


def test_fast_nms_per_class():
    boxes, _ = _chain()
    boxes = torch.cat([boxes, torch.tensor([[40.0, 40, 50, 50]])])
    # class 0: chain A, B, C; class 1: only box 1 and box 3 score
    scores = torch.tensor([[0.9, 0.01], [0.8, 0.6], [0.7, 0.02], [0.04, 0.5]])
    idx, cls, sc = fast_nms_per_class(boxes, scores, 0.5, 200, score_thresh=0.05, max_dets=100)
    assert idx.tolist() == [0, 1, 3]
    assert cls.tolist() == [0, 1, 1]
    assert torch.allclose(sc, torch.tensor([0.9, 0.6, 0.5]))
    # box 1 is suppressed for class 0 but kept for class 1 (class-wise NMS); low scores never kept
    idx, cls, sc = fast_nms_per_class(boxes, scores, 0.5, 200, score_thresh=0.05, max_dets=2)
    assert idx.tolist() == [0, 1]
    # per-class top_k = 1 keeps only each class's best candidate
    idx, cls, sc = fast_nms_per_class(boxes, scores, 0.5, 1, score_thresh=0.05, max_dets=100)
    assert sorted(zip(idx.tolist(), cls.tolist())) == [(0, 0), (1, 1)]
    e = fast_nms_per_class(boxes[:0], scores[:0])
    assert all(t.numel() == 0 for t in e)


def test_fast_nms_per_class_matches_loop():
    torch.manual_seed(0)
    n, c = 60, 4
    xy = torch.rand(n, 2) * 50
    boxes = torch.cat([xy, xy + 10 + torch.rand(n, 2) * 20], 1)
    scores = torch.rand(n, c)
    idx, cls, sc = fast_nms_per_class(boxes, scores, 0.5, 30, 0.3, 1000)
    got = set(zip(idx.tolist(), cls.tolist()))
    exp = set()
    for k in range(c):
        keep = fast_nms(boxes, scores[:, k], 0.5, 30)
        exp |= {(i, k) for i in keep.tolist() if scores[i, k] > 0.3}
    assert got == exp
    assert (sc[:-1] >= sc[1:]).all()
