"""Conversion of the authors' released checkpoints (tools/convert_stmask_checkpoint.py,
stmask_d2.engine.released_checkpoint) and the configs/released/*.yaml configs.

The authors' key names and shapes come from tests/data/authors_checkpoint_keys.json.gz, a listing written by
tests/data/make_authors_checkpoint_keys.py from the structure of their model definitions (MinghanLi/STMask,
dbolya/yolact) and checked against the key listings of STMask_plus_resnet50_{ada,ali}.pth. Values are random here.
"""
import glob
import gzip
import json
import logging
import os
import re

import numpy as np
import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model

from stmask_d2.engine.released_checkpoint import (
    convert_state_dict,
    detect_variant,
    fit_to_model,
    load_config,
    released_config_name,
    released_config_path,
    target_shapes,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LISTING = os.path.join(ROOT, "tests", "data", "authors_checkpoint_keys.json.gz")
SMALL = ["INPUT.TEST_FIXED_SIZE", "[128, 96]", "MODEL.DEVICE", "cpu"]


def run_tool(*args):
    """tools/convert_stmask_checkpoint.py's main(args) (stmask_d2.engine.released_checkpoint.main) in-process ->
    exit code (a subprocess costs ~15 s of imports)."""
    from stmask_d2.engine.released_checkpoint import main

    return main([str(a) for a in args])


@pytest.fixture(scope="module")
def listing():
    with gzip.open(LISTING, "rt") as f:
        return json.load(f)


def authors_state_dict(entries, fill=torch.zeros):
    """A state dict with the authors' names / shapes; ``fill(shape)`` gives the values."""
    sd = {}
    for name, shape in entries:
        if name.endswith("num_batches_tracked"):
            sd[name] = torch.tensor(3)
        elif name.endswith("running_var"):
            sd[name] = torch.ones(shape)
        else:
            sd[name] = fill(shape)
    return sd


# ------------------------------------------------------------------------------------------------------------------
# every listed variant converts with 0 unmapped keys and matches its released config exactly
# ------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name,config,describe",
    [
        ("STMask_plus_resnet50_ada", "STMask_plus_resnet50_ada", "R50-DCN FCA FCB(ada: class) TF, 40 classes"),
        ("STMask_plus_resnet50_ali", "STMask_plus_resnet50_ali", "R50-DCN FCA FCB(ali: class) TF, 40 classes"),
        ("STMask_plus_resnet50", "STMask_plus_resnet50", "R50-DCN FCA TF, 40 classes"),
        ("STMask_plus_base_ada_OVIS", "STMask_plus_base_ada_OVIS", "R101-DCN FCA FCB(ada: class) TF, 25 classes"),
        ("yolact_plus_resnet50_ali_54", "yolact_plus_resnet50_ali_54", "R50-DCN FCA FCB(ali: class), 80 classes"),
    ],
)
def test_released_variant_converts_exactly(listing, name, config, describe):
    sd = authors_state_dict(listing[name])
    variant = detect_variant(sd)
    assert variant.describe() == describe
    assert released_config_name(variant, name + ".pth") == config
    converted, unusable = convert_state_dict(sd, variant)
    assert unusable == []
    kept, dropped, missing = fit_to_model(converted, target_shapes(load_config(released_config_path(config))))
    assert dropped == [] and missing == []
    # every authors' tensor is accounted for: BatchNorm counters dropped, DCN biases folded, centerness merged
    n_counters = sum(k.endswith("num_batches_tracked") for k in sd)
    n_dcn_bias = sum(bool(re.search(r"layers\.\d+\.\d+\.conv2\.bias$", k)) for k in sd)
    n_ctr = sum(".centerness_layer." in k for k in sd)
    assert len(kept) == len(sd) - n_counters - n_dcn_bias - n_ctr


