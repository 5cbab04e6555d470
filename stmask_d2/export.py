"""Export of STMask's frame network to TorchScript or ONNX, and the runtime that runs it under the Python tracker.

Two graphs, both for one input size (H, W), multiples of 32 (the padded network input):

* the **frame network**: input ``images`` (1, 3, H, W), frames already normalised (``STMask.preprocess``);
  outputs (dense, A anchors of all levels, see ``STMaskPredictionHead``)
  ``pred_logits`` (1, A, C'), ``pred_deltas`` (1, A, 4), ``pred_coeffs`` (1, A, k), ``pred_embeds`` (1, A, D),
  ``protos`` (1, k, H/4, W/4), ``tf_map`` (1, 256, H/16, W/16: the TF correlation level), ``tf_up``
  (1, conv_dim, H/16, W/16: the head's upfeature on it) and, when the head predicts it, ``pred_centerness`` (1, A);
* the **TF head** (with temporal fusion): inputs ``prev_map``, ``cur_map``, ``prev_up``, ``cur_up`` (the frame
  network's ``tf_map`` / ``tf_up`` of frames t-1 and t) and ``boxes`` (M, 4) pixel XYXY boxes of frame t-1 (M
  dynamic); outputs ``box_deltas`` (M, 4), ``coeff_deltas`` (M, k).

TorchScript: one file (``torch.jit.trace_module``, methods ``forward`` and ``tf``). ONNX: ``FILE`` and, for the TF
head, ``FILE`` with ``.tf.onnx`` in place of ``.onnx`` (opset 17: GridSample for the deformable convs, which are
traced as grid_sample + matmul; RoiAlign for TF). Each file carries JSON metadata (input size, outputs, levels).

Tracking, NMS, mask assembly and pasting stay in Python: :func:`attach_exported` makes an ``STMask`` model (built
from the same config, its weights unused) call the exported graphs instead of its own network.
"""
import contextlib
import io
import json
import os
import re
import sys
import types
import warnings
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from .layers.deform_conv import force_sampled_deform_conv
from .utils.errors import UserError

__all__ = ["FrameNetwork", "TFNetwork", "export_model", "ExportedNetwork", "attach_exported", "ExportError",
           "FRAME_OUTPUTS", "TF_INPUTS", "TF_OUTPUTS"]

FRAME_OUTPUTS = ["pred_logits", "pred_deltas", "pred_coeffs", "pred_embeds", "protos", "tf_map", "tf_up"]
TF_INPUTS = ["prev_map", "cur_map", "prev_up", "cur_up", "boxes"]
TF_OUTPUTS = ["box_deltas", "coeff_deltas"]
META_KEY = "stmask_d2"
ONNX_OPSET = 17


class ExportError(UserError, ValueError):
    """An export or a run of an exported model that cannot proceed (one line: what and how to fix it)."""


class FrameNetwork(nn.Module):
    """The frame network of an ``STMask`` model as one graph: backbone + FPN, prediction head (dense branches) and
    ProtoNet. forward(images (N, 3, H, W) normalised) -> tuple in the order of :attr:`output_names`."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.centerness = bool(getattr(model.head, "use_centerness", False))
        self.output_names = FRAME_OUTPUTS + (["pred_centerness"] if self.centerness else [])

    def forward(self, images):
        m = self.model
        features = m.backbone(images)
        head = m.head([features[f] for f in m.in_features])
        protos = m.protonet(features[m.protonet_in_feature])
        outs = (head["pred_logits"], head["pred_deltas"], head["pred_coeffs"], head["pred_embeds"], protos,
                features[m.tf_feature], head["upfeatures"][m.tf_level])
        if self.centerness:
            outs = outs + (head["pred_centerness"],)
        return outs


class TFNetwork(nn.Module):
    """The temporal-fusion head as one graph: ``fuse`` + RoIAlign + TemporalNet for the boxes of one frame pair.
    forward(prev_map, cur_map, prev_up, cur_up (1, C, h, w), boxes (M, 4)) -> (box_deltas (M, 4),
    coeff_deltas (M, k))."""

    def __init__(self, tf_head):
        super().__init__()
        self.tf_head = tf_head

    def forward(self, prev_map, cur_map, prev_up, cur_up, boxes):
        fused = self.tf_head.fuse(prev_map, cur_map, prev_up, cur_up)
        return self.tf_head(fused, [boxes])


class _TorchScriptModule(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.frame = FrameNetwork(model)
        self.tfnet = TFNetwork(model.tf_head) if model.tf_head is not None else None

    def forward(self, images):
        return self.frame(images)

    def tf(self, prev_map, cur_map, prev_up, cur_up, boxes):
        return self.tfnet(prev_map, cur_map, prev_up, cur_up, boxes)


# ---------------------------------------------------------------------------------------------------------------
# export
# ---------------------------------------------------------------------------------------------------------------
def tf_onnx_path(path: str) -> str:
    """The file of the TF graph beside the frame network's ONNX file ``path``."""
    return (path[:-5] if path.endswith(".onnx") else path) + ".tf.onnx"


