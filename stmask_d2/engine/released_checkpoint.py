"""Convert the authors' released STMask / Yolact(++) checkpoints into Detectron2 checkpoints of this project.

The authors (MinghanLi/STMask, dbolya/yolact) save ``torch.save(net.state_dict())``: a flat dict of tensors with
their own module names. This module

1. reads such a file without unpickling arbitrary objects (``torch.load(weights_only=True)``),
2. detects the variant from key names and shapes (:func:`detect_variant`: ResNet depth and DCN placement, FCA
   kernels, FCB none/ali/ada and its branches, centerness, track branch, TF, number of classes),
3. renames / reshapes every tensor into this project's names (:func:`convert_state_dict`), and
4. either checks the result against the matching ``configs/released/*.yaml`` (zero missing, zero unexpected) or, for
   initialisation (e.g. Yolact++ COCO weights into a video config), keeps what fits a target config and lists the
   rest in one warning (:func:`fit_to_model`).

Mapping (authors -> ours; ``S.B`` = stage / block, our stage = S + 2):

==============================================  ==============================================================
``backbone.conv1`` / ``backbone.bn1.*``          ``backbone.bottom_up.stem.conv1`` / ``.conv1.norm.*``
``backbone.layers.S.B.convN.weight``             ``backbone.bottom_up.resS+2.B.convN.weight``
``backbone.layers.S.B.bnN.*``                    ``backbone.bottom_up.resS+2.B.convN.norm.*`` (FrozenBN)
``backbone.layers.S.B.conv2.bias`` (DCNv2)       folded into ``convN.norm.running_mean`` (mean -= bias: the
                                                 bias is added before a BatchNorm, so the function is unchanged)
``backbone.layers.S.B.conv2.conv_offset_mask``   ``...conv2_offset`` (same 27-channel layout: chunk(3) -> o1, o2,
                                                 mask; offset = cat(o1, o2), channel 2k = dy, 2k+1 = dx of tap k)
``backbone.layers.S.B.downsample.{0,1}``         ``...shortcut.weight`` / ``...shortcut.norm.*``
``*.num_batches_tracked``                        dropped (BatchNorm bookkeeping, not used by FrozenBN)
``fpn.{lat,pred,downsample}_layers.i``           ``backbone.{lat,pred,downsample}_layers.i``
``proto_net.i``                                  ``protonet.proto_net.i``
``prediction_layers.0.upfeature.0``              ``head.upfeature.0``
``prediction_layers.0.{conf,bbox,mask,track}_extra.i``  ``head.{class,box,mask,track}_tower.i``
``prediction_layers.0.bbox_layer.k`` (4 ch) +    ``head.box_pred.convs.k`` (5 ch: deltas then centerness,
``prediction_layers.0.centerness_layer.k`` (1)   concatenated on the output axis)
``prediction_layers.0.conf_layer.k``             ``head.class_pred.convs.k``; class rows rotated: theirs have the
                                                 background first (index 0), ours last (index C)
``conf_layer.k.{conv_offset,conv_adaption,conv}`` (FCB)  ``head.class_pred.k.{offset_conv,dcn,conv}``
``prediction_layers.0.{mask,track}_layer.k``     ``head.{coeff,track}_pred.convs.k`` (or ``.k.{...}`` with FCB)
``TemporalNet.conv{1,2,3}`` / ``fc`` / ``fc_coeff``  ``tf_head.convs.{0,2,4}`` / ``fc`` / ``fc_coeff``
==============================================  ==============================================================

Parts without a counterpart here are recognised and reported as unusable instead of rejected: Yolact(++)'s
single-conv head (``prediction_layers.0.{bbox,conf,mask}_layer.weight``, its anchors are not FCA anchors),
``semantic_seg_conv`` (training-only loss) and ``maskiou_net`` (Yolact++ mask re-scoring).
"""
import argparse
import logging
import os
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import torch

from .errors import UserError, run_cli

