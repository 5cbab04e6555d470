"""Convert video annotations into YouTube-VIS JSON for ``--register-ytvis``.

    python -m stmask_d2.data.convert coco-video ANNOTATIONS.json --image-root IMAGES --output out.json
    python -m stmask_d2.data.convert mots instances_txt/ --image-root training/image_02 --output out.json \\
        [--classes 1=car 2=pedestrian] [--ignore-class-ids 10]
    python -m stmask_d2.data.convert davis --annotations DAVIS/Annotations/480p \\
        --image-root DAVIS/JPEGImages/480p [--sequences bear ...] [--semantics davis_semantics.json] --output out.json
    python -m stmask_d2.data.convert instance-pngs --masks MASKS --image-root IMAGES --output out.json

The output's ``file_names`` are relative to ``--image-root``, so train with
``--register-ytvis NAME out.json IMAGE_ROOT`` (printed at the end). The output is written atomically; a malformed
source prints one line naming the file and the line / frame and exits with code 2, writing nothing.
"""
import argparse
import logging
import sys

from ..utils.errors import run_cli
from .converters import (KITTI_MOTS_CLASSES, convert_coco_video, convert_davis,
                         convert_instance_pngs, convert_mots, write_ytvis_json)

__all__ = ["main", "get_parser"]

PROG = "python -m stmask_d2.data.convert"


def _class_pair(s):
    try:
        k, v = s.split("=", 1)
        if not v:
            raise ValueError
        return int(k), v
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected CLASS_ID=NAME (e.g. 2=pedestrian), got {s!r}") from None


def get_parser():
    p = argparse.ArgumentParser(prog=PROG, description="Convert video annotations into YouTube-VIS JSON.")
    sub = p.add_subparsers(dest="format", required=True, metavar="FORMAT")

    def common(sp):
        sp.add_argument("--image-root", required=True, metavar="DIR",
                        help="folder of the frames; output file_names are relative to it")
        sp.add_argument("--output", required=True, metavar="JSON", help="YouTube-VIS JSON to write")
        sp.add_argument("--name", default="my_vis", help="dataset name used in the printed --register-ytvis line")

    c = sub.add_parser("coco-video", help="COCO per-frame annotations with track ids (CVAT 'COCO 1.0' video export)")
    c.add_argument("annotations", metavar="COCO_JSON")
    c.add_argument("--no-check-images", action="store_true", help="do not open the frames to check their size")
    common(c)

    m = sub.add_parser("mots", help="MOTS text files (KITTI-MOTS / MOTSChallenge)")
    m.add_argument("txt", nargs="+", metavar="TXT_OR_DIR", help="MOTS text files, or folders of them")
    m.add_argument("--classes", nargs="+", type=_class_pair, metavar="ID=NAME",
                   help="class names (default KITTI-MOTS: " + " ".join(f"{k}={v}" for k, v in
                                                                    KITTI_MOTS_CLASSES.items()) + ")")
    m.add_argument("--ignore-class-ids", nargs="*", type=int, default=[10], metavar="ID",
                   help="class ids of ignore regions, dropped (default 10)")
    m.add_argument("--allow-overlap", action="store_true", help="do not check that masks of a frame are disjoint")
    common(m)

    d = sub.add_parser("davis", help="DAVIS-style folders of indexed PNGs")
    d.add_argument("--annotations", required=True, metavar="DIR", help="folder of <seq>/<frame>.png index maps")
    d.add_argument("--sequences", nargs="+", metavar="SEQ", help="sequences to convert (default: all)")
    d.add_argument("--semantics", metavar="JSON", help="{seq: {object index: class name}} (davis_semantics.json)")
    d.add_argument("--class-name", default="object", help="class of objects without semantics (default: object)")
    d.add_argument("--categories", nargs="+", metavar="NAME", help="category order, ids 1..K (default: sorted)")
    d.add_argument("--void-value", type=int, default=255, help="index that is not an object (default 255)")
    common(d)

    i = sub.add_parser("instance-pngs", help="folders of per-instance PNGs: <video>/<[class_]id>/<frame>.png")
    i.add_argument("--masks", required=True, metavar="DIR", help="folder of <video>/<track>/<frame>.png")
    i.add_argument("--class-name", default="object", help="class of track folders named <id> only")
    i.add_argument("--categories", nargs="+", metavar="NAME", help="category order, ids 1..K (default: sorted)")
    i.add_argument("--threshold", type=int, default=0, help="mask pixels are those > THRESHOLD (default 0)")
    common(i)
    return p


def convert(args):
    """Run the converter chosen by ``args.format``; returns the YouTube-VIS dict."""
    if args.format == "coco-video":
        return convert_coco_video(args.annotations, args.image_root, check_images=not args.no_check_images)
    if args.format == "mots":
        classes = dict(args.classes) if args.classes else None
        return convert_mots(args.txt, args.image_root, classes, tuple(args.ignore_class_ids),
                            check_overlap=not args.allow_overlap)
    if args.format == "davis":
        return convert_davis(args.annotations, args.image_root, args.sequences, args.semantics, args.class_name,
                             args.categories, args.void_value)
    if args.format == "instance-pngs":
        return convert_instance_pngs(args.masks, args.image_root, args.class_name, args.categories,
                                     args.threshold)
    raise ValueError(f"unknown format {args.format!r}")


def _convert_cli(argv):
    args = get_parser().parse_args(argv)
    data = convert(args)
    write_ytvis_json(data, args.output)
    n_masks = sum(1 for a in data["annotations"] for s in a["segmentations"] if s is not None)
    print(f"Wrote {args.output}: {len(data['videos'])} videos, {len(data['annotations'])} tracks, {n_masks} masks, "
          f"{len(data['categories'])} categories ({', '.join(c['name'] for c in data['categories'])})")
    print(f"Use it with: --register-ytvis {args.name} {args.output} {args.image_root}")
    return 0


def main(argv=None):
    """Returns the exit code: 0, or 2 for a bad source (one line on stderr, nothing written)."""
    return run_cli(_convert_cli, argv, prog="convert")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(main())
