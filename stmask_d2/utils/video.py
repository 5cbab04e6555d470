"""Lazy frame sources: ``len(src)``, ``src[t]`` and ``iter(src)`` give HWC uint8 frames in "RGB" or "BGR".

* :class:`ImageListSource`: a list of image files, each read on access (Detectron2 ``read_image``, so grayscale /
  RGBA / EXIF-rotated files come out as 3-channel frames).
* :class:`VideoFileSource`: a video file or camera streamed with OpenCV; iteration is sequential and
  never holds more than one frame.
* :func:`frames_from_folder_or_glob`: a folder of frames or a glob pattern -> :class:`ImageListSource`, sorted
  naturally (``2.jpg`` before ``10.jpg``).
"""
import glob
import os
import re

import cv2
import numpy as np

__all__ = ["FrameReadError", "ImageListSource", "VideoFileSource", "frames_from_folder_or_glob", "IMAGE_EXTENSIONS",
           "check_image_pixels", "check_frame_size"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
_FORMATS = ("RGB", "BGR")


class FrameReadError(OSError):
    """A frame or video could not be read; the message names the file."""


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
            raise FileNotFoundError(f"video file {path!r} does not exist")
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
    :class:`ImageListSource` sorted naturally; raises ``FileNotFoundError`` when nothing matches."""
    if os.path.isdir(spec):
        files = [os.path.join(spec, f) for f in os.listdir(spec) if f.lower().endswith(IMAGE_EXTENSIONS)]
    else:
        files = [f for f in glob.glob(os.path.expanduser(spec)) if os.path.isfile(f)]
    if not files:
        raise FileNotFoundError(f"no image frames found for {spec!r} (a folder of images or a glob pattern)")
    return ImageListSource(sorted(files, key=_natural_key), format, max_pixels=max_pixels)