__all__ = [
    "main",
    "ConversionError",
    "Variant",
    "load_authors_checkpoint",
    "detect_variant",
    "convert_state_dict",
    "released_config_name",
    "released_config_path",
    "target_shapes",
    "fit_to_model",
    "convert_checkpoint",
    "RELEASED_CONFIG_DIR",
    "load_config",
]

logger = logging.getLogger(__name__)

RELEASED_CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                                   "configs", "released")


class ConversionError(UserError, ValueError):
    """The input is not a checkpoint this converter understands (printed as one line, exit code 2)."""


@dataclass
class Variant:
    """What a released checkpoint contains (detected from its keys and shapes)."""

    family: str  # "stmask" (FCA head, the authors' STMask code) or "yolact" (dbolya/yolact single-conv head)
    depth: int  # 50 or 101
    deform_stages: List[bool]  # res2..res5: does the stage hold deformable blocks
    deform_interval: int  # block i of a deformable stage is deformable iff i % interval == 0
    num_classes: int  # foreground classes (background excluded)
    kernel_shapes: List[Tuple[int, int]] = field(default_factory=list)  # FCA kernels (stmask family)
    anchors_per_kernel: int = 1
    num_tower_convs: int = 0
    fcb_mode: str = "none"  # none / ada / ali
    fcb_branches: List[str] = field(default_factory=list)
    centerness: bool = False
    track: bool = False
    tf: bool = False

    @property
    def kind(self) -> str:
        """"video" (has the temporal fusion module), "coco" (80 classes) or "image"."""
        if self.tf:
            return "video"
        return "coco" if self.num_classes == 80 else "image"

    def describe(self) -> str:
        dcn = "-DCN" if any(self.deform_stages) else ""
        parts = [f"R{self.depth}{dcn}"]
        if self.family == "yolact":
            parts.append("Yolact(++) head")
        else:
            parts.append("FCA")
            if self.fcb_mode != "none":
                parts.append(f"FCB({self.fcb_mode}: {'+'.join(self.fcb_branches)})")
            if self.tf:
                parts.append("TF")
        return f"{' '.join(parts)}, {self.num_classes} classes"


# ----------------------------------------------------------------------------------------------------------------
# loading
# ----------------------------------------------------------------------------------------------------------------
def load_authors_checkpoint(path: str) -> Dict[str, torch.Tensor]:
    """Read a released checkpoint as a flat {name: tensor} dict, on the CPU, without unpickling code objects.

    Accepts the authors' plain ``state_dict`` files and, for convenience, dicts that wrap one under "state_dict"
    or "model", and keys prefixed by "module." (DataParallel). Raises :class:`ConversionError` (one line) for
    anything else.
    """
    if not os.path.isfile(path):
        raise ConversionError(f"Input checkpoint '{path}' does not exist; download it from the authors' link first.")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, pickle.UnpicklingError, zipfile.BadZipFile,
            AttributeError, TypeError) as e:
        msg = " ".join(str(e).split())[:200]
        raise ConversionError(
            f"'{path}' could not be read as a PyTorch checkpoint with weights only ({type(e).__name__}: {msg}); "
            f"it is truncated, not a checkpoint, or holds arbitrary Python objects. Re-download it."
        ) from e
    if isinstance(obj, dict):
        for wrapper in ("state_dict", "model"):
            if isinstance(obj.get(wrapper), dict) and not isinstance(obj.get(wrapper), torch.Tensor):
                obj = obj[wrapper]
                break
    if isinstance(obj, dict) and obj and all(isinstance(k, str) and k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}  # saved from a (Distributed)DataParallel wrapper
    if not isinstance(obj, dict) or not obj:
        raise ConversionError(f"'{path}' holds a {type(obj).__name__}, not a state dict of tensors; it is not an "
                              f"STMask / Yolact checkpoint.")
    for k, v in obj.items():
        if not isinstance(k, str) or not isinstance(v, torch.Tensor):
            raise ConversionError(f"'{path}' is not a state dict of tensors (entry {k!r} is a {type(v).__name__}); "
                                  f"it is not an STMask / Yolact checkpoint.")
    return obj