def _example_inputs(model, height, width, num_boxes=3):
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(1, 3, height, width, generator=gen)
    with torch.no_grad():
        outs = FrameNetwork(model)(images)
    tf_map, tf_up = outs[5], outs[6]
    tf = None
    if model.tf_head is not None:
        boxes = torch.tensor([[8.0, 8.0, width * 0.5, height * 0.5], [0.0, 0.0, width, height],
                              [width * 0.3, height * 0.2, width * 0.9, height * 0.7]])[:num_boxes]
        tf = (tf_map, tf_map.flip(-1).contiguous(), tf_up, tf_up.flip(-1).contiguous(), boxes)
    return images, tf, outs


def _meta(model, height, width, fmt, output_names, level_shapes, tf_file):
    return {
        "format": fmt,
        "height": height,
        "width": width,
        "input": "images",
        "outputs": output_names,
        "level_shapes": level_shapes,
        "in_features": list(model.in_features),
        "tf_feature": model.tf_feature,
        "tf_level": model.tf_level,
        "tf_graph": tf_file,
        "tf_inputs": TF_INPUTS,
        "tf_outputs": TF_OUTPUTS,
        "num_class_channels": int(model.head.num_class_channels),
        "mask_dim": int(model.head.mask_dim),
    }


def _unsupported_op(err: Exception) -> Optional[str]:
    """The operator named by an exporter's error message, if any."""
    m = re.search(r"((?:aten|torchvision|prim|onnx)::[A-Za-z0-9_]+)", str(err))
    return m.group(1) if m else None


def export_model(model, path: str, fmt: str, height: int, width: int) -> List[str]:
    """Export the frame network (and the TF head) of an ``STMask`` model in eval mode for inputs of (height,
    width) (multiples of the backbone's size divisibility). Returns the files written.

    Raises :class:`ExportError` (one line) on a bad size or format, or an operator the format cannot express
    (named)."""
    div = model.backbone.size_divisibility or 1
    if height <= 0 or width <= 0 or height % div or width % div:
        raise ExportError(f"--height/--width must be positive multiples of {div} (the padded network input), got "
                          f"{height}x{width}.")
    if fmt not in ("torchscript", "onnx"):
        raise ExportError(f"--format must be torchscript or onnx, got {fmt!r}.")
    model = model.eval()
    os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
    written = []
    try:
        # the exporters print graphs and tracer warnings (shape asserts become constants: one input size)
        with _quiet_stdout(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _export(model, path, fmt, height, width, written)
    except BaseException:
        for f in written:  # nothing half-written
            if os.path.exists(f):
                os.remove(f)
        raise


@contextlib.contextmanager
def _quiet_stdout():
    """Standard output (also the C++ side's, which prints whole graphs on an export error) to /dev/null."""
    sys.stdout.flush()
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):  # e.g. captured by pytest
        with contextlib.redirect_stdout(io.StringIO()):
            yield
        return
    saved = os.dup(fd)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), fd)
            with contextlib.redirect_stdout(io.StringIO()):
                yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, fd)
        os.close(saved)


