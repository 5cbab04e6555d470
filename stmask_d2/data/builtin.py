"""Predefined YouTube-VIS 2019 / 2021, OVIS and synthetic splits, registered on import.

Files are looked up under ``$DETECTRON2_DATASETS`` (default ``./datasets``), Mask2Former-like layout::

    ytvis_2019/{train,valid,test}/JPEGImages/<video>/<frame>.jpg
    ytvis_2019/{train,valid,test}.json
    ytvis_2019/{train_sub,valid_sub}.json     # held-out split of train (datasets/prepare_ytvis_split.py),
                                              # frames from ytvis_2019/train/JPEGImages
    ytvis_2021/...                            # same as ytvis_2019
    ovis/{train,valid,test}/<video>/<frame>.jpg
    ovis/annotations_{train,valid,test}.json  # official OVIS file names
    ovis/{train_sub,valid_sub}.json           # frames from ovis/train
    synthetic_vis/JPEGImages/, synthetic_vis/{train,train_sub,valid_sub}.json   # datasets/make_synthetic_vis.py

Nothing is read at registration; a missing file gives a clear error when the split is first used.
Custom data: :func:`stmask_d2.data.register_ytvis_instances` or the ``--register-ytvis NAME JSON IMAGE_ROOT`` flag
(:func:`add_register_ytvis_argument` / :func:`register_ytvis_from_args`).
"""
import os

from detectron2.data import DatasetCatalog, MetadataCatalog

from ..utils.errors import ConfigError, MissingFileError
from .frames import register_ytvis_frames
from .ytvis import register_ytvis_instances

__all__ = [
    "YTVIS_2019_CATEGORIES", "YTVIS_2021_CATEGORIES", "OVIS_CATEGORIES", "PREDEFINED_SPLITS",
    "register_all_ytvis", "add_register_ytvis_argument", "register_ytvis_from_args",
]

# Category names in dataset-id order (ids 1..N), docs/YTVIS_FORMAT.md §4.2.
YTVIS_2019_CATEGORIES = [
    "person", "giant_panda", "lizard", "parrot", "skateboard", "sedan", "ape", "dog", "snake", "monkey",
    "hand", "rabbit", "duck", "cat", "cow", "fish", "train", "horse", "turtle", "bear",
    "motorbike", "giraffe", "leopard", "fox", "deer", "owl", "surfboard", "airplane", "truck", "zebra",
    "tiger", "elephant", "snowboard", "boat", "shark", "mouse", "frog", "eagle", "earless_seal", "tennis_racket",
]
YTVIS_2021_CATEGORIES = [
    "airplane", "bear", "bird", "boat", "car", "cat", "cow", "deer", "dog", "duck",
    "earless_seal", "elephant", "fish", "flying_disc", "fox", "frog", "giant_panda", "giraffe", "horse", "leopard",
    "lizard", "monkey", "motorbike", "mouse", "parrot", "person", "rabbit", "shark", "skateboard", "snake",
    "snowboard", "squirrel", "surfboard", "tennis_racket", "tiger", "train", "truck", "turtle", "whale", "zebra",
]
OVIS_CATEGORIES = [  # spelled as in the OVIS JSON, including "Vehical"
    "Person", "Bird", "Cat", "Dog", "Horse", "Sheep", "Cow", "Elephant", "Bear", "Zebra",
    "Giraffe", "Poultry", "Giant_panda", "Lizard", "Parrot", "Monkey", "Rabbit", "Tiger", "Fish", "Turtle",
    "Bicycle", "Motorcycle", "Airplane", "Boat", "Vehical",
]
assert len(YTVIS_2019_CATEGORIES) == 40 and len(YTVIS_2021_CATEGORIES) == 40 and len(OVIS_CATEGORIES) == 25


def _meta(classes):
    return {"thing_classes": list(classes),
            "thing_dataset_id_to_contiguous_id": {i + 1: i for i in range(len(classes))}}