# ----------------------------------------------------------------------------------------------------------------
# variant detection
# ----------------------------------------------------------------------------------------------------------------
_BLOCK = re.compile(r"^backbone\.layers\.(\d+)\.(\d+)\.")
_HEAD = "prediction_layers.0."


def _deform_layout(sd) -> Tuple[List[bool], int]:
    blocks: Dict[int, set] = {}
    dcn: Dict[int, set] = {}
    for k in sd:
        m = _BLOCK.match(k)
        if m:
            s, b = int(m.group(1)), int(m.group(2))
            blocks.setdefault(s, set()).add(b)
            if k.endswith(".conv2.conv_offset_mask.weight"):
                dcn.setdefault(s, set()).add(b)
    stages = [bool(dcn.get(s)) for s in range(4)]
    if not any(stages):
        return stages, 1
    for interval in range(1, 1 + max(len(v) for v in blocks.values())):
        if all({b for b in blocks[s] if b % interval == 0} == dcn.get(s, set()) for s in range(4) if stages[s]):
            return stages, interval
    first = sorted(dcn.items())[0]
    raise ConversionError(
        f"Unsupported DCN placement (stage {first[0]} has deformable blocks {sorted(first[1])}); this converter "
        f"supports deformable blocks every N blocks of a stage (MODEL.RESNETS.DEFORM_INTERVAL)."
    )


def _first_unknown(sd, known_prefixes):
    for k in sd:
        if not k.startswith(known_prefixes):
            return k
    return None


def detect_variant(sd: Dict[str, torch.Tensor]) -> Variant:
    """Detect the architecture of an authors' checkpoint from key names and shapes.

    Raises :class:`ConversionError` naming the first key that is not part of an STMask / Yolact model.
    """
    unknown = _first_unknown(sd, ("backbone.", "fpn.", "proto_net.", _HEAD, "TemporalNet.", "semantic_seg_conv.",
                                  "maskiou_net."))
    if unknown is not None:
        raise ConversionError(
            f"Unknown key '{unknown}': this is not an STMask / Yolact(++) checkpoint of MinghanLi/STMask or "
            f"dbolya/yolact (expected backbone.*, fpn.*, proto_net.*, prediction_layers.0.*, TemporalNet.*)."
        )
    for required in ("backbone.conv1.weight", "backbone.layers.2.0.conv1.weight", "fpn.lat_layers.0.weight"):
        if required not in sd:
            raise ConversionError(f"Key '{required}' is missing: the checkpoint is incomplete (re-download it).")
    n_res4 = 1 + max(int(m.group(2)) for m in map(_BLOCK.match, sd) if m and m.group(1) == "2")
    depth = {6: 50, 23: 101}.get(n_res4)
    if depth is None:
        raise ConversionError(f"Unsupported backbone: its third stage has {n_res4} blocks (R50: 6, R101: 23).")
    stages, interval = _deform_layout(sd)

    if _HEAD + "bbox_layer.weight" in sd:  # Yolact / Yolact++: one 3x3 conv per branch for all anchors
        a = sd[_HEAD + "bbox_layer.weight"].shape[0] // 4
        conf = sd.get(_HEAD + "conf_layer.weight")
        ncls = conf.shape[0] // a - 1 if conf is not None else 80
        return Variant("yolact", depth, stages, interval, ncls, [(3, 3)], a)

    if _HEAD + "bbox_layer.0.weight" not in sd:
        raise ConversionError(f"Key '{_HEAD}bbox_layer.0.weight' is missing: the prediction head is neither STMask's "
                              f"(per-kernel FCA convs) nor Yolact's; the file is incomplete or of another model.")
    kernels, k = [], 0
    while f"{_HEAD}bbox_layer.{k}.weight" in sd:
        w = sd[f"{_HEAD}bbox_layer.{k}.weight"]
        kernels.append((int(w.shape[2]), int(w.shape[3])))
        k += 1
    per_kernel = sd[_HEAD + "bbox_layer.0.weight"].shape[0] // 4
    fcb_branches, fcb_mode = [], "none"
    for ours, theirs in (("class", "conf"), ("mask", "mask"), ("track", "track")):
        if f"{_HEAD}{theirs}_layer.0.conv_adaption.weight" in sd:
            fcb_branches.append(ours)
            mode = "ada" if f"{_HEAD}{theirs}_layer.0.conv_offset.weight" in sd else "ali"
            if fcb_mode not in ("none", mode):
                raise ConversionError("FCB branches mix 'ada' and 'ali' offsets; MODEL.STMASK.FCB.MODE is one mode.")
            fcb_mode = mode
    conf_key = f"{_HEAD}conf_layer.0.conv.weight" if "class" in fcb_branches else f"{_HEAD}conf_layer.0.weight"
    if conf_key not in sd:
        raise ConversionError(f"Key '{conf_key}' is missing: the class branch of the head is incomplete.")
    ncls = sd[conf_key].shape[0] // per_kernel - 1
    towers = len([k for k in sd if k.startswith(_HEAD + "conf_extra.") and k.endswith(".weight")])
    return Variant(
        "stmask", depth, stages, interval, int(ncls), kernels, int(per_kernel), towers, fcb_mode, fcb_branches,
        centerness=f"{_HEAD}centerness_layer.0.weight" in sd,
        track=f"{_HEAD}track_layer.0.weight" in sd or f"{_HEAD}track_layer.0.conv.weight" in sd,
        tf="TemporalNet.conv1.weight" in sd,
    )