def _export(model, path, fmt, height, width, written):
    frame = FrameNetwork(model).eval()
    with torch.no_grad(), force_sampled_deform_conv():
        images, tf_inputs, outs = _example_inputs(model, height, width)
        feats = model.backbone(images)
        level_shapes = [list(feats[f].shape[-2:]) for f in model.in_features]
        tmp = path + ".tmp"
        try:
            if fmt == "torchscript":
                meta = _meta(model, height, width, fmt, frame.output_names, level_shapes,
                             "tf" if tf_inputs is not None else None)
                mod = _TorchScriptModule(model).eval()
                methods = {"forward": (images,)}
                if tf_inputs is not None:
                    methods["tf"] = tf_inputs
                traced = torch.jit.trace_module(mod, methods, check_trace=False)
                torch.jit.save(traced, tmp, _extra_files={f"{META_KEY}.json": json.dumps(meta)})
                os.replace(tmp, path)
                written.append(path)
                return [path]
            files = [path]
            tf_file = None
            if tf_inputs is not None:
                tf_file = tf_onnx_path(path)
                _onnx_export(TFNetwork(model.tf_head).eval(), tf_inputs, tf_file, TF_INPUTS, TF_OUTPUTS,
                             {"boxes": {0: "M"}, "box_deltas": {0: "M"}, "coeff_deltas": {0: "M"}},
                             {"format": "onnx", "graph": "tf"})
                written.append(tf_file)
                files.append(tf_file)
            meta = _meta(model, height, width, fmt, frame.output_names, level_shapes,
                         os.path.basename(tf_file) if tf_file else None)
            _onnx_export(frame, (images,), path, ["images"], frame.output_names, None, meta)
            written.append(path)
            return files
        except ExportError:
            raise
        except Exception as e:  # an exporter's error: name the operator
            op = _unsupported_op(e)
            what = f"operator {op}" if op else f"the model ({type(e).__name__}: {str(e).splitlines()[0][:200]})"
            raise ExportError(f"{fmt} export failed: {what} cannot be exported"
                              f"{f' to ONNX opset {ONNX_OPSET}' if fmt == 'onnx' else ''}.") from e
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)


