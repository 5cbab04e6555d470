"""Lazy frame sources: ``len(src)``, ``src[t]`` and ``iter(src)`` give HWC uint8 frames in "RGB" or "BGR".

* :class:`ImageListSource`: a list of image files, each read on access (Detectron2 ``read_image``, so grayscale /
  RGBA / EXIF-rotated files come out as 3-channel frames).
* :class:`VideoFileSource`: a video file or camera streamed with OpenCV; iteration is sequential and
  never holds more than one frame.
* :func:`frames_from_folder_or_glob`: a folder of frames or a glob pattern -> :class:`ImageListSource`, sorted
  naturally (``2.jpg`` before ``10.jpg``).

Writers (``write(frame_rgb, t)`` / ``commit(...)`` / ``abort()``), all atomic: they write into temporaries beside
the target (:mod:`stmask_d2.utils.io`) that ``commit`` renames onto it and ``abort`` removes, so a failure leaves
nothing half-written; an unusable target is an :class:`~stmask_d2.utils.errors.InputError` (one line) raised when
the writer is created, before any work:

* :class:`VideoSink`: an annotated video file (.mp4/.avi/.mkv/.mov/.m4v); :class:`FolderSink`: a folder of frames;
  :func:`open_frame_sink` picks one from the target's extension;
* :class:`JsonSink`: one JSON file (written by :func:`stmask_d2.utils.io.atomic_write`);
* :func:`write_video`: a whole iterable of frames as a video file, in one call.
"""
import glob
import json
import os
import re
import shutil

import cv2
import numpy as np

from .errors import InputError, MissingFileError, UserError
from .io import atomic_write, make_temp, publish, remove_stale_temporaries

__all__ = ["FrameReadError", "ImageListSource", "VideoFileSource", "frames_from_folder_or_glob", "IMAGE_EXTENSIONS",
           "check_image_pixels", "check_frame_size", "VIDEO_EXTENSIONS", "VideoSink", "FolderSink", "JsonSink",
           "open_frame_sink", "write_video"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
_FORMATS = ("RGB", "BGR")


class FrameReadError(UserError, OSError):
    """A frame or video could not be read; the message names the file (a user error: one line, exit code 2)."""


def check_frame_size(height, width, max_pixels, what):
    """Raise :class:`FrameReadError` (one line naming ``what``) when a ``height`` x ``width`` frame has more than
    ``max_pixels`` pixels (``INPUT.MAX_FRAME_PIXELS``; 0 or None: no limit)."""
    if max_pixels and int(height) * int(width) > int(max_pixels):
        raise FrameReadError(
            f"{what} is {width}x{height} = {int(height) * int(width)} pixels, more than INPUT.MAX_FRAME_PIXELS = "
            f"{int(max_pixels)}; downscale the frames or raise INPUT.MAX_FRAME_PIXELS (0 disables the limit)"
        )


def check_image_pixels(path, max_pixels):
    """Read only the header of image ``path`` and apply :func:`check_frame_size` (nothing is decoded). Files
    PIL cannot identify are left to the decoder, which reports them."""
    if not max_pixels:
        return
    from PIL import Image

    try:
        with Image.open(path) as im:
            w, h = im.size
    except Exception:  # not an image / unreadable header: the decoder reports it
        return
    check_frame_size(h, w, max_pixels, f"frame {path!r}")


def _check_format(format):
    if format not in _FORMATS:
        raise ValueError(f"frame format must be one of {_FORMATS}, got {format!r}")
    return format


class ImageListSource:
    """Frames from image files, read on access. ``file_names``: paths in temporal order."""

    def __init__(self, file_names, format="RGB", max_pixels=0):
        self.file_names = list(file_names)
        self.format = _check_format(format)
        self.max_pixels = int(max_pixels or 0)

    def __len__(self):
        return len(self.file_names)

    def __getitem__(self, t):
        from detectron2.data.detection_utils import read_image

        path = self.file_names[t]
        if not os.path.isfile(path):
            raise FrameReadError(f"frame {t} of {len(self)}: file {path!r} does not exist")
        check_image_pixels(path, self.max_pixels)
        try:
            img = read_image(path, format=self.format)
        except Exception as e:  # PIL raises UnidentifiedImageError / OSError on corrupt files
            raise FrameReadError(f"frame {t} of {len(self)}: cannot read image {path!r} ({e})") from e
        return np.ascontiguousarray(img)

    def __iter__(self):
        for t in range(len(self)):
            yield self[t]

    def __repr__(self):
        first = self.file_names[0] if self.file_names else None
        return f"ImageListSource({len(self)} frames, first={first!r}, format={self.format!r})"


class VideoFileSource:
    """Frames of a video file (or an integer camera index) read with OpenCV.

    Opening checks that the first frame decodes, so an unreadable or empty video fails before any work.
    ``fps``, ``height``, ``width`` and ``len()`` come from the container (``len`` is 0 for a camera, whose
    stream is endless; iterate it). Iteration streams sequentially; ``src[t]`` seeks and is slower.
    """

    def __init__(self, path, format="RGB", max_pixels=0):
        """``max_pixels``: refuse (:class:`FrameReadError`) a video whose frames have more pixels (0: no limit)."""
        self.path = path
        self.format = _check_format(format)
        if not isinstance(path, int) and not os.path.isfile(path):
            raise MissingFileError(f"video file {path!r} does not exist")
        cap = self._open()
        w0, h0 = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
        try:  # from the container's header, before a frame is decoded
            check_frame_size(h0, w0, max_pixels, f"video {path!r}")
        except FrameReadError:
            cap.release()
            raise
        ok, frame = cap.read()
        self.fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        cap.release()
        if not ok or frame is None:
            raise FrameReadError(f"video {path!r} has no readable frame (empty file or unsupported codec)")
        self.height, self.width = frame.shape[:2]
        self._len = max(count, 1) if not isinstance(path, int) else 0

    def _open(self):
        cap = cv2.VideoCapture(self.path)
        if not cap.isOpened():
            raise FrameReadError(f"OpenCV cannot open video {self.path!r}")
        return cap

    def _convert(self, frame):
        if frame.ndim == 2:
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) if self.format == "RGB" else frame

    def __len__(self):
        return self._len

    def __iter__(self):
        cap = self._open()
        try:
            while True:
                ok, frame = cap.read()
                if not ok:
                    break
                yield self._convert(frame)
        finally:
            cap.release()

    def __getitem__(self, t):
        if t < 0:
            t += len(self)
        if not 0 <= t < len(self):
            raise IndexError(f"frame {t} out of range for video {self.path!r} with {len(self)} frames")
        cap = self._open()
        try:
            cap.set(cv2.CAP_PROP_POS_FRAMES, t)
            ok, frame = cap.read()
        finally:
            cap.release()
        if not ok:
            raise FrameReadError(f"cannot decode frame {t} of video {self.path!r}")
        return self._convert(frame)

    def __repr__(self):
        return (f"VideoFileSource({self.path!r}, {len(self)} frames, {self.width}x{self.height} @ {self.fps:.2f} fps, "
                f"format={self.format!r})")