# ----------------------------------------------------------------------------------------------------------------
# renaming
# ----------------------------------------------------------------------------------------------------------------
_BN = ("weight", "bias", "running_mean", "running_var")
_TOWERS = {"conf": "class", "bbox": "box", "mask": "mask", "track": "track"}
_PREDS = {"conf": "class_pred", "mask": "coeff_pred", "track": "track_pred"}
_FCB_PARTS = {"conv_offset": "offset_conv", "conv_adaption": "dcn", "conv": "conv"}
_NO_COUNTERPART = {"semantic_seg_conv": "Yolact's semantic-segmentation loss conv (training only)",
                   "maskiou_net": "Yolact++'s mask re-scoring net"}
_TEMPORAL = {"conv1": "convs.0", "conv2": "convs.2", "conv3": "convs.4", "fc": "fc", "fc_coeff": "fc_coeff"}


def _background_last(t: torch.Tensor, per_anchor: int, anchors: int = 1) -> torch.Tensor:
    """Rows (anchors x (1 + C)) with the background first -> (anchors x (C + 1)) with the background last."""
    shape = t.shape
    t = t.reshape(anchors, per_anchor, *shape[1:])
    return torch.cat([t[:, 1:], t[:, :1]], 1).reshape(shape)


def _backbone_key(s: int, b: int, rest: str) -> Optional[str]:
    """Our name of ``backbone.layers.S.B.<rest>`` (None for num_batches_tracked and the DCN bias)."""
    pre = f"backbone.bottom_up.res{s + 2}.{b}."
    m = re.fullmatch(r"conv(\d)\.weight", rest)
    if m:
        return pre + rest
    m = re.fullmatch(r"bn(\d)\.(\w+)", rest)
    if m and m.group(2) in _BN:
        return f"{pre}conv{m.group(1)}.norm.{m.group(2)}"
    m = re.fullmatch(r"conv2\.conv_offset_mask\.(weight|bias)", rest)
    if m:
        return f"{pre}conv2_offset.{m.group(1)}"
    if rest == "downsample.0.weight":
        return pre + "shortcut.weight"
    m = re.fullmatch(r"downsample\.1\.(\w+)", rest)
    if m and m.group(1) in _BN:
        return f"{pre}shortcut.norm.{m.group(1)}"
    raise KeyError(rest)


