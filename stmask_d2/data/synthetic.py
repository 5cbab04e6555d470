"""Deterministic generator of a small YouTube-VIS format dataset of moving textured shapes (library code; the CLI
is ``datasets/make_synthetic_vis.py``).

Each video has a textured background and 1..``max_instances`` objects. An object has a shape category (circle,
square, triangle, star, ring, cross, hexagon), a texture (stripes, checker or noise) in its own two colours, a
velocity with per-frame jitter, a scale that changes over time and a slow rotation. Objects are drawn in z-order
and the hidden part is removed from the lower masks; they enter / leave the frame and some are born late or die
early, which gives null segmentations. A few frames (``blur_prob``) are motion-blurred.

Knobs that make the data a harder test of temporal fusion (all off by default; the default output is bit-identical
to the generator before they existed, tests/test_synthetic_data.py pins its hash):

* ``motion_scale`` (float, default 1.0): multiplies every object's speed (drawn in [0.02, 0.08] x min(H, W) pixels
  per frame). At 128x224, 1.0 gives a median motion of ~0.35 P4 cells per frame; 3.0 about one cell.
* ``object_blur`` (float, default 0.0): per-object motion blur: each object (colour and coverage) is smeared along
  its own velocity over ``object_blur`` x its per-frame displacement (an exposure of that fraction of the frame
  interval); the annotated mask stays the sharp shape. Fast objects get streaky, their texture washes out.
* ``occluders`` (int, default 0): unannotated occluders per video: textured grey rectangles of side
  ``occluder_size`` x min(H, W) (random aspect), drifting slowly, drawn over every object. What they cover is
  removed from the masks (fully covered -> null segmentation), so an object is invisible or partly visible for some
  frames while it keeps moving behind them: detection fails there and propagation should help.
* ``blur_prob`` (float, default 0.05): probability that a whole frame is blurred by a random-direction line kernel.

The knobs draw their random numbers from their own per-video generators, so switching one on does not change the
objects, backgrounds or trajectories of the others (only what is rendered).

Output (``out_dir``)::

    JPEGImages/<video_name>/<%05d>.jpg
    train.json      # YouTube-VIS train format; RLE counts uncompressed integer lists (like the real train
                    # files) unless compressed_rle=True

Python: ``make_synthetic_vis(out_dir, num_videos=8, ...) -> path of train.json``; the per-dataset statistics
(occluded / null / blurred frame counts) are logged and written to ``json["info"]["stats"]``.

Streaming (benchmarks, long-video memory): ``synthetic_video(num_frames, height, width, seed)`` yields the frames
of one endless-style video of the same objects, one frame in memory at a time, nothing written; objects live for
a limited number of frames and are replaced by new ones, so tracks start and end over the whole stream.
"""
import argparse
import json
import logging
import math
import os
import time

import cv2
import numpy as np
import pycocotools.mask as mask_util

from ..utils.errors import InputError

__all__ = ["make_synthetic_vis", "synthetic_video", "SHAPES", "uncompressed_rle", "get_parser", "main"]

logger = logging.getLogger(__name__)

SHAPES = ["circle", "square", "triangle", "star", "ring", "cross", "hexagon"]
TEXTURES = ["stripes", "checker", "noise"]


def uncompressed_rle(mask):
    """Uncompressed COCO RLE (column-major run lengths starting with zeros) of a bool (H, W) mask."""
    h, w = mask.shape
    flat = mask.T.reshape(-1).astype(np.int8)
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0] == 1:
        counts = [0] + counts
    return {"size": [h, w], "counts": counts}