def _onnx_export(module, args, path, input_names, output_names, dynamic_axes, meta):
    import onnx

    tmp = path + ".tmp"
    try:
        torch.onnx.export(module, args, tmp, input_names=input_names, output_names=output_names,
                          dynamic_axes=dynamic_axes, opset_version=ONNX_OPSET, dynamo=False,
                          do_constant_folding=True)
        proto = onnx.load(tmp)
        entry = proto.metadata_props.add()
        entry.key, entry.value = META_KEY, json.dumps(meta)
        onnx.save(proto, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


# ---------------------------------------------------------------------------------------------------------------
# runtime
# ---------------------------------------------------------------------------------------------------------------
class ExportedNetwork:
    """A file written by :func:`export_model`: TorchScript (``torch.jit.load``) or ONNX (onnxruntime, CPU).

    ``run(images)`` -> dict output name -> tensor; ``run_tf(prev_map, cur_map, prev_up, cur_up, boxes)`` ->
    (box_deltas, coeff_deltas); ``meta`` the export's metadata."""

    def __init__(self, path: str, threads: int = 0):
        if not os.path.isfile(path):
            raise ExportError(f"Exported model '{path}' does not exist (write it with tools/export_model.py).")
        self.path = path
        if path.endswith(".onnx"):
            self._init_onnx(path, threads)
        else:
            self._init_torchscript(path)
        for key in ("height", "width", "outputs", "level_shapes"):
            if key not in self.meta:
                raise ExportError(f"{path}: not a model written by tools/export_model.py (no '{key}' in its "
                                  f"metadata).")

    def _init_torchscript(self, path):
        extra = {f"{META_KEY}.json": ""}
        try:
            self.module = torch.jit.load(path, map_location="cpu", _extra_files=extra)
        except Exception as e:  # not a TorchScript archive
            raise ExportError(f"{path}: not a TorchScript file ({type(e).__name__}); export with "
                              f"tools/export_model.py --format torchscript.") from e
        try:
            self.meta = json.loads(extra[f"{META_KEY}.json"] or "{}")
        except ValueError:
            self.meta = {}
        self.kind = "torchscript"
        self.has_tf = self.meta.get("tf_graph") is not None

    def _init_onnx(self, path, threads):
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise ExportError("onnxruntime is not installed: pip install onnxruntime (requirements.txt).") from e
        opts = ort.SessionOptions()
        if threads > 0:
            opts.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        except Exception as e:
            raise ExportError(f"{path}: onnxruntime cannot load it ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:200]}).") from e
        meta = self.session.get_modelmeta().custom_metadata_map.get(META_KEY)
        self.meta = json.loads(meta) if meta else {}
        self.kind = "onnx"
        self.tf_session = None
        self.has_tf = bool(self.meta.get("tf_graph"))
        if self.has_tf:
            tf_path = os.path.join(os.path.dirname(os.path.abspath(path)), self.meta["tf_graph"])
            if not os.path.isfile(tf_path):
                raise ExportError(f"{path}: its TF graph '{tf_path}' is missing (export both files together).")
            self.tf_session = ort.InferenceSession(tf_path, opts, providers=["CPUExecutionProvider"])

    @property
    def input_size(self) -> Tuple[int, int]:
        return int(self.meta["height"]), int(self.meta["width"])

    def run(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        """images (1, 3, H, W) normalised, (H, W) = :attr:`input_size` -> outputs by name (float32, CPU)."""
        if tuple(images.shape[-2:]) != self.input_size or images.shape[0] != 1:
            raise ExportError(f"{self.path} was exported for one {self.input_size[0]}x{self.input_size[1]} input, "
                              f"got {tuple(images.shape)}; export it for this size (tools/export_model.py "
                              f"--height {images.shape[-2]} --width {images.shape[-1]}).")
        if self.kind == "onnx":
            outs = self.session.run(None, {"images": images.detach().cpu().float().contiguous().numpy()})
            outs = [torch.from_numpy(o) for o in outs]
        else:
            with torch.inference_mode():
                outs = self.module(images.float())
        return dict(zip(self.meta["outputs"], outs))

    def run_tf(self, prev_map, cur_map, prev_up, cur_up, boxes):
        if self.kind == "onnx":
            feed = dict(zip(TF_INPUTS, (t.detach().cpu().float().contiguous().numpy()
                                        for t in (prev_map, cur_map, prev_up, cur_up, boxes))))
            d, c = self.tf_session.run(None, feed)
            return torch.from_numpy(d), torch.from_numpy(c)
        with torch.inference_mode():
            return self.module.tf(prev_map, cur_map, prev_up, cur_up, boxes.float())


class _ExportedTFHead(nn.Module):
    """Stands in for ``STMask.tf_head``: ``fuse`` only gathers its four maps, ``forward`` runs the exported TF
    graph, ``propagate`` is the original head's (Python arithmetic)."""

    def __init__(self, exported: ExportedNetwork, propagate):
        super().__init__()
        self.exported = exported
        self._propagate = propagate

    def fuse(self, prev_map, cur_map, prev_up, cur_up):
        return (prev_map, cur_map, prev_up, cur_up)

    def forward(self, fused, boxes_prev: Sequence[torch.Tensor]):
        assert len(boxes_prev) == 1, "the exported TF graph takes the boxes of one frame pair"
        return self.exported.run_tf(*fused, boxes_prev[0])

    def propagate(self, boxes, coeffs, box_deltas, coeff_deltas):
        return self._propagate(boxes, coeffs, box_deltas, coeff_deltas)


def attach_exported(model, exported: ExportedNetwork):
    """Make ``model`` (an ``STMask`` in eval mode, built from the export's config) run its frame network and TF head
    through ``exported``; everything else (resize, NMS, masks, tracking, pasting, RLE) stays the model's Python.
    Returns the model. Its own network weights are no longer used."""
    meta = exported.meta
    if list(meta.get("in_features", model.in_features)) != list(model.in_features):
        raise ExportError(f"{exported.path} was exported with IN_FEATURES {meta.get('in_features')}, the config "
                          f"has {model.in_features}: use the config it was exported with.")
    if (model.tf_head is not None) != exported.has_tf:
        raise ExportError(f"{exported.path} {'has' if exported.has_tf else 'has no'} TF graph but the config has "
                          f"MODEL.STMASK.TF.ENABLED {model.tf_head is not None}: use the config it was exported with.")
    level_shapes = [tuple(s) for s in meta["level_shapes"]]
    tf_level = int(meta["tf_level"])

    def extract(self, images):
        with self.timer("backbone+fpn"):
            out = exported.run(images.tensor)
        dev = images.tensor.device
        out = {k: v.to(dev) for k, v in out.items()}
        # the anchors need only the level sizes: empty maps of those sizes stand in for the FPN levels
        features = {f: images.tensor.new_empty((1, 0, h, w)) for f, (h, w) in zip(self.in_features, level_shapes)}
        features[self.tf_feature] = out["tf_map"]
        head_out = {k: out[k] for k in ("pred_logits", "pred_deltas", "pred_coeffs", "pred_embeds",
                                        "pred_centerness") if k in out}
        ups = [None] * len(level_shapes)
        ups[tf_level] = out["tf_up"]
        head_out["upfeatures"] = ups
        return features, head_out, out["protos"][:1]

    model.extract = types.MethodType(extract, model)
    if model.tf_head is not None:
        model.tf_head = _ExportedTFHead(exported, model.tf_head.propagate)
    model.exported = exported
    return model
