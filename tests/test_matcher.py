
import pytest
import torch

from detectron2.config import get_cfg
from detectron2.modeling.matcher import Matcher
from detectron2.structures import Boxes, pairwise_iou

from stmask_d2.config import add_stmask_config
from stmask_d2.modeling.matcher import ClassAwareMatcher


def _cfg():
    cfg = get_cfg()
    add_stmask_config(cfg)
    return cfg


def _logits_with_prob(p, num_classes=3, cls=0):
    """(len(p), C+1) logits whose softmax gives probability p[i] to class `cls`, the rest spread evenly."""
    p = torch.as_tensor(p, dtype=torch.float64)
    rest = (1 - p)[:, None] / num_classes
    probs = rest.repeat(1, num_classes + 1)
    probs[:, cls] = p
    return probs.log().float()


def test_from_config():
    m = ClassAwareMatcher(_cfg())
    assert m.thresholds == [0.4, 0.5] and m.labels == [0, -1, 1]
    assert m.class_aware and m.multi_gt_neutral and m.allow_low_quality_matches and m.class_prob == "softmax"


def test_rc8_class_aware():
    m = ClassAwareMatcher(_cfg())
    iou = torch.tensor([[0.8, 0.6, 0.45, 0.3]])
    logits = _logits_with_prob([0.5, 1 / 3, 0.2, 0.1])
    matched, labels, overlap, (neg, pos) = m.match(
        None, None, torch.tensor([0]), logits, match_quality_matrix=iou
    )
    assert labels.tolist() == [1, 1, 0, 0]
    assert matched.tolist() == [0, 0, 0, 0]
    assert pos == pytest.approx(1.083333, abs=1e-5)
    assert neg == pytest.approx(0.983333, abs=1e-5)
    assert overlap.tolist() == pytest.approx([2.0, 1.1, 0.45, 0.3], abs=1e-5)
    # plain IoU thresholds would leave prior 2 neutral
    m_plain = ClassAwareMatcher(thresholds=[0.4, 0.5], labels=[0, -1, 1], class_aware=False)
    assert m_plain(None, None, match_quality_matrix=iou)[1].tolist() == [1, 1, -1, 0]


def _random_boxes(n, size=100.0, gen=None):
    xy = torch.rand(n, 2, generator=gen) * size
    wh = torch.rand(n, 2, generator=gen) * size / 2 + 1
    return Boxes(torch.cat([xy, xy + wh], dim=1))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_plain_iou_equals_detectron2_matcher(seed):
    g = torch.Generator().manual_seed(seed)
    gt, anchors = _random_boxes(5, gen=g), _random_boxes(400, gen=g)
    ours = ClassAwareMatcher(class_aware=False, multi_gt_neutral=False, allow_low_quality_matches=False)
    d2 = Matcher([0.4, 0.5], [0, -1, 1], allow_low_quality_matches=False)
    m1, l1 = ours(gt, anchors)
    m2, l2 = d2(pairwise_iou(gt, anchors))
    assert torch.equal(l1, l2)
    assert torch.equal(m1, m2)
    assert (l1 == 1).any() and (l1 == 0).any()


def test_low_quality_equals_detectron2_without_conflicts():
    # each GT's best anchor is unique and matched to that GT anyway: greedy == Detectron2's low-quality rule
    anchors = Boxes(torch.tensor([[0, 0, 10, 10], [50, 50, 60, 60], [100, 0, 110, 10], [0, 0, 4, 4.0]]))
    gt = Boxes(torch.tensor([[2, 2, 12, 12], [52, 50, 66, 62.0]]))
    ours = ClassAwareMatcher(class_aware=False, multi_gt_neutral=False, allow_low_quality_matches=True)
    d2 = Matcher([0.4, 0.5], [0, -1, 1], allow_low_quality_matches=True)
    m1, l1 = ours(gt, anchors)
    m2, l2 = d2(pairwise_iou(gt, anchors))
    assert torch.equal(l1, l2) and l1.tolist() == [1, 1, 0, 0]
    assert torch.equal(m1[l1 == 1], m2[l2 == 1])