def convert_state_dict(sd: Dict[str, torch.Tensor], variant: Optional[Variant] = None):
    """Rename and reshape an authors' state dict into this project's names.

    Args:
        sd: the authors' state dict (see :func:`load_authors_checkpoint`).
        variant: from :func:`detect_variant` (detected when None).
    Returns:
        (state dict in our names, list of "authors_key: reason" for tensors that have no counterpart in this
        project and were left out, e.g. Yolact++'s maskiou_net).
    Raises:
        ConversionError naming the first key it does not understand.
    """
    variant = variant or detect_variant(sd)
    out: Dict[str, torch.Tensor] = {}
    unusable: List[str] = []
    dcn_bias: Dict[str, torch.Tensor] = {}  # our conv2.norm prefix -> DCN bias to fold
    ncls1 = variant.num_classes + 1
    a = variant.anchors_per_kernel

    def unknown(k):
        return ConversionError(
            f"Unknown key '{k}' {tuple(sd[k].shape)}: not part of the detected {variant.describe()} model; the file "
            f"is from another model or another code version (nothing written)."
        )

    for k, v in sd.items():
        if k.endswith(".num_batches_tracked"):
            continue
        if k == "backbone.conv1.weight":
            out["backbone.bottom_up.stem.conv1.weight"] = v
            continue
        m = re.fullmatch(r"backbone\.bn1\.(\w+)", k)
        if m and m.group(1) in _BN:
            out[f"backbone.bottom_up.stem.conv1.norm.{m.group(1)}"] = v
            continue
        m = _BLOCK.match(k)
        if m:
            s, b, rest = int(m.group(1)), int(m.group(2)), k[m.end():]
            if rest == "conv2.bias":  # DCNv2 bias, added before bn2
                dcn_bias[f"backbone.bottom_up.res{s + 2}.{b}.conv2.norm."] = v
                continue
            try:
                out[_backbone_key(s, b, rest)] = v
            except KeyError:
                raise unknown(k) from None
            continue
        m = re.fullmatch(r"fpn\.(lat_layers|pred_layers|downsample_layers)\.(\d+)\.(weight|bias)", k)
        if m:
            out["backbone." + k[len("fpn."):]] = v
            continue
        m = re.fullmatch(r"proto_net\.(\d+)\.(weight|bias)", k)
        if m:
            out["protonet." + k] = v
            continue
        m = re.fullmatch(r"TemporalNet\.(conv1|conv2|conv3|fc|fc_coeff)\.(weight|bias)", k)
        if m:
            out[f"tf_head.{_TEMPORAL[m.group(1)]}.{m.group(2)}"] = v
            continue
        if k.startswith(("semantic_seg_conv.", "maskiou_net.")):
            unusable.append(f"{k}: {_NO_COUNTERPART[k.split('.')[0]]} has no counterpart here")
            continue
        if not k.startswith(_HEAD):
            raise unknown(k)
        h = k[len(_HEAD):]
        if h.startswith("upfeature.0."):
            out["head." + h] = v
            continue
        m = re.fullmatch(r"(conf|bbox|mask|track)_extra\.(\d+)\.(weight|bias)", h)
        if m:
            out[f"head.{_TOWERS[m.group(1)]}_tower.{m.group(2)}.{m.group(3)}"] = v
            continue
        if variant.family == "yolact":
            if re.fullmatch(r"(bbox|conf|mask)_layer\.(weight|bias)", h):
                unusable.append(f"{k}: Yolact head conv for {a} ratio anchors; FCA configs predict per kernel")
                continue
            raise unknown(k)
        m = re.fullmatch(r"(bbox|centerness)_layer\.(\d+)\.(weight|bias)", h)
        if m:
            if m.group(1) == "bbox":
                g, p = int(m.group(2)), m.group(3)
                parts = [v]
                if variant.centerness:
                    ctr = sd.get(f"{_HEAD}centerness_layer.{g}.{p}")
                    if ctr is None:
                        raise ConversionError(f"Key '{_HEAD}centerness_layer.{g}.{p}' is missing while other "
                                              f"centerness convs exist; the file is incomplete.")
                    parts = [v.reshape(a, 4, *v.shape[1:]), ctr.reshape(a, 1, *ctr.shape[1:])]
                    parts = [torch.cat(parts, 1).reshape(a * 5, *v.shape[1:])]
                out[f"head.box_pred.convs.{g}.{p}"] = parts[0]
            continue
        m = re.fullmatch(r"(conf|mask|track)_layer\.(\d+)\.(weight|bias)", h)
        if m:
            br, g, p = m.group(1), int(m.group(2)), m.group(3)
            out[f"head.{_PREDS[br]}.convs.{g}.{p}"] = _background_last(v, ncls1, a) if br == "conf" else v
            continue
        m = re.fullmatch(r"(conf|mask|track)_layer\.(\d+)\.(conv_offset|conv_adaption|conv)\.(weight|bias)", h)
        if m:
            br, g, part, p = m.groups()
            if part == "conv" and br == "conf":
                v = _background_last(v, ncls1)
            out[f"head.{_PREDS[br]}.{g}.{_FCB_PARTS[part]}.{p}"] = v
            continue
        raise unknown(k)

    for prefix, bias in dcn_bias.items():
        mean_key = prefix + "running_mean"
        if mean_key not in out:
            raise ConversionError(f"The deformable conv bias of '{prefix[:-len('conv2.norm.')]}' has no BatchNorm "
                                  f"after it (bn2 missing); the file is incomplete.")
        out[mean_key] = out[mean_key] - bias  # BN(x + b) with mean m == BN(x) with mean m - b
    return out, unusable


