import pytest
import torch

from stmask_d2.tracking import VideoResults


def _rle(tag):
    return {"size": [4, 4], "counts": tag}


def test_rc12_aggregation():
    acc = VideoResults()
    acc.add_frame(0, [3], [0.9], [5], [_rle("r0")])
    acc.add_frame(1, torch.tensor([3]), torch.tensor([0.6]), torch.tensor([5]), [_rle("r1")])
    acc.add_frame(3, [3], [0.3], [7], [_rle("r3")])
    (track,) = acc.finalize(5, max_tracks=100)
    assert track["track_id"] == 3
    assert track["score"] == pytest.approx(0.6)
    assert track["category_id"] == 5
    assert track["segmentations"] == [_rle("r0"), _rle("r1"), None, _rle("r3"), None]


def test_majority_tie_goes_to_smaller_id():
    acc = VideoResults()
    acc.add_frame(0, [1], [0.5], [9], [_rle("a")])
    acc.add_frame(1, [1], [0.5], [4], [_rle("b")])
    assert acc.finalize(2)[0]["category_id"] == 4


def test_top_k_sorted_by_score():
    acc = VideoResults()
    acc.add_frame(0, [0, 1, 2, 3], [0.2, 0.8, 0.5, 0.1], [0, 0, 0, 0], [_rle(str(i)) for i in range(4)])
    out = acc.finalize(1, max_tracks=2)
    assert [d["track_id"] for d in out] == [1, 2]
    assert len(acc.finalize(1, max_tracks=None)) == 4
    assert all(len(d["segmentations"]) == 1 for d in out)