# name -> (image_root, json_file) relative to $DETECTRON2_DATASETS
PREDEFINED_SPLITS = {}
for _y in ("2019", "2021"):
    _d = f"ytvis_{_y}"
    PREDEFINED_SPLITS.update({
        f"{_d}_train": (f"{_d}/train/JPEGImages", f"{_d}/train.json"),
        f"{_d}_val": (f"{_d}/valid/JPEGImages", f"{_d}/valid.json"),
        f"{_d}_test": (f"{_d}/test/JPEGImages", f"{_d}/test.json"),
        f"{_d}_train_sub": (f"{_d}/train/JPEGImages", f"{_d}/train_sub.json"),
        f"{_d}_valid_sub": (f"{_d}/train/JPEGImages", f"{_d}/valid_sub.json"),
    })
PREDEFINED_SPLITS.update({
    "ovis_train": ("ovis/train", "ovis/annotations_train.json"),
    "ovis_val": ("ovis/valid", "ovis/annotations_valid.json"),
    "ovis_test": ("ovis/test", "ovis/annotations_test.json"),
    "ovis_train_sub": ("ovis/train", "ovis/train_sub.json"),
    "ovis_valid_sub": ("ovis/train", "ovis/valid_sub.json"),
    # synthetic: classes come from the JSON on first load (the generator's --categories picks how many)
    "synthetic_vis_train": ("synthetic_vis/JPEGImages", "synthetic_vis/train.json"),
    "synthetic_vis_train_sub": ("synthetic_vis/JPEGImages", "synthetic_vis/train_sub.json"),
    "synthetic_vis_valid_sub": ("synthetic_vis/JPEGImages", "synthetic_vis/valid_sub.json"),
})


def _split_metadata(name):
    if name.startswith("ytvis_2019"):
        return _meta(YTVIS_2019_CATEGORIES)
    if name.startswith("ytvis_2021"):
        return _meta(YTVIS_2021_CATEGORIES)
    if name.startswith("ovis"):
        return _meta(OVIS_CATEGORIES)
    return {}


def register_all_ytvis(root=None):
    """Register every split of :data:`PREDEFINED_SPLITS` under ``root`` (default ``$DETECTRON2_DATASETS`` or
    "datasets"). Safe to call again; a new root re-points the builtin splits."""
    root = root if root is not None else os.getenv("DETECTRON2_DATASETS", "datasets")
    for name, (image_root, json_file) in PREDEFINED_SPLITS.items():
        json_file, image_root = os.path.join(root, json_file), os.path.join(root, image_root)
        if name in DatasetCatalog.list() and MetadataCatalog.get(name).get("json_file") != json_file:
            DatasetCatalog.remove(name)  # a new root: move the builtin split there
            MetadataCatalog.remove(name)
        register_ytvis_instances(name, _split_metadata(name), json_file, image_root)
        if name.endswith("_valid_sub"):
            # image-level view of the held-out split (frame-level mask AP with COCOEvaluator)
            register_ytvis_frames(name + "_frames", name)


def add_register_ytvis_argument(parser):
    """Add a repeatable ``--register-ytvis NAME JSON IMAGE_ROOT`` option to an argparse parser; returns it."""
    parser.add_argument(
        "--register-ytvis", nargs=3, action="append", default=[], metavar=("NAME", "JSON", "IMAGE_ROOT"),
        help="register a YouTube-VIS format dataset (repeatable); use NAME in DATASETS.TRAIN / DATASETS.TEST",
    )
    return parser


def register_ytvis_from_args(args):
    """Register the datasets given by ``--register-ytvis``; returns the list of registered names. Bad arguments
    raise user errors (one line): :class:`~stmask_d2.utils.errors.MissingFileError` (a ``FileNotFoundError``) for a
    missing file or folder, :class:`~stmask_d2.utils.errors.ConfigError` for a name already registered with other
    files."""
    names = []
    for name, json_file, image_root in getattr(args, "register_ytvis", None) or []:
        if not os.path.isfile(json_file):
            raise MissingFileError(f"--register-ytvis {name}: annotation file {json_file!r} does not exist.")
        if not os.path.isdir(image_root):
            raise MissingFileError(f"--register-ytvis {name}: image root {image_root!r} is not a folder.")
        try:
            register_ytvis_instances(name, {}, json_file, image_root)
        except ValueError as e:  # the name is taken by another dataset
            raise ConfigError(f"--register-ytvis {name}: {e}") from e
        names.append(name)
    return names


register_all_ytvis()
