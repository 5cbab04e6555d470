import math

import pytest
import torch
import torch.nn.functional as F

from stmask_d2.tracking import OnlineTracker

HP, WP = 16, 16


def _mask(x1, y1, x2, y2):
    m = torch.zeros(HP, WP)
    m[y1:y2, x1:x2] = 0.9
    return m


def _dets(boxes, scores, embeds, masks, classes=None, k=4):
    n = len(scores)
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(n, 4),
        "scores": torch.tensor(scores, dtype=torch.float32),
        "classes": torch.tensor(classes if classes is not None else [1] * n, dtype=torch.long),
        "coeffs": torch.zeros(n, k),
        "embeds": F.normalize(torch.as_tensor(embeds, dtype=torch.float32).reshape(n, 2 if n == 0 else -1), dim=1),
        "masks": torch.stack(masks) if n else torch.zeros(0, HP, WP),
    }


def _empty():
    return _dets([], [], torch.zeros(0, 2), [])


def _unit(angle):
    return [math.cos(angle), math.sin(angle)]


def test_released_score_vs_new_track_column():
    tr = OnlineTracker()
    tr.update(_dets([[0, 0, 40, 40]], [0.9], [_unit(0)], [_mask(0, 0, 8, 8)]))
    # cos 0.6 -> 0.8, mask IoU 0.5 (32 of 64 px), box IoU 0 -> 1.3 < 1.4: new track
    a = math.acos(0.6)
    d = _dets([[100, 100, 120, 120]], [0.8], [_unit(a)], [_mask(0, 0, 8, 4)])
    s = tr.match_scores(d, tr.memory)
    assert s[0, 0].item() == pytest.approx(1.4)
    assert s[0, 1].item() == pytest.approx(0.8 + 0.5 + 0.0, abs=1e-5)
    out = tr.update(d)
    assert sorted(out["track_ids"].tolist()) == [0, 1]
    # a detection identical to track 0: S = 1 + 1 + 2 = 4 -> keeps id 0
    tr2 = OnlineTracker()
    tr2.update(_dets([[0, 0, 40, 40]], [0.9], [_unit(0)], [_mask(0, 0, 8, 8)]))
    d = _dets([[0, 0, 40, 40]], [0.7], [_unit(0)], [_mask(0, 0, 8, 8)])
    assert tr2.match_scores(d, tr2.memory)[0, 1].item() == pytest.approx(4.0)
    out = tr2.update(d)
    assert out["track_ids"].tolist() == [0] and out["scores"].tolist() == [pytest.approx(0.7)]
    assert out["ages"].tolist() == [0]


def test_paper_mode_threshold():
    def run(mask_iou_cols):
        tr = OnlineTracker(match_mode="paper", alpha=1.0, beta=1.0, paper_thresh=0.8)
        tr.update(_dets([[0, 0, 40, 40]], [0.9], [_unit(0)], [_mask(0, 0, 10, 10)]))
        # cos 0.5; mask IoU = cols/10
        d = _dets([[0, 0, 40, 40]], [0.9], [_unit(math.acos(0.5))], [_mask(0, 0, mask_iou_cols, 10)])
        assert tr.match_scores(d, tr.memory)[0, 1].item() == pytest.approx(0.5 + mask_iou_cols / 10, abs=1e-5)
        return tr.update(d)["track_ids"].tolist()

    assert sorted(run(2)) == [0, 1]  # 0.7 < 0.8: new id
    assert run(4) == [0]  # 0.9 > 0.8: keeps id 0


def test_descending_score_assignment_and_conflict_drop():
    tr = OnlineTracker()
    tr.update(_dets([[0, 0, 40, 40]], [0.9], [_unit(0)], [_mask(0, 0, 8, 8)]))
    # both detections claim track 0; the higher score (listed second) wins, the other is dropped
    d = _dets(
        [[0, 0, 40, 40], [0, 0, 40, 40]],
        [0.6, 0.8],
        [_unit(0), _unit(0.1)],
        [_mask(0, 0, 8, 8), _mask(0, 0, 8, 7)],
        classes=[3, 4],
    )
    out = tr.update(d)
    assert out["track_ids"].tolist() == [0]
    assert out["scores"].tolist() == [pytest.approx(0.8)]
    assert out["classes"].tolist() == [4]
    assert len(tr) == 1
    # the next new detection gets id 1 (the loser did not consume an id)
    out = tr.update(_dets([[200, 200, 240, 240]], [0.5], [_unit(2.0)], [_mask(12, 12, 16, 16)]))
    assert 1 in out["track_ids"].tolist()