def _natural_key(s):
    return [int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", s)]


def frames_from_folder_or_glob(spec, format="RGB", max_pixels=0):
    """``spec``: a folder (its image files) or a glob pattern (e.g. "frames/*.png"). Returns an
    :class:`ImageListSource` sorted naturally; raises :class:`~stmask_d2.utils.errors.MissingFileError` (a
    ``FileNotFoundError``) when nothing matches."""
    if os.path.isdir(spec):
        files = [os.path.join(spec, f) for f in os.listdir(spec) if f.lower().endswith(IMAGE_EXTENSIONS)]
    else:
        files = [f for f in glob.glob(os.path.expanduser(spec)) if os.path.isfile(f)]
    if not files:
        raise MissingFileError(f"no image frames found for {spec!r} (a folder of images or a glob pattern)")
    return ImageListSource(sorted(files, key=_natural_key), format, max_pixels=max_pixels)


# ---------------------------------------------------------------------------------------------------------------
# writers: temporaries beside the target, renamed onto it by commit(), removed by abort()
# ---------------------------------------------------------------------------------------------------------------
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".m4v")
_FOURCC = {".avi": "XVID", ".mkv": "XVID"}  # others: mp4v


def _target(path, flag):
    """How messages name the target: ``--output 'x.mp4'`` (a command-line flag) or ``'x.mp4'``."""
    return f"{flag} {path!r}" if flag else repr(path)


def _parent_dir(path, flag):
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise InputError(f"{_target(path, flag)}: folder {parent!r} does not exist")
    remove_stale_temporaries(parent)  # left by a killed run
    return parent


def _temp(path, flag, **kw):
    try:
        return make_temp(path, **kw)
    except OSError as e:
        raise InputError(f"{_target(path, flag)} is not writable ({e.strerror or e})") from e