def test_older_dcn_placement_converts_with_printed_opts(listing, tmp_path, capsys):
    """Until 2021-06-27 the authors' R50-DCN had DCN every 3 blocks (HEAD: every 2): the converter reads the
    placement from the file, converts exactly and prints the override to use."""
    sd = authors_state_dict(listing["STMask_plus_resnet50_ada_dcn_interval3"])
    path = tmp_path / "STMask_plus_resnet50_ada.pth"
    torch.save(sd, path)
    assert run_tool(path, tmp_path / "out.pth") == 0
    out = capsys.readouterr().out
    assert "exact match" in out and "--opts MODEL.RESNETS.DEFORM_INTERVAL 3 MODEL.WEIGHTS" in out
    cfg = load_config(released_config_path("STMask_plus_resnet50_ada"))
    cfg.merge_from_list(["MODEL.RESNETS.DEFORM_INTERVAL", "3"])
    ckpt = torch.load(tmp_path / "out.pth", weights_only=True)
    assert ckpt["stmask_opts"] == ["MODEL.RESNETS.DEFORM_INTERVAL", "3"]
    _, dropped, missing = fit_to_model(ckpt["model"], target_shapes(cfg))
    assert dropped == [] and missing == []


def test_ytvis2021_chosen_by_file_name(listing):
    variant = detect_variant(authors_state_dict(listing["STMask_plus_resnet50"]))
    assert released_config_name(variant, "/x/STMask_plus_resnet50_YTVIS2021.pth") == "STMask_plus_resnet50_YTVIS2021"


