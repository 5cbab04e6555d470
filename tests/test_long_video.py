"""Long videos (issue 6.6): a synthetic stream generated on the fly runs through ``model.track_frames`` with the
tracker memory bounded (pruning) and the per-frame output streaming; tools/long_video_memory.py (library:
stmask_d2.engine.long_video) measures RSS."""
import pytest
import torch

NUM_FRAMES = 150  # 25x the pruning horizon; 2,000 frames: tools/long_video_memory.py


@pytest.fixture(scope="module")
def tool():
    from stmask_d2.engine import long_video

    return long_video


@pytest.fixture
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convolutions: more threads only spin on a shared machine
    yield
    torch.set_num_threads(n)


@pytest.mark.slow
def test_tracker_memory_bounded_over_a_long_stream(tool, one_thread):
    max_dets, prune = 10, 5
    model, cfg = tool.build_tiny_model(opts=["MODEL.STMASK.TEST.MAX_DETECTIONS", str(max_dets),
                                             "MODEL.STMASK.TRACKER.PRUNE_AFTER", str(prune),
                                             "MODEL.STMASK.TRACKER.MAX_MISSING_OUTPUT", "3",
                                             "MODEL.STMASK.TRACKER.NEW_TRACK_SCORE", "10.0"],  # every det: a new track
                                       min_size=32, max_size=48)
    sizes = tool.instrument_tracker(model)
    frames = tool.synthetic_stream(NUM_FRAMES, 32, 48)
    n = 0
    for inst in model.track_frames(frames, 32, 48):
        n += 1
        assert inst.image_size == (32, 48)
    assert n == NUM_FRAMES and len(sizes) == NUM_FRAMES
    bound = max_dets * (prune + 1)
    assert max(sizes) <= bound, max(sizes)
    assert max(sizes) >= 2 * max_dets  # tracks did accumulate (the bound is what stops them)
    assert sizes[-1] == bound  # full (a new track per detection) but never above


def test_stream_helpers(tool):
    frames = list(tool.synthetic_stream(5, 32, 48))
    assert len(frames) == 5 and frames[0].shape == (32, 48, 3) and frames[0].dtype.name == "uint8"
    assert not all((frames[0] == f).all() for f in frames[1:])  # the squares move
    cur, peak = tool.rss_mib()
    assert peak > 0 and cur >= 0