def test_zero_gt_all_negative():
    m = ClassAwareMatcher(_cfg())
    anchors = _random_boxes(50)
    matched, labels = m(Boxes(torch.zeros(0, 4)), anchors, torch.zeros(0, dtype=torch.int64), torch.zeros(50, 4))
    assert labels.dtype == torch.int8 and (labels == 0).all()
    assert matched.shape == (50,) and (matched == 0).all()


def test_multi_gt_neutral():
    # anchor 0 has IoU 0.6 with GT 0 and 0.42 with GT 1 -> neutral; anchors 1, 2 are each GT's best
    iou = torch.tensor([[0.6, 0.9, 0.0, 0.1], [0.42, 0.0, 0.8, 0.1]])
    on = ClassAwareMatcher(class_aware=False, multi_gt_neutral=True)
    off = ClassAwareMatcher(class_aware=False, multi_gt_neutral=False)
    _, l_on, ov, _ = on.match(None, None, match_quality_matrix=iou)
    _, l_off = off(None, None, match_quality_matrix=iou)
    assert l_on.tolist() == [-1, 1, 1, 0]
    assert ov[0].item() == pytest.approx(0.45)
    assert l_off.tolist() == [1, 1, 1, 0]


def test_low_quality_greedy_no_stealing():
    # both GTs have anchor 0 as their best; GT 1 (0.35) takes it first, GT 0 falls back to anchor 1 (0.2)
    iou = torch.tensor([[0.3, 0.2, 0.0], [0.35, 0.0, 0.25]])
    m = ClassAwareMatcher(class_aware=False, multi_gt_neutral=False, allow_low_quality_matches=True)
    matched, labels, overlap, _ = m.match(None, None, match_quality_matrix=iou)
    assert labels.tolist() == [1, 1, 0]
    assert matched[:2].tolist() == [1, 0]
    assert overlap[:2].tolist() == [2.0, 2.0]
    # without the rule nothing reaches 0.5
    m2 = ClassAwareMatcher(class_aware=False, multi_gt_neutral=False, allow_low_quality_matches=False)
    assert m2(None, None, match_quality_matrix=iou)[1].tolist() == [0, 0, 0]


def test_forced_match_overrides_argmax_gt():
    # anchor 0: IoU 0.45 to GT 1 (its argmax) but it is GT 0's only overlapping anchor -> forced to GT 0
    iou = torch.tensor([[0.3, 0.0], [0.45, 0.9]])
    m = ClassAwareMatcher(class_aware=False, multi_gt_neutral=False)
    matched, labels = m(None, None, match_quality_matrix=iou)
    assert labels.tolist() == [1, 1] and matched.tolist() == [0, 1]


def test_sigmoid_class_prob():
    m = ClassAwareMatcher(class_aware=True, multi_gt_neutral=False, allow_low_quality_matches=False,
                          class_prob="sigmoid")
    iou = torch.tensor([[0.8, 0.6]])
    logits = torch.tensor([[0.0, -5.0], [0.0, 5.0]])  # sigmoid(0) = 0.5 for class 0
    _, labels, overlap, (neg, pos) = m.match(None, None, torch.tensor([0]), logits, match_quality_matrix=iou)
    q = 2 * 0.5 / 1.5
    assert overlap.tolist() == pytest.approx([0.8 + q, 0.6 + q], abs=1e-6)
    assert pos == pytest.approx(0.5 + q, abs=1e-6)
    assert labels.tolist() == [1, 1]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_vectorised_forced_match_equals_greedy(seed):
    g = torch.Generator().manual_seed(seed)
    iou = torch.rand(6, 300, generator=g) * 0.45
    assert torch.unique(iou.argmax(dim=1)).numel() == 6
    m = ClassAwareMatcher(class_aware=False, multi_gt_neutral=False)
    matched, labels, overlap, _ = m.match(None, None, match_quality_matrix=iou)
    ref_overlap, ref_matched = iou.max(dim=0)
    ClassAwareMatcher._greedy_force_(iou, ref_overlap, ref_matched)
    assert torch.equal(overlap, ref_overlap) and torch.equal(matched, ref_matched)
    assert int((labels == 1).sum()) == 6