def test_decay_and_age_limit():
    tr = OnlineTracker(max_missing_output=10, prune_after=30, score_decay=0.95)
    tr.update(_dets([[0, 0, 40, 40]], [0.9], [_unit(0)], [_mask(0, 0, 8, 8)]))
    for k in range(1, 14):
        mem = tr.memory
        prop = {"boxes": mem["boxes"] + 1, "coeffs": mem["coeffs"] + 0.1, "masks": mem["masks"]}
        out = tr.update(_empty(), prop)
        assert tr.memory["scores"][0].item() == pytest.approx(0.9 * 0.95**k, rel=1e-5)
        assert tr.memory["ages"][0].item() == k
        assert tr.memory["boxes"][0, 0].item() == pytest.approx(k)  # took the propagated box
        if k <= 10:
            assert out["track_ids"].tolist() == [0]
            assert out["scores"][0].item() == pytest.approx(0.9 * 0.95**k, rel=1e-5)
        else:
            assert out["track_ids"].numel() == 0


@pytest.mark.slow
def test_pruning_bounds_memory_over_long_stream():
    g = torch.Generator().manual_seed(0)

    def stream(tr):
        sizes = []
        for t in range(500):
            x = t % 4 * 4
            e = torch.randn(1, 8, generator=g)
            d = _dets([[x * 4, 0, x * 4 + 10, 10]], [0.9], e, [_mask(x, (t // 4) % 4 * 4, x + 4, (t // 4) % 4 * 4 + 4)])
            mem = tr.memory
            prop = None if mem is None else {"boxes": mem["boxes"], "coeffs": mem["coeffs"], "masks": mem["masks"]}
            tr.update(d, prop)
            sizes.append(len(tr))
        return sizes

    pruned = stream(OnlineTracker(prune_after=30, new_track_score=10.0))  # every detection starts a track
    assert max(pruned) <= 31 and pruned[-1] == 31
    unpruned = stream(OnlineTracker(prune_after=0, new_track_score=10.0))  # released: never prunes
    assert unpruned[-1] == 500


def test_pruned_tracks_are_forgotten():
    tr = OnlineTracker(max_missing_output=2, prune_after=3)
    tr.update(_dets([[0, 0, 40, 40]], [0.9], [_unit(0)], [_mask(0, 0, 8, 8)]))
    for _ in range(3):
        tr.update(_empty())
    assert len(tr) == 1
    tr.update(_empty())
    assert len(tr) == 0 and tr.memory is None
    # the same object again gets a fresh id
    out = tr.update(_dets([[0, 0, 40, 40]], [0.9], [_unit(0)], [_mask(0, 0, 8, 8)]))
    assert out["track_ids"].tolist() == [1]


def test_min_mask_pixels():
    tr = OnlineTracker(min_mask_pixels=1)
    out = tr.update(
        _dets(
            [[0, 0, 4, 4], [20, 20, 28, 24]],
            [0.9, 0.8],
            [_unit(0), _unit(1.5)],
            [_mask(0, 0, 1, 1), _mask(5, 5, 7, 6)],  # 1 pixel, 2 pixels
        )
    )
    assert out["track_ids"].tolist() == [1]
    assert len(tr) == 2  # the 1-pixel track stays in memory, it is just not emitted


def test_from_config_and_reset():
    from detectron2.config import get_cfg

    from stmask_d2.config import add_stmask_config

    cfg = get_cfg()
    add_stmask_config(cfg)
    kwargs = OnlineTracker.from_config(cfg)  # Detectron2 @configurable: a kwargs dict, OnlineTracker(cfg) builds
    assert isinstance(kwargs, dict) and kwargs["match_mode"] == cfg.MODEL.STMASK.TRACKER.MATCH_MODE
    assert OnlineTracker(**kwargs).__dict__.keys() == OnlineTracker(cfg).__dict__.keys()
    assert OnlineTracker(cfg, prune_after=40).prune_after == 40  # explicit kwargs override the config
    tr = OnlineTracker(cfg)
    assert tr.new_track_score == pytest.approx(1.4) and tr.prune_after == 30 and tr.score_thresh == 0.05
    tr.update(_dets([[0, 0, 40, 40]], [0.9], [_unit(0)], [_mask(0, 0, 8, 8)]))
    tr.reset()
    assert tr.memory is None
    assert tr.update(_dets([[0, 0, 40, 40]], [0.9], [_unit(0)], [_mask(0, 0, 8, 8)]))["track_ids"].tolist() == [0]


# ---------------------------------------------------------------------------------------------------------------
# the steps of update, one at a time on tiny tensors
# ---------------------------------------------------------------------------------------------------------------
def test_assign_step_descending_score_and_conflicts():
    # columns: 0 = new track, j >= 1 = memory row j - 1; detections 0, 2 and 3 claim row 1, detection 4 row 0
    jstar = torch.tensor([2, 0, 2, 2, 1, 0])
    scores = torch.tensor([0.5, 0.3, 0.9, 0.9, 0.1, 0.7])
    matched_dets, matched_rows, new_dets = OnlineTracker.assign(jstar, scores)
    assert matched_dets.tolist() == [2, 4]  # 2 beats 3 on the score tie (listed first) and 0 (lower score)
    assert matched_rows.tolist() == [1, 0]
    assert new_dets.tolist() == [5, 1]  # descending score
    # nothing claimed (empty memory or all new) and no detection at all
    md, mr, nd = OnlineTracker.assign(torch.zeros(3, dtype=torch.long), torch.tensor([0.1, 0.3, 0.2]))
    assert md.tolist() == [] and mr.tolist() == [] and nd.tolist() == [1, 2, 0]
    md, mr, nd = OnlineTracker.assign(torch.zeros(0, dtype=torch.long), torch.zeros(0))
    assert md.numel() == mr.numel() == nd.numel() == 0 and md.dtype == torch.long


def test_propagate_and_match_steps():
    tr = OnlineTracker()
    assert tr.propagate(None) is None  # empty memory
    assert tr.match(_empty(), None).tolist() == []
    d0 = _dets([[0, 0, 40, 40], [100, 100, 140, 140]], [0.9, 0.8], [_unit(0), _unit(2.0)],
               [_mask(0, 0, 8, 8), _mask(8, 8, 16, 16)])
    assert tr.match(d0, None).tolist() == [0, 0]  # empty memory: every detection opens a track
    tr.update(d0)
    mem = tr.memory
    prop = {"boxes": mem["boxes"] + 100, "coeffs": mem["coeffs"].double() + 1, "masks": mem["masks"].flip(0)}
    cand = tr.propagate(prop)
    assert torch.equal(cand["boxes"], mem["boxes"] + 100) and cand["coeffs"].dtype == mem["coeffs"].dtype
    assert torch.equal(cand["masks"], mem["masks"].flip(0)) and cand["scores"] is mem["scores"]
    assert torch.equal(tr.memory["boxes"], prop["boxes"] - 100)  # the memory itself is untouched
    with pytest.raises(AssertionError, match="propagate tracker.memory"):
        tr.propagate({k: v[:1] for k, v in prop.items()})
    # detection like track 1 (embedding, mask, box) -> column 2; an unrelated one -> new-track column
    d = _dets([[100, 100, 140, 140], [0, 200, 10, 210]], [0.7, 0.6], [_unit(2.0), _unit(4.0)],
              [_mask(8, 8, 16, 16), _mask(0, 15, 1, 16)])
    assert tr.match(d, tr.propagate(None)).tolist() == [2, 0]


def test_age_open_prune_emit_steps():
    tr = OnlineTracker(score_decay=0.5, max_missing_output=1, prune_after=2, min_mask_pixels=1)
    d0 = _dets([[0, 0, 40, 40], [100, 100, 140, 140]], [0.9, 0.8], [_unit(0), _unit(2.0)],
               [_mask(0, 0, 8, 8), _mask(8, 8, 16, 16)])
    mem, ids = tr.open_tracks(None, d0, torch.tensor([1, 0]))
    assert ids.tolist() == [0, 1] and mem["ids"].tolist() == [0, 1] and mem["scores"].tolist() == pytest.approx([0.8, 0.9])
    assert mem["ages"].tolist() == [0, 0] and tr._next_id == 2
    tr._mem = mem
    # row 1 is matched by detection 0 of the next frame, row 0 is missing: decayed and aged
    d1 = _dets([[1, 1, 41, 41]], [0.6], [_unit(0)], [_mask(0, 0, 8, 8)], classes=[7])
    aged = tr.age(tr.propagate(None), d1, torch.tensor([0]), torch.tensor([1]))
    assert aged["ids"].tolist() == [0, 1] and aged["ages"].tolist() == [1, 0]
    assert aged["scores"].tolist() == [pytest.approx(0.4), pytest.approx(0.6)]
    assert aged["classes"].tolist() == [1, 7] and aged["boxes"][1].tolist() == [1, 1, 41, 41]
    none = torch.zeros(0, dtype=torch.long)
    same, ids = tr.open_tracks(aged, d1, none)
    assert same is aged and ids.numel() == 0 and tr._next_id == 2
    # emission: age <= 1, > 1 mask pixel, score > 0.05
    aged["ages"] = torch.tensor([2, 0])
    out = tr.emit(aged)
    assert out["track_ids"].tolist() == [1] and out["ages"].tolist() == [0]
    assert set(out) == {"track_ids", "boxes", "scores", "classes", "masks", "ages"}
    # pruning: age > 2 leaves, an all-pruned memory is None
    aged["ages"] = torch.tensor([3, 2])
    assert tr.prune(aged)["ids"].tolist() == [1]
    aged["ages"] = torch.tensor([3, 3])
    assert tr.prune(aged) is None
    assert OnlineTracker(prune_after=0).prune(aged)["ids"].tolist() == [0, 1]  # released: never prunes