# ------------------------------------------------------------------------------------------------------------------
# the converted model computes what the same weights compute under our own names
# ------------------------------------------------------------------------------------------------------------------
def _randomise(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    sd = model.state_dict()
    new = {}
    for k, v in sd.items():
        if not v.is_floating_point():
            new[k] = v
        elif k.endswith("running_var"):
            new[k] = torch.rand(v.shape, generator=g) + 0.5
        elif k.endswith("running_mean"):  # dyadic, so that folding a dyadic DCN bias in and out is exact
            new[k] = torch.round(6.4 * torch.randn(v.shape, generator=g)) / 64
        elif k.endswith("norm.weight"):
            new[k] = 1.0 + 0.1 * torch.randn(v.shape, generator=g)
        else:
            new[k] = 0.05 * torch.randn(v.shape, generator=g)
    model.load_state_dict(new)
    return new


def export_authors_format(ours, num_classes, seed=1):
    """Our state dict -> the authors' names (inverse of the converter, written independently of it), with a random
    DCN bias whose effect is cancelled in the next BatchNorm's running mean (so the function is unchanged)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    C1 = num_classes + 1

    def bg_first(t):
        return torch.cat([t[C1 - 1:C1], t[: C1 - 1]], 0)

    dcn_blocks = {m.group(1) for k in ours for m in [re.match(r"(backbone\.bottom_up\.res\d\.\d+)\.conv2_offset", k)]
                  if m}
    for k, v in ours.items():
        m = re.fullmatch(r"backbone\.bottom_up\.stem\.conv1\.(norm\.)?(\w+)", k)
        if m:
            out["backbone." + ("bn1." if m.group(1) else "conv1.") + m.group(2)] = v
            if m.group(1) and m.group(2) == "running_var":
                out["backbone.bn1.num_batches_tracked"] = torch.tensor(0)
            continue
        m = re.fullmatch(r"backbone\.bottom_up\.res(\d)\.(\d+)\.(.+)", k)
        if m:
            pre = f"backbone.layers.{int(m.group(1)) - 2}.{m.group(2)}."
            rest = m.group(3)
            r = re.fullmatch(r"conv(\d)\.norm\.(\w+)", rest)
            if r:
                name = f"{pre}bn{r.group(1)}.{r.group(2)}"
                block = k.rsplit(".conv2.norm.", 1)[0]
                if r.group(1) == "2" and r.group(2) == "running_mean" and block in dcn_blocks:
                    bias = torch.round(6.4 * torch.randn(v.shape, generator=g)) / 64  # dyadic: exact
                    out[pre + "conv2.bias"] = bias
                    v = v + bias
                out[name] = v
                if r.group(2) == "running_var":
                    out[f"{pre}bn{r.group(1)}.num_batches_tracked"] = torch.tensor(0)
                continue
            r = re.fullmatch(r"shortcut\.norm\.(\w+)", rest)
            if r:
                out[f"{pre}downsample.1.{r.group(1)}"] = v
                if r.group(1) == "running_var":
                    out[f"{pre}downsample.1.num_batches_tracked"] = torch.tensor(0)
                continue
            rest = {"shortcut.weight": "downsample.0.weight", "conv2_offset.weight": "conv2.conv_offset_mask.weight",
                    "conv2_offset.bias": "conv2.conv_offset_mask.bias"}.get(rest, rest)
            out[pre + rest] = v
            continue
        m = re.fullmatch(r"backbone\.((lat|pred|downsample)_layers\..+)", k)
        if m:
            out["fpn." + m.group(1)] = v
            continue
        if k.startswith("protonet."):
            out[k[len("protonet."):]] = v
            continue
        m = re.fullmatch(r"tf_head\.(convs\.(\d)|fc|fc_coeff)\.(\w+)", k)
        if m:
            name = {"0": "conv1", "2": "conv2", "4": "conv3"}.get(m.group(2), m.group(1))
            out[f"TemporalNet.{name}.{m.group(3)}"] = v
            continue
        h = "prediction_layers.0."
        m = re.fullmatch(r"head\.(upfeature\..+)", k)
        if m:
            out[h + m.group(1)] = v
            continue
        m = re.fullmatch(r"head\.(class|box|mask|track)_tower\.(.+)", k)
        if m:
            out[h + {"class": "conf", "box": "bbox"}.get(m.group(1), m.group(1)) + "_extra." + m.group(2)] = v
            continue
        m = re.fullmatch(r"head\.box_pred\.convs\.(\d)\.(\w+)", k)
        if m:
            out[f"{h}bbox_layer.{m.group(1)}.{m.group(2)}"] = v[:4]
            out[f"{h}centerness_layer.{m.group(1)}.{m.group(2)}"] = v[4:5]
            continue
        m = re.fullmatch(r"head\.class_pred\.convs\.(\d)\.(\w+)", k)
        if m:
            out[f"{h}conf_layer.{m.group(1)}.{m.group(2)}"] = bg_first(v)
            continue
        m = re.fullmatch(r"head\.class_pred\.(\d)\.(dcn|conv|offset_conv)\.(\w+)", k)
        if m:
            part = {"dcn": "conv_adaption", "offset_conv": "conv_offset", "conv": "conv"}[m.group(2)]
            out[f"{h}conf_layer.{m.group(1)}.{part}.{m.group(3)}"] = bg_first(v) if part == "conv" else v
            continue
        m = re.fullmatch(r"head\.(coeff|track)_pred\.convs\.(\d)\.(\w+)", k)
        if m:
            out[f"{h}{'mask' if m.group(1) == 'coeff' else 'track'}_layer.{m.group(2)}.{m.group(3)}"] = v
            continue
        raise AssertionError(f"test export does not know {k}")
    return out


@pytest.fixture(scope="module")
def r50_ada():
    cfg = load_config(released_config_path("STMask_plus_resnet50_ada"))
    cfg.merge_from_list(SMALL)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    ours = _randomise(model)
    return cfg, model, ours


def test_export_matches_authors_listing(r50_ada, listing):
    _, _, ours = r50_ada
    authors = export_authors_format(ours, 40)
    expected = {k: list(s) for k, s in listing["STMask_plus_resnet50_ada"]}
    assert {k: list(v.shape) for k, v in authors.items()} == expected


def _frames(n=3, h=90, w=150, seed=0):
    rng = np.random.RandomState(seed)
    base = rng.randint(0, 255, (h, w, 3)).astype(np.uint8)
    return [np.roll(base, 4 * t, axis=1) for t in range(n)]


def test_converted_model_gives_the_same_outputs(r50_ada, tmp_path, capsys):
    cfg, model, ours = r50_ada
    authors = export_authors_format(ours, 40)
    path = tmp_path / "STMask_plus_resnet50_ada.pth"
    torch.save(authors, path)
    out = tmp_path / "converted.pth"
    assert run_tool(path, out) == 0
    assert "configs/released/STMask_plus_resnet50_ada.yaml" in capsys.readouterr().out

    model2 = build_model(cfg).eval()
    incompatible = DetectionCheckpointer(model2)._load_model(torch.load(out, weights_only=True))
    assert not incompatible.missing_keys and not incompatible.unexpected_keys and not incompatible.incorrect_shapes

    x = torch.rand(1, 3, 96, 128) * 255
    with torch.no_grad():
        a = model.extract(model.preprocess([x[0]]))
        b = model2.extract(model2.preprocess([x[0]]))
    for key in ("pred_logits", "pred_deltas", "pred_coeffs", "pred_embeds", "pred_centerness"):
        if key in a[1]:
            torch.testing.assert_close(a[1][key], b[1][key], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a[2], b[2], rtol=1e-5, atol=1e-5)

    # the whole video path (TF propagation, tracker, pasting) gives the same tracks
    ra = list(model.track_frames(_frames(2), 90, 150))
    rb = list(model2.track_frames(_frames(2), 90, 150))
    for fa, fb in zip(ra, rb):
        assert fa.track_ids.tolist() == fb.track_ids.tolist()
        torch.testing.assert_close(fa.scores, fb.scores, rtol=1e-5, atol=1e-5)
        assert fa.pred_classes.tolist() == fb.pred_classes.tolist()
        assert (fa.pred_masks != fb.pred_masks).float().mean() < 1e-3
        assert torch.equal(fa.pred_boxes.tensor, fb.pred_boxes.tensor)
        assert torch.equal(fa.pred_boxes.tensor, fa.pred_boxes.tensor.trunc())  # TRUNCATE_BOXES (released)


# ------------------------------------------------------------------------------------------------------------------
# Yolact++ COCO weights as initialisation of a video config
# ------------------------------------------------------------------------------------------------------------------
def test_yolact_plus_init_has_exactly_the_expected_skips(listing, tmp_path, caplog):
    sd = authors_state_dict(listing["yolact_plus_resnet50_54_800000"])
    variant = detect_variant(sd)
    assert variant.family == "yolact" and variant.depth == 50 and variant.deform_interval == 1
    converted, unusable = convert_state_dict(sd, variant)
    config = released_config_path("STMask_plus_resnet50_ada")
    shapes = target_shapes(load_config(config))
    kept, dropped, missing = fit_to_model(converted, shapes)
    # Yolact++'s R50 has DCN in every block of res3-res5; the STMask R50 every second block
    offsets = {f"backbone.bottom_up.{b}.conv2_offset" for b in ("res3.1", "res3.3", "res4.1", "res4.3", "res4.5",
                                                                 "res5.1")}
    assert {d.split(":")[0].rsplit(".", 1)[0] for d in dropped} == offsets
    assert {u.split(":")[0].rsplit(".", 1)[0] for u in unusable} == {
        "prediction_layers.0.bbox_layer", "prediction_layers.0.conf_layer", "prediction_layers.0.mask_layer",
        "semantic_seg_conv", *{f"maskiou_net.{i}" for i in (0, 2, 4, 6, 8, 10)}}
    assert set(missing) == {k for k in shapes if k.startswith("tf_head.")
                            or (k.startswith("head.") and not k.startswith("head.upfeature."))}

    # through the CLI with --config: one warning listing both, and Detectron2 loads it with exactly those missing
    path = tmp_path / "yolact_plus_resnet50_54_800000.pth"
    torch.save(sd, path)
    out = tmp_path / "init.pth"
    with caplog.at_level(logging.WARNING):
        assert run_tool(path, out, "--config", config) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "32 tensors" in warnings[0] and "maskiou_net" in warnings[0]
    loaded = torch.load(out, weights_only=True)["model"]
    assert set(loaded) == set(kept)
    cfg = load_config(config)
    cfg.merge_from_list(SMALL)
    incompatible = DetectionCheckpointer(build_model(cfg))._load_model({"model": loaded})
    assert set(incompatible.missing_keys) == set(missing)
    assert not incompatible.unexpected_keys and not incompatible.incorrect_shapes


# ------------------------------------------------------------------------------------------------------------------
# files it does not understand: one line, exit 2, nothing written
# ------------------------------------------------------------------------------------------------------------------
class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_unwritable_output_one_line(tmp_path, listing, capsys):
    sd = authors_state_dict(listing["STMask_plus_resnet50_ali"])
    path = tmp_path / "in.pth"
    torch.save(sd, path)
    (tmp_path / "file").write_text("x")
    assert run_tool(path, tmp_path / "file" / "out.pth") == 2  # a folder that is a file
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


@pytest.mark.parametrize("kind", ["unknown_key", "garbage", "pickle_object", "missing"])
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, listing, kind, capsys):
    path = tmp_path / "in.pth"
    if kind == "unknown_key":
        sd = authors_state_dict(listing["STMask_plus_resnet50_ali"])
        sd["prediction_layers.0.foo_layer.weight"] = torch.zeros(3)
        sd = {"prediction_layers.0.foo_layer.weight": sd.pop("prediction_layers.0.foo_layer.weight"), **sd}
        torch.save(sd, path)
    elif kind == "garbage":
        path.write_bytes(b"not a checkpoint at all")
    elif kind == "pickle_object":
        torch.save({"x": _Evil()}, path)
    out = tmp_path / "out.pth"
    assert run_tool(path, out) == 2
    r = capsys.readouterr()
    assert len(r.err.strip().splitlines()) == 1, r.err
    assert "pwned" not in r.out
    if kind == "unknown_key":
        assert "'prediction_layers.0.foo_layer.weight'" in r.err
    assert not out.exists() and os.listdir(tmp_path) == (["in.pth"] if kind != "missing" else [])


# ------------------------------------------------------------------------------------------------------------------
# configs/released
# ------------------------------------------------------------------------------------------------------------------
RELEASED = sorted(p for p in glob.glob(os.path.join(ROOT, "configs", "released", "*.yaml"))
                  if not os.path.basename(p).startswith("Base-"))


def test_twenty_released_configs():
    names = {os.path.basename(p)[:-5] for p in RELEASED}
    assert len(names) == 20
    assert {"STMask_plus_resnet50_ada", "STMask_plus_base_ali", "STMask_plus_resnet50_ada_YTVIS2021",
            "STMask_plus_base_OVIS", "yolact_plus_resnet50_ada_54", "yolact_plus_baseada_54"} <= names


@pytest.mark.parametrize("path", RELEASED, ids=[os.path.basename(p)[:-5] for p in RELEASED])
def test_released_config_builds(path):
    cfg = load_config(path)
    assert cfg.MODEL.STMASK.HEAD.CENTERNESS_ORDER_BUG and cfg.INPUT.TEST_RESIZE_MODE == "fixed"
    assert cfg.MODEL.STMASK.TRACKER.PRUNE_AFTER == 0 and cfg.MODEL.STMASK.TEST.MAX_TRACKS_PER_VIDEO == 0
    shapes = target_shapes(cfg)  # every module constructed (on the meta device)
    assert ("tf_head.fc.weight" in shapes) == cfg.MODEL.STMASK.TF.ENABLED
    n = cfg.MODEL.STMASK.NUM_CLASSES + 1
    cls_key = "head.class_pred.convs.0.bias" if cfg.MODEL.STMASK.FCB.MODE == "none" else "head.class_pred.0.conv.bias"
    assert shapes[cls_key] == (n,)


def test_released_r101_config_builds_and_runs():
    cfg = load_config(released_config_path("STMask_plus_base_ali"))
    cfg.merge_from_list(SMALL)
    model = build_model(cfg).eval()
    out = list(model.track_frames(_frames(1, 60, 100), 60, 100))
    assert len(out) == 1 and out[0].image_size == (60, 100)


def test_fixed_resize_is_opencv_bilinear():
    import cv2

    from stmask_d2.data.transforms import FixedSizeResize

    img = np.random.RandomState(0).randint(0, 255, (54, 96, 3)).astype(np.uint8)
    t = FixedSizeResize(64, 36).get_transform(img)
    np.testing.assert_array_equal(t.apply_image(img), cv2.resize(img, (64, 36), interpolation=cv2.INTER_LINEAR))
    np.testing.assert_allclose(t.apply_coords(np.array([[96.0, 54.0]])), [[64.0, 36.0]])


# ------------------------------------------------------------------------------------------------------------------
# released training switches (configs/released set them; project defaults unchanged)
# ------------------------------------------------------------------------------------------------------------------
def test_released_loss_switches():
    from detectron2.config import get_cfg
    from detectron2.structures import Boxes

    from stmask_d2.config import add_stmask_config
    from stmask_d2.modeling.losses import STMaskLosses
    from test_losses import _instances, _outputs

    def crit(**loss):
        cfg = get_cfg()
        add_stmask_config(cfg)
        for k, v in loss.items():
            cfg.MODEL.STMASK.LOSS[k] = v
        return STMaskLosses(cfg)

    img = (64, 128)  # non-square: normalising x by 128 and y by 64 changes d^2 / c^2
    anchors = Boxes(torch.tensor([[10.0, 10, 30, 30], [80, 40, 100, 60]]))
    gts = [_instances([[20.0, 14, 40, 34]], masks=False, image_size=img)]
    protos = torch.rand(1, 2, 16, 32)
    out = _outputs(1, 2)
    pix, _ = crit()(out, anchors, protos, gts, img)
    out = _outputs(1, 2)
    norm, _ = crit(DIOU_NORMALIZED=True, CENTERNESS_TARGET_DETACH=False)(out, anchors, protos, gts, img)
    p, g = torch.tensor([10.0, 10, 30, 30]), torch.tensor([20.0, 14, 40, 34])
    s = torch.tensor([128.0, 64, 128, 64])
    p, g = p / s, g / s
    inter = (torch.min(p[2], g[2]) - torch.max(p[0], g[0])) * (torch.min(p[3], g[3]) - torch.max(p[1], g[1]))
    union = 2 * (p[2] - p[0]) * (p[3] - p[1]) - inter
    c2 = (torch.max(p[2], g[2]) - torch.min(p[0], g[0])) ** 2 + (torch.max(p[3], g[3]) - torch.min(p[1], g[1])) ** 2
    d2 = ((p[0] + p[2] - g[0] - g[2]) / 2) ** 2 + ((p[1] + p[3] - g[1] - g[3]) / 2) ** 2
    assert norm["loss_box"].item() == pytest.approx(5 * (1 - (inter / union - d2 / c2)).item(), rel=1e-5)
    assert norm["loss_box"].item() != pytest.approx(pix["loss_box"].item(), rel=1e-3)
    (g_deltas,) = torch.autograd.grad(norm["loss_centerness"], [out["pred_deltas"]], allow_unused=True)
    assert g_deltas is not None and torch.count_nonzero(g_deltas) > 0  # released: centerness trains the boxes


def test_fixed_resize_in_image_test_loader(tmp_path):
    """COCO-style (image) evaluation uses the same fixed OpenCV resize as the video path."""
    import cv2
    from detectron2.data import DatasetCatalog, MetadataCatalog

    from stmask_d2.engine.trainer import STMaskTrainer as Trainer

    img = np.random.RandomState(0).randint(0, 255, (30, 50, 3)).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), img)
    name = "i9_fixed_resize_images"
    if name not in DatasetCatalog.list():
        DatasetCatalog.register(name, lambda: [{"file_name": str(tmp_path / "a.png"), "image_id": 0,
                                                "height": 30, "width": 50, "annotations": []}])
        MetadataCatalog.get(name).thing_classes = ["x"]
    cfg = load_config(released_config_path("yolact_plus_resnet50_54"))
    cfg.merge_from_list(["INPUT.TEST_FIXED_SIZE", "[64, 48]", "DATALOADER.NUM_WORKERS", "0"])
    batch = next(iter(Trainer.build_test_loader(cfg, name)))
    expected = cv2.resize(img[:, :, ::-1], (64, 48), interpolation=cv2.INTER_LINEAR)  # RGB input format
    np.testing.assert_array_equal(batch[0]["image"].permute(1, 2, 0).numpy(), expected)


def test_results_order_and_no_track_cap():
    from stmask_d2.evaluation.evaluator import instances_to_ytvis_results
    from stmask_d2.tracking import VideoResults

    acc = VideoResults()
    rle = {"size": [2, 2], "counts": "04"}
    acc.add_frame(0, [3, 1], [0.2, 0.9], [0, 0], [rle, rle])
    acc.add_frame(1, [0, 1], [0.5, 0.8], [1, 0], [rle, rle])
    assert [t["track_id"] for t in acc.finalize(2)] == [1, 0, 3]
    released = acc.finalize(2, 0, order="first_emitted")
    assert [t["track_id"] for t in released] == [1, 3, 0]
    out = {"video_id": 5, "length": 2, "tracks": released}
    ids = {0: 1, 1: 2}
    assert len(instances_to_ytvis_results(out, ids, max_tracks=0)) == 3  # 0 = no cap (released)
    kept = instances_to_ytvis_results(out, ids, max_tracks=2, keep_order=True)
    assert [r["score"] for r in kept] == [pytest.approx(0.85), pytest.approx(0.5)]