def _polygon(shape, r, angle):
    """Vertices (N, 2) of a polygonal shape of radius r around the origin, rotated by angle."""
    if shape == "square":
        n, radii = 4, [r * 0.9] * 4
    elif shape == "triangle":
        n, radii = 3, [r] * 3
    elif shape == "hexagon":
        n, radii = 6, [r] * 6
    elif shape == "star":
        n, radii = 10, [r if k % 2 == 0 else r * 0.45 for k in range(10)]
    elif shape == "cross":
        a, b = r, r * 0.35
        pts = np.array([[b, a], [b, b], [a, b], [a, -b], [b, -b], [b, -a], [-b, -a], [-b, -b], [-a, -b], [-a, b],
                        [-b, b], [-b, a]], dtype=np.float64)
        c, s = math.cos(angle), math.sin(angle)
        return pts @ np.array([[c, s], [-s, c]])
    else:
        raise ValueError(shape)
    th = angle + np.arange(n) * 2 * math.pi / n
    return np.stack([np.cos(th) * radii, np.sin(th) * radii], axis=1)


class _Object:
    def __init__(self, rng, category, h, w, num_frames, motion_scale=1.0):
        self.category = category  # index into SHAPES
        self.texture = TEXTURES[rng.randint(len(TEXTURES))]
        self.colors = rng.randint(0, 256, size=(2, 3)).astype(np.uint8)
        self.base_r = rng.uniform(0.12, 0.24) * min(h, w)
        self.scale_rate = rng.uniform(-0.04, 0.04)
        self.angle, self.spin = rng.uniform(0, 2 * math.pi), rng.uniform(-0.15, 0.15)
        self.period = rng.uniform(4, 10)
        speed = rng.uniform(0.02, 0.08) * min(h, w)
        theta = rng.uniform(0, 2 * math.pi)
        self.v = np.array([math.cos(theta), math.sin(theta)]) * speed
        if motion_scale != 1.0:
            self.v = self.v * motion_scale
        if rng.rand() < 0.3:  # enter from outside the frame
            self.p = np.array([w / 2, h / 2]) - self.v * num_frames * rng.uniform(0.5, 0.9)
        else:
            self.p = np.array([rng.uniform(0.15, 0.85) * w, rng.uniform(0.15, 0.85) * h])
        self.birth = rng.randint(1, max(2, num_frames // 2)) if rng.rand() < 0.25 else 0
        self.death = num_frames - rng.randint(1, max(2, num_frames // 3)) if rng.rand() < 0.2 else num_frames
        self.noise = rng.randint(0, 256, size=(16, 16, 3)).astype(np.uint8)

    def step(self, rng):
        self.p = self.p + self.v + rng.normal(0, 0.01 * self.base_r * 4, size=2)
        self.angle += self.spin

    def render(self, t, h, w):
        """Full-frame bool mask and the texture patch with its placement, or None when out of view."""
        r = self.base_r * (1 + self.scale_rate * t)
        r = max(r, 4.0)
        half = int(math.ceil(r)) + 2
        cx, cy = self.p
        x0, y0 = int(round(cx)) - half, int(round(cy)) - half
        size = 2 * half + 1
        if x0 >= w or y0 >= h or x0 + size <= 0 or y0 + size <= 0:
            return None
        name = SHAPES[self.category]
        patch = np.zeros((size, size), np.uint8)
        centre = (cx - x0, cy - y0)
        if name in ("circle", "ring"):
            cv2.circle(patch, (int(round(centre[0] * 4)), int(round(centre[1] * 4))), int(r * 4), 1, -1,
                       lineType=cv2.LINE_8, shift=2)
            if name == "ring":
                cv2.circle(patch, (int(round(centre[0] * 4)), int(round(centre[1] * 4))), int(r * 0.5 * 4), 0, -1,
                           lineType=cv2.LINE_8, shift=2)
        else:
            pts = _polygon(name, r, self.angle) + np.array(centre)
            cv2.fillPoly(patch, [np.round(pts * 4).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=2)
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        xx -= centre[0]
        yy -= centre[1]
        if self.texture == "stripes":
            c, s = math.cos(self.angle), math.sin(self.angle)
            sel = (np.floor((xx * c + yy * s) / self.period) % 2).astype(bool)
            tex = np.where(sel[..., None], self.colors[0], self.colors[1])
        elif self.texture == "checker":
            sel = ((np.floor(xx / self.period) + np.floor(yy / self.period)) % 2).astype(bool)
            tex = np.where(sel[..., None], self.colors[0], self.colors[1])
        else:
            n = cv2.resize(self.noise, (size, size), interpolation=cv2.INTER_NEAREST).astype(np.float32) / 255
            tex = (self.colors[0] * n + self.colors[1] * (1 - n)).astype(np.uint8)
        # clip the patch to the frame
        fx0, fy0, fx1, fy1 = max(x0, 0), max(y0, 0), min(x0 + size, w), min(y0 + size, h)
        px0, py0 = fx0 - x0, fy0 - y0
        m = patch[py0:py0 + fy1 - fy0, px0:px0 + fx1 - fx0].astype(bool)
        if not m.any():
            return None
        full = np.zeros((h, w), bool)
        full[fy0:fy1, fx0:fx1] = m
        return full, tex[py0:py0 + fy1 - fy0, px0:px0 + fx1 - fx0], (fx0, fy0, fx1, fy1), m


def _background(rng, h, w):
    # muted low-frequency colour blobs + faint stripes + pixel noise, so the saturated objects stand out
    low = rng.randint(0, 256, size=(max(2, h // 60), max(2, w // 60), 3)).astype(np.float32)
    low = rng.uniform(60, 190) + (low - 128) * 0.45
    bg = cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC).astype(np.int16)
    yy, xx = np.mgrid[0:h, 0:w]
    period, ang = rng.uniform(6, 20), rng.uniform(0, math.pi)
    stripes = ((np.sin((xx * math.cos(ang) + yy * math.sin(ang)) * 2 * math.pi / period) > 0) * 20 - 10)
    bg += stripes[..., None].astype(np.int16)
    bg += rng.randint(-12, 13, size=(h, w, 1)).astype(np.int16)
    return np.clip(bg, 0, 255).astype(np.uint8)


def _motion_blur(img, rng):
    k = int(rng.choice([5, 7, 9]))
    kernel = np.zeros((k, k), np.float32)
    ang = rng.uniform(0, 180)
    kernel[k // 2, :] = 1.0
    rot = cv2.getRotationMatrix2D((k / 2 - 0.5, k / 2 - 0.5), ang, 1.0)
    kernel = cv2.warpAffine(kernel, rot, (k, k))
    return cv2.filter2D(img, -1, kernel / max(kernel.sum(), 1e-6))


def _line_kernel(dx, dy):
    """Normalised line kernel covering the displacement (dx, dy) in pixels (centred), or None when < 1.5 px."""
    length = math.hypot(dx, dy)
    if length < 1.5:
        return None
    k = int(math.ceil(length)) | 1
    kernel = np.zeros((k, k), np.float32)
    c = k // 2
    cv2.line(kernel, (int(round(c - dx / 2)), int(round(c - dy / 2))), (int(round(c + dx / 2)), int(round(c + dy / 2))),
             1.0, 1, lineType=cv2.LINE_AA)
    return kernel / max(float(kernel.sum()), 1e-6)


def _paint_blurred(frame, layer, cover, kernel):
    """Composite ``layer`` (H, W, 3) with coverage ``cover`` (H, W) bool over ``frame``, both smeared by
    ``kernel`` (object motion blur: the blurred coverage is the alpha)."""
    alpha = cv2.filter2D(cover.astype(np.float32), -1, kernel)
    colour = cv2.filter2D(layer.astype(np.float32) * cover[..., None], -1, kernel)
    out = frame.astype(np.float32) * (1 - alpha[..., None]) + colour
    frame[...] = np.clip(np.round(out), 0, 255).astype(np.uint8)


class _Occluder:
    """An unannotated textured grey rectangle drifting slowly over the frame, drawn above every object."""

    def __init__(self, rng, h, w, size):
        side = size * min(h, w)
        aspect = rng.uniform(0.3, 1.0)
        self.hw = (side, side * aspect) if rng.rand() < 0.5 else (side * aspect, side)
        self.p = np.array([rng.uniform(0.1, 0.9) * w, rng.uniform(0.1, 0.9) * h])
        self.v = rng.uniform(-0.01, 0.01, size=2) * min(h, w)
        grey = rng.uniform(70, 190)
        self.tex = np.clip(grey + rng.randint(-25, 26, size=(h, w, 1)), 0, 255).astype(np.uint8)

    def cover(self, t, h, w):
        cx, cy = self.p + self.v * t
        bh, bw = self.hw
        x0, x1 = int(round(cx - bw / 2)), int(round(cx + bw / 2))
        y0, y1 = int(round(cy - bh / 2)), int(round(cy + bh / 2))
        m = np.zeros((h, w), bool)
        m[max(y0, 0):max(min(y1, h), 0), max(x0, 0):max(min(x1, w), 0)] = True
        return m


def make_synthetic_vis(out_dir, num_videos=8, num_frames=6, height=96, width=160, num_categories=5,
                       max_instances=4, seed=0, blur_prob=0.05, compressed_rle=False, jpeg_quality=90,
                       json_name="train.json", motion_scale=1.0, object_blur=0.0, occluders=0, occluder_size=0.3):
    """Write a synthetic YouTube-VIS format dataset to ``out_dir``; returns the path of the JSON.

    Deterministic for a given seed and arguments (same JSON and same JPEG bytes). Statistics are in the JSON's
    ``info["stats"]``: ``instances``, ``masks``, ``occluded_masks`` (visible area smaller than the drawn shape),
    ``null_frames`` (instance-frames with a null segmentation), ``fully_occluded``, ``blurred_frames`` (+
    ``median_motion_px`` and the knob values in ``info["knobs"]`` when a knob is on). ``motion_scale``,
    ``object_blur``, ``occluders`` and ``occluder_size``: see the module docstring. Arguments out of range raise
    :class:`~stmask_d2.utils.errors.InputError` (a ``ValueError``).
    """
    if not 1 <= num_categories <= len(SHAPES):
        raise InputError(f"num_categories must be in 1..{len(SHAPES)}, got {num_categories}")
    if max_instances < 1 or num_frames < 1 or num_videos < 1:
        raise InputError("num_videos, num_frames and max_instances must be >= 1")
    if motion_scale < 0 or object_blur < 0 or occluders < 0 or not 0 < occluder_size <= 1:
        raise InputError("motion_scale, object_blur and occluders must be >= 0 and occluder_size in (0, 1]")
    knobs_on = motion_scale != 1.0 or object_blur > 0 or occluders > 0
    motions = []
    t_start = time.perf_counter()
    rng = np.random.RandomState(seed)
    os.makedirs(os.path.join(out_dir, "JPEGImages"), exist_ok=True)
    videos, annotations = [], []
    stats = dict(instances=0, masks=0, occluded_masks=0, null_frames=0, fully_occluded=0, blurred_frames=0)
    params = [int(cv2.IMWRITE_JPEG_QUALITY), int(jpeg_quality)]
    ann_id = 1
    for vi in range(num_videos):
        vname = f"video_{vi:04d}"
        vdir = os.path.join(out_dir, "JPEGImages", vname)
        os.makedirs(vdir, exist_ok=True)
        bg = _background(rng, height, width)
        n_obj = rng.randint(1, max_instances + 1)
        objs = [_Object(rng, rng.randint(num_categories), height, width, num_frames, motion_scale)
                for _ in range(n_obj)]
        motions += [float(np.hypot(*o.v)) for o in objs]
        occ_rng = np.random.RandomState([seed, vi, 1]) if occluders > 0 else None
        occs = [_Occluder(occ_rng, height, width, occluder_size) for _ in range(occluders)]
        segs = [[None] * num_frames for _ in objs]
        file_names = []
        for t in range(num_frames):
            frame = bg.copy()
            rendered = []
            for k, o in enumerate(objs):  # list order = z-order, later objects on top
                r = o.render(t, height, width) if o.birth <= t < o.death else None
                rendered.append(r)
                if r is not None:
                    full, tex, (x0, y0, x1, y1), m = r
                    kernel = _line_kernel(*(o.v * object_blur)) if object_blur > 0 else None
                    if kernel is None:
                        frame[y0:y1, x0:x1][m] = tex[m]
                    else:
                        layer = np.zeros_like(frame)
                        layer[y0:y1, x0:x1][m] = tex[m]
                        _paint_blurred(frame, layer, full, kernel)
                o.step(rng)
            covered = np.zeros((height, width), bool)
            for occ in occs:  # above every object, unannotated
                c = occ.cover(t, height, width)
                frame[c] = occ.tex[c]
                covered |= c
            for k in range(len(objs) - 1, -1, -1):
                r = rendered[k]
                if r is None:
                    continue
                full = r[0]
                visible = full & ~covered
                covered |= full
                if not visible.any():
                    stats["fully_occluded"] += 1
                    continue
                if visible.sum() < full.sum():
                    stats["occluded_masks"] += 1
                segs[k][t] = visible
            if rng.rand() < blur_prob:
                frame = _motion_blur(frame, rng)
                stats["blurred_frames"] += 1
            rel = f"{vname}/{t:05d}.jpg"
            cv2.imwrite(os.path.join(out_dir, "JPEGImages", rel), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), params)
            file_names.append(rel)
        vid = vi + 1
        videos.append({"id": vid, "width": width, "height": height, "length": num_frames, "file_names": file_names,
                       "license": 1, "flickr_url": "", "coco_url": "", "date_captured": ""})
        for k, o in enumerate(objs):
            if all(s is None for s in segs[k]):
                continue
            seg_list, boxes, areas = [], [], []
            for m in segs[k]:
                if m is None:
                    seg_list.append(None), boxes.append(None), areas.append(None)
                    stats["null_frames"] += 1
                    continue
                rle = mask_util.encode(np.asfortranarray(m.astype(np.uint8)))
                boxes.append([float(x) for x in mask_util.toBbox(rle)])
                areas.append(float(mask_util.area(rle)))
                if compressed_rle:
                    seg_list.append({"size": [height, width], "counts": rle["counts"].decode("ascii")})
                else:
                    seg_list.append(uncompressed_rle(m))
                stats["masks"] += 1
            annotations.append({
                "id": ann_id, "video_id": vid, "category_id": o.category + 1, "iscrowd": 0,
                "segmentations": seg_list, "bboxes": boxes, "areas": areas,
                "height": height, "width": width, "length": num_frames,
            })
            ann_id += 1
            stats["instances"] += 1
    info = {"description": "synthetic moving textured shapes (stmask_d2 datasets/make_synthetic_vis.py)",
            "seed": seed, "stats": stats}
    if knobs_on:  # only then: the default JSON stays byte-identical
        stats["median_motion_px"] = float(np.median(motions))
        info["knobs"] = {"motion_scale": motion_scale, "object_blur": object_blur, "occluders": occluders,
                         "occluder_size": occluder_size}
    data = {
        "info": info,
        "licenses": [{"id": 1, "name": "CC0", "url": ""}],
        "videos": videos,
        "annotations": annotations,
        "categories": [{"id": i + 1, "name": SHAPES[i], "supercategory": "shape"} for i in range(num_categories)],
    }
    json_path = os.path.join(out_dir, json_name)
    with open(json_path, "w") as f:
        json.dump(data, f)
    logger.info(f"synthetic VIS: {num_videos} videos x {num_frames} frames ({height}x{width}) -> {json_path} in "
                f"{time.perf_counter() - t_start:.2f}s; stats {stats}")
    return json_path


def synthetic_video(num_frames, height, width, seed=0, num_objects=6, num_categories=len(SHAPES), motion_scale=1.0,
                    lifetime=(12, 40)):
    """Yield ``num_frames`` HxWx3 uint8 RGB frames of one synthetic video, generated on the fly (deterministic for
    the arguments; one frame in memory at a time).

    The objects and the background are those of :func:`make_synthetic_vis` (same shapes, textures, motion and
    z-order), but the stream has no fixed length: ``num_objects`` slots each hold an object that lives a random
    ``lifetime`` (frames, inclusive range; it may be born late, die early and enter or leave the frame, like in
    the dataset) and is then replaced by a new one, so tracks keep starting and ending. An object's scale changes
    over its life as over a 12-frame dataset video.
    """
    if num_frames < 0 or height < 1 or width < 1 or num_objects < 1:
        raise InputError("synthetic_video needs num_frames >= 0, height, width and num_objects >= 1")
    if not 1 <= num_categories <= len(SHAPES) or not 1 <= lifetime[0] <= lifetime[1]:
        raise InputError(f"num_categories must be in 1..{len(SHAPES)} and lifetime an increasing pair >= 1")
    rng = np.random.RandomState(seed)
    bg = _background(rng, height, width)

    def spawn(start):
        life = int(rng.randint(lifetime[0], lifetime[1] + 1))
        return _Object(rng, rng.randint(num_categories), height, width, life, motion_scale), start, life

    slots = [spawn(0) for _ in range(num_objects)]
    for t in range(num_frames):
        frame = bg.copy()
        for k, (o, start, life) in enumerate(slots):  # slot order = z-order
            local = t - start
            r = o.render(local * 12.0 / life, height, width) if o.birth <= local < o.death else None
            if r is not None:
                _, tex, (x0, y0, x1, y1), m = r
                frame[y0:y1, x0:x1][m] = tex[m]
            o.step(rng)
            if local + 1 >= life:
                slots[k] = spawn(t + 1)
        yield frame


def get_parser():
    """The options of ``datasets/make_synthetic_vis.py`` (one per knob of :func:`make_synthetic_vis`)."""
    p = argparse.ArgumentParser(description="Write the synthetic YouTube-VIS format dataset of moving textured shapes")
    p.add_argument("--out", default=os.path.join(os.getenv("DETECTRON2_DATASETS", "datasets"), "synthetic_vis"))
    p.add_argument("--videos", type=int, default=80)
    p.add_argument("--frames", type=int, default=12)
    p.add_argument("--height", type=int, default=360)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--categories", type=int, default=5, help=f"number of shape classes (1..{len(SHAPES)})")
    p.add_argument("--instances", type=int, default=4, help="max objects per video")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--blur-prob", type=float, default=0.05, help="probability that a frame is motion-blurred")
    p.add_argument("--motion-scale", type=float, default=1.0, help="multiplier of every object's speed")
    p.add_argument("--object-blur", type=float, default=0.0,
                   help="per-object motion blur along its velocity, as a fraction of its per-frame displacement")
    p.add_argument("--occluders", type=int, default=0, help="unannotated occluding rectangles per video")
    p.add_argument("--occluder-size", type=float, default=0.3, help="occluder side as a fraction of min(H, W)")
    p.add_argument("--compressed-rle", action="store_true", help="write compressed RLE strings")
    return p


def main(argv=None):
    """The command line of ``datasets/make_synthetic_vis.py``: prints the path of the JSON; returns 0."""
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    path = make_synthetic_vis(args.out, num_videos=args.videos, num_frames=args.frames, height=args.height,
                              width=args.width, num_categories=args.categories, max_instances=args.instances,
                              seed=args.seed, blur_prob=args.blur_prob, compressed_rle=args.compressed_rle,
                              motion_scale=args.motion_scale, object_blur=args.object_blur,
                              occluders=args.occluders, occluder_size=args.occluder_size)
    print(path)
    return 0