# ----------------------------------------------------------------------------------------------------------------
# configs
# ----------------------------------------------------------------------------------------------------------------
def released_config_name(variant: Variant, filename: str = "") -> str:
    """Name (without .yaml) of the ``configs/released`` config of a variant, e.g. "STMask_plus_resnet50_ada".

    The YouTube-VIS 2019 / 2021 models have the same shapes (40 classes); "2021" in ``filename`` selects 2021.
    Yolact++ COCO weights (not a released STMask model) get the FCA+TF video config of the same depth, for
    initialisation.
    """
    backbone = "resnet50" if variant.depth == 50 else "base"
    fcb = f"_{variant.fcb_mode}" if variant.fcb_mode != "none" else ""
    if variant.family == "yolact" or variant.kind == "image":
        return f"STMask_plus_{backbone}"
    if variant.kind == "coco":
        if backbone == "base" and variant.fcb_mode == "ada":
            return "yolact_plus_baseada_54"
        return f"yolact_plus_{backbone}{fcb}_54"
    if variant.num_classes == 25:
        return f"STMask_plus_{backbone}{fcb}_OVIS"
    if "2021" in os.path.basename(filename):
        return f"STMask_plus_{backbone}{fcb}_YTVIS2021"
    return f"STMask_plus_{backbone}{fcb}"


def released_config_path(name: str) -> str:
    return os.path.join(RELEASED_CONFIG_DIR, name + ".yaml")


def load_config(config_file: str):
    """A Detectron2 config with the STMask keys, merged from ``config_file`` (one-line error if absent)."""
    from .setup import get_stmask_cfg

    if not os.path.isfile(config_file):
        raise ConversionError(f"Config file '{config_file}' does not exist (see configs/released/).")
    return get_stmask_cfg(config_file, validate=False, freeze=False)


