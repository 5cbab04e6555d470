import numpy as np
import torch
from detectron2.data import Metadata
from detectron2.structures import Boxes, Instances
from detectron2.utils.visualizer import ColorMode

from stmask_d2.utils.visualizer import TrackVisualizer, track_color, track_labels

H, W = 64, 96


def _instances(track_ids, classes, scores, boxes):
    inst = Instances((H, W))
    inst.track_ids = torch.tensor(track_ids, dtype=torch.int64)
    inst.pred_classes = torch.tensor(classes, dtype=torch.int64)
    inst.scores = torch.tensor(scores, dtype=torch.float32)
    inst.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
    masks = torch.zeros(len(track_ids), H, W, dtype=torch.bool)
    for k, (x0, y0, x1, y1) in enumerate(boxes):
        masks[k, int(y0) + 3:int(y1) - 3, int(x0) + 3:int(x1) - 3] = True
    inst.pred_masks = masks
    return inst


def test_track_color_is_a_function_of_the_id():
    assert np.array_equal(track_color(7), track_color(7))
    assert np.array_equal(track_color(np.int64(7)), track_color(7))
    assert all(0.0 <= c <= 1.0 for c in track_color(123456))
    # consecutive ids get different colours
    colors = {tuple(track_color(i)) for i in range(1, 11)}
    assert len(colors) == 10


def test_same_track_same_colour_across_frames():
    vis = TrackVisualizer(Metadata(thing_classes=["cat", "dog"]), alpha=0.5)
    frame = np.full((H, W, 3), 100, np.uint8)
    # frame 1: track 7 is a cat at the left with track 3; frame 2: track 7 moved right, other class, alone
    out1 = vis.draw_frame(frame, _instances([7, 3], [0, 1], [0.9, 0.8], [[2, 20, 40, 60], [50, 2, 90, 30]]))
    out2 = vis.draw_frame(frame, _instances([7], [1], [0.6], [[50, 20, 90, 60]]))
    p1, p2 = out1[40, 21], out2[40, 71]  # mask centres, away from the label text
    assert np.abs(p1.astype(int) - p2.astype(int)).max() <= 2
    expected = (100 * 0.5 + track_color(7) * 255 * 0.5)
    assert np.abs(p1.astype(float) - expected).max() <= 3
    # another track gets a different colour
    assert np.abs(out1[16, 70].astype(int) - p1.astype(int)).max() > 10
    assert out1.shape == frame.shape and out1.dtype == np.uint8
    assert (frame == 100).all()  # input untouched


def test_labels_contain_id_class_and_score():
    labels = track_labels([3, 12], [1, 4], [0.87, 0.5], ["cat", "dog"])
    assert labels[0] == "[3] dog 87%"
    assert labels[1] == "[12] 4 50%"  # class index when out of the names' range
    assert track_labels([5], [0], [0.25])[0] == "[5] 0 25%"


def test_label_drawn_text(monkeypatch):
    from detectron2.utils.visualizer import Visualizer

    seen = []
    orig = Visualizer.draw_text

    def spy(self, text, *a, **k):
        seen.append(text)
        return orig(self, text, *a, **k)

    monkeypatch.setattr(Visualizer, "draw_text", spy)
    vis = TrackVisualizer(Metadata(thing_classes=["cat", "dog"]))
    vis.draw_frame(np.zeros((H, W, 3), np.uint8), _instances([42], [0], [0.734], [[10, 10, 80, 60]]))
    assert seen == ["[42] cat 73%"]


def test_polygon_mode_bw_mode_and_empty():
    frame = np.random.RandomState(0).randint(0, 255, (H, W, 3)).astype(np.uint8)
    inst = _instances([1, 2], [0, 1], [0.9, 0.4], [[2, 2, 40, 40], [30, 20, 90, 60]])
    out = TrackVisualizer(fast_masks=False).draw_frame(frame, inst)
    assert out.shape == frame.shape and out.dtype == np.uint8
    bw = TrackVisualizer(instance_mode=ColorMode.IMAGE_BW).draw_frame(frame, inst[:0])
    assert (bw[..., 0] == bw[..., 1]).all() and (bw[..., 1] == bw[..., 2]).all()
    empty = TrackVisualizer().draw_frame(frame, inst[:0])
    assert np.array_equal(empty, frame) and empty is not frame
