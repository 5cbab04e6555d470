"""Small samples of the four source formats of ``stmask_d2.data.convert``, written from the synthetic YouTube-VIS
generator's masks, with the source masks kept for round-trip checks.

``make_samples(root)`` -> ``{format: {"argv": [...] (CLI arguments without --output), "image_root",
"masks": {(video name, source track id): {t: (H, W) bool}}, "classes": {(video name, track id): class name}}}``.
"""
import json
import os

import cv2
import numpy as np
import pycocotools.mask as mask_util
from PIL import Image



def _synthetic(root, num_videos=2, num_frames=4, height=64, width=96):
    from stmask_d2.data.synthetic import make_synthetic_vis

    json_file = make_synthetic_vis(os.path.join(root, "synthetic"), num_videos=num_videos, num_frames=num_frames,
                                   height=height, width=width, seed=5)
    data = json.load(open(json_file))
    names = {c["id"]: c["name"] for c in data["categories"]}
    videos = {}
    for v in data["videos"]:
        videos[v["id"]] = {"name": v["file_names"][0].split("/")[0], "file_names": v["file_names"],
                           "h": v["height"], "w": v["width"], "tracks": []}
    for a in data["annotations"]:
        v = videos[a["video_id"]]
        masks = {}
        for t, s in enumerate(a["segmentations"]):
            if s is not None:
                m = mask_util.decode(mask_util.frPyObjects(s, v["h"], v["w"])).astype(bool)
                if m.any():
                    masks[t] = m
        if masks:
            v["tracks"].append({"cat": names[a["category_id"]], "cat_id": a["category_id"], "masks": masks})
    return os.path.join(root, "synthetic", "JPEGImages"), [videos[k] for k in sorted(videos)], data["categories"]


def _coco_video(root, image_root, videos, categories):
    """CVAT-like COCO file: track id in attributes, uncompressed RLE (iscrowd 1) for most tracks, polygons for the
    first track of each video (its source masks are the polygons' rasterisation), image ids shuffled."""
    images, anns, masks, classes = [], [], {}, {}
    rng = np.random.RandomState(0)
    img_ids = rng.permutation(1000)[:sum(len(v["file_names"]) for v in videos)].tolist()
    k = 0
    for v in videos:
        ids = []
        for t, f in enumerate(v["file_names"]):
            ids.append(img_ids[k])
            images.append({"id": img_ids[k], "file_name": f, "height": v["h"], "width": v["w"]})
            k += 1
        for j, tr in enumerate(v["tracks"]):
            tid = 100 + 7 * j  # not consecutive, repeated across videos
            classes[(v["name"], tid)] = tr["cat"]
            for t, m in tr["masks"].items():
                if j == 0:
                    cs, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
                    polys = [c.reshape(-1).astype(float).tolist() for c in cs if len(c) >= 3]
                    if not polys:
                        continue
                    seg = polys
                    src = mask_util.decode(mask_util.merge(mask_util.frPyObjects(polys, v["h"], v["w"]))) > 0
                    crowd = 0
                else:
                    rle = mask_util.encode(np.asfortranarray(m.astype(np.uint8)))
                    seg = {"size": [v["h"], v["w"]], "counts": _uncompressed(m)}
                    src, crowd = m, 1
                if not src.any():
                    continue
                masks.setdefault((v["name"], tid), {})[t] = src
                anns.append({"id": len(anns) + 1, "image_id": ids[t], "category_id": tr["cat_id"],
                             "segmentation": seg, "iscrowd": crowd, "area": float(src.sum()),
                             "bbox": [float(x) for x in mask_util.toBbox(rle)] if j else [0, 0, 1, 1],
                             "attributes": {"occluded": False, "track_id": tid, "keyframe": True}})
    rng.shuffle(images)
    path = os.path.join(root, "coco_video.json")
    with open(path, "w") as f:
        json.dump({"images": images, "annotations": anns, "categories": categories}, f)
    return {"argv": ["coco-video", path, "--image-root", image_root], "image_root": image_root, "masks": masks,
            "classes": classes, "source": path}


def _uncompressed(m):
    flat = m.T.reshape(-1).astype(np.int8)
    change = np.flatnonzero(np.diff(flat)) + 1
    counts = np.diff(np.concatenate([[0], change, [flat.size]])).tolist()
    return ([0] + counts) if flat[0] == 1 else counts