def target_shapes(cfg) -> Dict[str, Tuple[int, ...]]:
    """{name: shape} of the state dict of the model ``cfg`` builds (built on the "meta" device: no memory, ~0.3 s
    for R101)."""
    from detectron2.modeling import META_ARCH_REGISTRY

    from .. import modeling  # noqa: F401  (registers the STMask architecture)

    with torch.device("meta"):
        model = META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE)(cfg)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def fit_to_model(converted: Dict[str, torch.Tensor], shapes: Dict[str, Tuple[int, ...]]):
    """Keep the tensors of ``converted`` whose name and shape exist in the target model.

    Returns:
        (kept state dict, list of "name: reason" left out, list of target names not initialised).
    """
    kept, dropped = {}, []
    for k, v in converted.items():
        if k not in shapes:
            dropped.append(f"{k}: not in the target model")
        elif tuple(v.shape) != shapes[k]:
            dropped.append(f"{k}: shape {tuple(v.shape)} vs {shapes[k]} in the target model")
        else:
            kept[k] = v
    missing = [k for k in shapes if k not in kept]
    return kept, dropped, missing


def architecture_opts(variant: Variant, cfg) -> List[str]:
    """Config overrides ("KEY", "VALUE", ...) that make ``cfg`` build the detected architecture where the file
    differs from the released config in a way the keys express: the DCN placement (the authors' R50-DCN had DCN
    every 3 blocks until 2021-06-27 and every 2 blocks since) and the tower depth. Empty when nothing differs."""
    opts = []
    r = cfg.MODEL.RESNETS
    if list(r.DEFORM_ON_PER_STAGE) != variant.deform_stages:
        opts += ["MODEL.RESNETS.DEFORM_ON_PER_STAGE", str(variant.deform_stages)]
    if any(variant.deform_stages) and r.DEFORM_INTERVAL != variant.deform_interval:
        opts += ["MODEL.RESNETS.DEFORM_INTERVAL", str(variant.deform_interval)]
    if variant.family == "stmask" and cfg.MODEL.STMASK.HEAD.NUM_TOWER_CONVS != variant.num_tower_convs:
        opts += ["MODEL.STMASK.HEAD.NUM_TOWER_CONVS", str(variant.num_tower_convs)]
    return opts


def _summarise(names: List[str], limit: int = 12) -> str:
    """Group names by module (strip the parameter name) and shorten the list."""
    groups = []
    for n in names:
        mod = n.split(":")[0].rsplit(".", 1)[0]
        if mod not in groups:
            groups.append(mod)
    more = f", ... ({len(groups) - limit} more)" if len(groups) > limit else ""
    return ", ".join(groups[:limit]) + more