class VideoSink:
    """Frames (HxWx3 uint8 RGB) to a video file through OpenCV; ``flag`` names the option in messages."""

    def __init__(self, path, fps, width, height, flag="--output"):
        self.path, self.writer = path, None
        _parent_dir(path, flag)
        if os.path.isdir(path):
            raise InputError(f"{_target(path, flag)} is a folder; give a video file name or a folder without "
                             f"extension")
        ext = os.path.splitext(path)[1].lower()
        self.tmp = _temp(path, flag, suffix=ext)  # the temporary keeps the extension: OpenCV picks the container
        self.writer = cv2.VideoWriter(self.tmp, cv2.VideoWriter_fourcc(*_FOURCC.get(ext, "mp4v")), float(fps),
                                      (width, height), True)
        if not self.writer.isOpened():
            self.abort()
            if min(width, height) < 2:  # the encoders need frames of at least 2x2 pixels
                raise InputError(f"{_target(path, flag)}: the frames are {width}x{height} pixels, too small to "
                                 f"encode as a video (at least 2x2); give a folder ({flag or 'a path'} DIR) to write "
                                 f"the frames instead")
            raise InputError(f"{_target(path, flag)}: OpenCV cannot write {ext} videos here (try .avi or a folder)")

    def write(self, frame_rgb, t):
        self.writer.write(cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2BGR))

    def commit(self):
        self.writer.release()
        self.writer = None
        publish(self.tmp, self.path)

    def abort(self):
        if self.writer is not None:
            self.writer.release()
            self.writer = None
        if os.path.exists(self.tmp):
            os.remove(self.tmp)


class FolderSink:
    """Frames to a folder: written into a hidden temporary folder beside it, moved in at the end. ``names``: the
    file name of each frame index (default ``%05d.jpg``)."""

    def __init__(self, path, names=None, flag="--output"):
        self.path, self.names, self.flag = path, names, flag
        _parent_dir(path, flag)
        if os.path.exists(path) and not os.path.isdir(path):
            raise InputError(f"{_target(path, flag)} exists and is not a folder")
        self.tmp = _temp(path, flag, folder=True)
        self.written = []

    def write(self, frame_rgb, t):
        name = self.names[t] if self.names is not None else f"{t:05d}.jpg"
        if not cv2.imwrite(os.path.join(self.tmp, name), cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2BGR)):
            raise InputError(f"{_target(self.path, self.flag)}: cannot write frame {name!r}")
        self.written.append(name)

    def commit(self):
        os.makedirs(self.path, exist_ok=True)
        for name in self.written:
            os.replace(os.path.join(self.tmp, name), os.path.join(self.path, name))
        shutil.rmtree(self.tmp, ignore_errors=True)

    def abort(self):
        shutil.rmtree(self.tmp, ignore_errors=True)


def open_frame_sink(path, fps, width, height, names=None, flag="--output"):
    """:class:`VideoSink` for a path ending in one of :data:`VIDEO_EXTENSIONS`, else :class:`FolderSink`."""
    if os.path.splitext(path)[1].lower() in VIDEO_EXTENSIONS:
        return VideoSink(path, fps, width, height, flag)
    return FolderSink(path, names, flag)


class JsonSink:
    """One JSON file, written at ``commit(obj)`` by :func:`~stmask_d2.utils.io.atomic_write`; the target is
    checked (folder exists, writable, not a folder) when the sink is created."""

    def __init__(self, path, flag="--output-json"):
        self.path = path
        _parent_dir(path, flag)
        if os.path.isdir(path):
            raise InputError(f"{_target(path, flag)} is a folder; give a file name")
        os.remove(_temp(path, flag))  # writable: fail now, not after the video was processed

    def commit(self, obj):
        atomic_write(self.path, lambda f: json.dump(obj, f), mode="w")

    def abort(self):
        pass


def write_video(path, frames_rgb, fps=6.0, flag=None):
    """Write an iterable of equal-size HxWx3 uint8 RGB frames as the video ``path`` (its folder is created),
    atomically through :class:`VideoSink`; returns the number of frames."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    sink, n = None, 0
    try:
        for frame in frames_rgb:
            if sink is None:
                sink = VideoSink(path, fps, frame.shape[1], frame.shape[0], flag)
            sink.write(frame, n)
            n += 1
        if sink is None:
            raise InputError(f"{_target(path, flag)}: no frames to write")
        sink.commit()
    except BaseException:
        if sink is not None:
            sink.abort()
        raise
    return n
