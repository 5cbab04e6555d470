"""stmask_d2.utils.video: lazy image-list / video-file sources and folder/glob listing."""
import cv2
import numpy as np
import pytest

from stmask_d2.utils.video import FrameReadError, ImageListSource, VideoFileSource, frames_from_folder_or_glob


def _frames(n=5, h=24, w=32):
    out = []
    for t in range(n):
        f = np.zeros((h, w, 3), np.uint8)
        f[:, :, 2] = 200  # red in BGR
        f[4:12, 2 + 4 * t:10 + 4 * t, 1] = 255
        out.append(f)
    return out


def test_image_list_source(tmp_path):
    paths = []
    for t, f in enumerate(_frames(3)):
        p = tmp_path / f"{t}.png"
        cv2.imwrite(str(p), f)
        paths.append(str(p))
    gray = tmp_path / "g.png"
    cv2.imwrite(str(gray), np.full((24, 32), 77, np.uint8))
    rgba = tmp_path / "a.png"
    cv2.imwrite(str(rgba), np.full((24, 32, 4), 99, np.uint8))
    src = ImageListSource(paths + [str(gray), str(rgba)], "RGB")
    assert len(src) == 5
    assert src[0].shape == (24, 32, 3) and src[0].dtype == np.uint8 and src[0][0, 0, 0] == 200
    assert ImageListSource(paths, "BGR")[0][0, 0, 2] == 200
    assert src[3].shape == (24, 32, 3) and src[4].shape == (24, 32, 3)
    assert len(list(src)) == 5
    with pytest.raises(FrameReadError, match="missing.png"):
        ImageListSource([str(tmp_path / "missing.png")])[0]
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(FrameReadError, match="bad.jpg"):
        ImageListSource([str(bad)])[0]
    with pytest.raises(ValueError):
        ImageListSource(paths, "YUV")


def test_folder_and_glob_natural_sort(tmp_path):
    for name in ["10.jpg", "2.jpg", "1.jpg", "notes.txt"]:
        if name.endswith(".jpg"):
            cv2.imwrite(str(tmp_path / name), np.zeros((4, 4, 3), np.uint8))
        else:
            (tmp_path / name).write_text("x")
    src = frames_from_folder_or_glob(str(tmp_path))
    assert [p.rsplit("/", 1)[1] for p in src.file_names] == ["1.jpg", "2.jpg", "10.jpg"]
    assert len(frames_from_folder_or_glob(str(tmp_path / "*0.jpg"))) == 1
    with pytest.raises(FileNotFoundError):
        frames_from_folder_or_glob(str(tmp_path / "*.png"))


def test_video_file_source(tmp_path):
    path = str(tmp_path / "v.avi")
    wr = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (32, 24))
    assert wr.isOpened()
    for f in _frames(5):
        wr.write(f)
    wr.release()
    src = VideoFileSource(path, "RGB")
    assert (src.height, src.width, len(src)) == (24, 32, 5) and abs(src.fps - 10) < 1e-3
    frames = list(src)
    assert len(frames) == 5 and frames[0].shape == (24, 32, 3) and frames[0][0, 0, 0] > 150  # RGB red
    assert np.abs(src[2].astype(int) - frames[2].astype(int)).max() < 8
    assert VideoFileSource(path, "BGR")[0][0, 0, 2] > 150
    with pytest.raises(IndexError):
        src[5]


def test_video_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        VideoFileSource(str(tmp_path / "nope.mp4"))
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(FrameReadError, match="empty.mp4"):
        VideoFileSource(str(empty))
    junk = tmp_path / "junk.avi"
    junk.write_bytes(b"\x00" * 1000)
    with pytest.raises(FrameReadError, match="junk.avi"):
        VideoFileSource(str(junk))