def _mots(root, image_root, videos):
    """KITTI-MOTS text files, one per video (frame number = frame file stem), plus one ignore region."""
    folder = os.path.join(root, "mots_txt")
    os.makedirs(folder, exist_ok=True)
    masks, classes = {}, {}
    names = {}
    for v in videos:
        lines = []
        for j, tr in enumerate(v["tracks"]):
            oid = tr["cat_id"] * 1000 + j + 1
            names[tr["cat_id"]] = tr["cat"]
            classes[(v["name"], oid)] = tr["cat"]
            for t, m in tr["masks"].items():
                rle = mask_util.encode(np.asfortranarray(m.astype(np.uint8)))
                frame = int(os.path.splitext(os.path.basename(v["file_names"][t]))[0])
                lines.append((frame, f"{frame} {oid} {tr['cat_id']} {v['h']} {v['w']} {rle['counts'].decode()}"))
                masks.setdefault((v["name"], oid), {})[t] = m
        ign = np.zeros((v["h"], v["w"]), np.uint8)
        ign[:2, :2] = 1
        ign[np.any([tr["masks"].get(0, np.zeros_like(ign, bool)) for tr in v["tracks"]], axis=0)] = 0
        rle = mask_util.encode(np.asfortranarray(ign))
        lines.append((0, f"0 10000 10 {v['h']} {v['w']} {rle['counts'].decode()}"))
        with open(os.path.join(folder, v["name"] + ".txt"), "w") as f:
            f.write("\n".join(line for _, line in sorted(lines, key=lambda x: x[0])) + "\n")
    cls_args = [f"{k}={n}" for k, n in sorted(names.items())]
    return {"argv": ["mots", folder, "--image-root", image_root, "--classes", *cls_args], "image_root": image_root,
            "masks": masks, "classes": classes, "source": folder}


def _davis(root, image_root, videos):
    """Palette PNGs (index k = k-th track of the video) and a davis_semantics.json."""
    ann_root = os.path.join(root, "davis", "Annotations")
    masks, classes, semantics = {}, {}, {}
    palette = (np.random.RandomState(1).randint(0, 255, (256, 3))).astype(np.uint8)
    palette[0] = 0
    for v in videos:
        os.makedirs(os.path.join(ann_root, v["name"]), exist_ok=True)
        semantics[v["name"]] = {}
        for t, f in enumerate(v["file_names"]):
            idx = np.zeros((v["h"], v["w"]), np.uint8)
            for j, tr in enumerate(v["tracks"]):
                if t in tr["masks"]:
                    assert not idx[tr["masks"][t]].any(), "synthetic masks are disjoint"
                    idx[tr["masks"][t]] = j + 1
            im = Image.fromarray(idx, mode="P")
            im.putpalette(palette.reshape(-1).tolist())
            im.save(os.path.join(ann_root, v["name"], os.path.splitext(os.path.basename(f))[0] + ".png"))
        for j, tr in enumerate(v["tracks"]):
            semantics[v["name"]][str(j + 1)] = tr["cat"]
            classes[(v["name"], j + 1)] = tr["cat"]
            masks[(v["name"], j + 1)] = dict(tr["masks"])
    sem = os.path.join(root, "davis", "davis_semantics.json")
    with open(sem, "w") as fp:
        json.dump(semantics, fp)
    return {"argv": ["davis", "--annotations", ann_root, "--image-root", image_root, "--semantics", sem],
            "image_root": image_root, "masks": masks, "classes": classes, "source": ann_root}


def _instance_pngs(root, image_root, videos):
    """<video>/<class>_<id>/<frame>.png binary masks (0 / 255)."""
    mroot = os.path.join(root, "instance_pngs")
    masks, classes = {}, {}
    for v in videos:
        for j, tr in enumerate(v["tracks"]):
            tid = 3 * j + 2
            d = os.path.join(mroot, v["name"], f"{tr['cat']}_{tid}")
            os.makedirs(d, exist_ok=True)
            for t, m in tr["masks"].items():
                stem = os.path.splitext(os.path.basename(v["file_names"][t]))[0]
                cv2.imwrite(os.path.join(d, stem + ".png"), m.astype(np.uint8) * 255)
            masks[(v["name"], tid)] = dict(tr["masks"])
            classes[(v["name"], tid)] = tr["cat"]
    return {"argv": ["instance-pngs", "--masks", mroot, "--image-root", image_root], "image_root": image_root,
            "masks": masks, "classes": classes, "source": mroot}


def make_samples(root, num_videos=2, num_frames=4, height=64, width=96):
    root = str(root)
    image_root, videos, categories = _synthetic(root, num_videos, num_frames, height, width)
    return {
        "coco-video": _coco_video(root, image_root, videos, categories),
        "mots": _mots(root, image_root, videos),
        "davis": _davis(root, image_root, videos),
        "instance-pngs": _instance_pngs(root, image_root, videos),
    }