def convert_checkpoint(in_path: str, out_path: str, config_file: Optional[str] = None, save=True):
    """Convert ``in_path`` (authors' format) into a Detectron2 checkpoint ``out_path`` for ``config_file``.

    Without ``config_file`` the released config of the detected variant is used, and the result must match it
    exactly (zero missing, zero unexpected keys). With ``config_file`` (initialisation, e.g. Yolact++ COCO weights
    into a video config) the tensors that do not fit are left out and listed in one warning, as are the target
    parameters left uninitialised. Nothing is written when anything fails (atomic write).

    When the file's DCN placement or tower depth differs from the released config, the matching overrides
    (:func:`architecture_opts`) are applied and returned in "opts": pass them with ``--opts`` when using the output.

    Returns:
        dict with "variant", "config", "opts" (list), "kept", "dropped" (list), "missing" (list), "exact" (bool).
    """
    from ..utils.io import atomic_write

    sd = load_authors_checkpoint(in_path)
    variant = detect_variant(sd)
    converted, unusable = convert_state_dict(sd, variant)
    exact_wanted = config_file is None
    if config_file is None:
        config_file = released_config_path(released_config_name(variant, in_path))
        if variant.family == "yolact" or variant.kind == "image":
            exact_wanted = False  # initialisation weights, not a released STMask model
    cfg = load_config(config_file)
    opts = architecture_opts(variant, cfg) if exact_wanted else []
    if opts:
        cfg.merge_from_list(opts)
        logger.warning(f"{os.path.basename(in_path)} differs from {os.path.relpath(config_file)} in its architecture; "
                       f"use the config with --opts {' '.join(opts)}")
    shapes = target_shapes(cfg)
    kept, dropped, missing = fit_to_model(converted, shapes)
    dropped = unusable + dropped
    exact = not dropped and not missing
    if exact_wanted and not exact:
        first = (dropped or missing)[0]
        raise ConversionError(
            f"The checkpoint ({variant.describe()}) does not match {os.path.relpath(config_file)} exactly "
            f"(first difference: {first}); pass --config with the config it should initialise."
        )
    if not exact:
        logger.warning(
            f"Initialisation checkpoint for {os.path.relpath(config_file)}: {len(dropped)} tensors of "
            f"{os.path.basename(in_path)} cannot be used ({_summarise(dropped)}); {len(missing)} parameters of the "
            f"model keep their initialisation ({_summarise(missing)})."
        )
    if save:
        data = {
            "model": kept,
            "__author__": "converted from the authors' release by stmask_d2 (tools/convert_stmask_checkpoint.py)",
            "matching_heuristics": False,
            "stmask_variant": variant.describe(),
            "stmask_config": os.path.relpath(config_file),
            "stmask_opts": opts,
        }
        try:
            atomic_write(out_path, lambda f: torch.save(data, f))
        except OSError as e:  # a folder that does not exist or is a file, no permission, disk full
            raise ConversionError(f"cannot write OUT.pth {out_path!r} ({e.strerror or e}).") from e
    return {"variant": variant, "config": config_file, "opts": opts, "kept": kept, "dropped": dropped,
            "missing": missing, "exact": exact}


# ---------------------------------------------------------------------------------------------------------------
# command line (tools/convert_stmask_checkpoint.py)
# ---------------------------------------------------------------------------------------------------------------
def get_parser():
    p = argparse.ArgumentParser(description="Convert a checkpoint released by the STMask authors (or a Yolact / "
                                            "Yolact++ COCO checkpoint) into a Detectron2 checkpoint of stmask_d2.")
    p.add_argument("input", metavar="IN.pth", help="checkpoint downloaded from the authors' links")
    p.add_argument("output", metavar="OUT.pth", help="Detectron2 checkpoint to write (for MODEL.WEIGHTS)")
    p.add_argument("--config", metavar="CONFIG",
                   help="config the output is for (default: the configs/released/ config of the detected variant); "
                        "with it, parts that do not fit are left out with a warning (initialisation weights)")
    return p


def _convert_cli(argv):
    import time

    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="WARNING: %(message)s")
    t0 = time.perf_counter()
    if os.path.abspath(args.input) == os.path.abspath(args.output):
        raise ConversionError("OUT.pth must differ from IN.pth (the authors' file is kept unchanged).")
    res = convert_checkpoint(args.input, args.output, args.config)
    cfg = os.path.relpath(res["config"])
    status = "exact match" if res["exact"] else (
        f"initialisation: {len(res['dropped'])} tensors left out, {len(res['missing'])} parameters not initialised")
    print(f"{args.input}: {res['variant'].describe()} -> {args.output} ({len(res['kept'])} tensors, {status}, "
          f"{time.perf_counter() - t0:.1f} s)")
    opts = " ".join(res["opts"] + ["MODEL.WEIGHTS", args.output])
    print(f"Use it with: --config-file {cfg} --opts {opts}")
    return 0


def main(argv=None):
    """``tools/convert_stmask_checkpoint.py``; returns the exit code (2: a file that is not understood or cannot
    be written, printed as one line naming the first unknown key; nothing is written)."""
    return run_cli(_convert_cli, argv, prog="convert_stmask_checkpoint.py")
