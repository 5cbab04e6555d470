"""STMask meta-architecture: training on frame pairs, online (streaming) inference on videos, image inference.

Data flow (docs/ARCHITECTURE.md): frames -> backbone + Yolact FPN (P3-P7) -> prediction head (FCA, FCB)
-> [train] class-aware matching + losses, temporal-fusion (TF) loss on each pair
-> [test] Fast NMS -> masks of the survivors -> tracker (TF propagation of its memory, matching, new IDs,
   decayed supplements) -> masks pasted at the video size -> per-track RLE.
"""
import copy
import logging
from typing import Dict, Iterable, Iterator, List, Optional

import numpy as np
import torch
from torch import nn

from detectron2.config import configurable
from detectron2.data import transforms as T
from detectron2.modeling import META_ARCH_REGISTRY, build_anchor_generator, build_backbone
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.structures import BitMasks, Boxes, ImageList, Instances, PolygonMasks

from ..config import resolve_model_device
from ..data.transforms import build_test_resize
from ..layers import PROTO_STRIDE, assemble_masks, encode_masks_rle
from ..tracking import OnlineTracker, VideoResults
from ..utils.timer import NullTimer
from .fold_bn import enable_bn_folding
from .heads import build_prediction_head, build_protonet, build_temporal_fusion_head
from .box_coding import stmask_box2box_transform
from .init_scope import init_scope
from .inference_opts import cast_floats, resolve_inference_dtype
from .losses import STMaskLosses
from .postprocess import build_masks, detect_frame, frame_to_original
from .tf_loss import temporal_fusion_losses

__all__ = ["STMask"]

logger = logging.getLogger(__name__)


@META_ARCH_REGISTRY.register()
class STMask(nn.Module):
    """STMask (CVPR 2021): one-stage video instance segmentation with spatial feature calibration (FCA, FCB)
    and temporal fusion (TF).

    Inputs (``forward(batched_inputs)``), one dict per sample:

    * training pair (``YTVISPairDatasetMapper``): ``"image"`` a list of two (3, H, W) tensors, ``"instances"`` a list
      of two ``Instances`` with gt_boxes, gt_classes, gt_masks, gt_ids;
    * training image (Detectron2's ``DatasetMapper``, e.g. COCO): ``"image"`` a tensor and ``"instances"`` (pair
      losses are off for it);
    * test video (``YTVISTestDatasetMapper``): ``"frames"`` a lazy frame source plus ``"video_id"``, ``"height"``,
      ``"width"``;
    * test image: ``"image"`` a tensor, optional ``"height"`` / ``"width"``.

    Outputs: training -> dict of losses; video -> ``{"video_id", "length", "tracks": [...]}`` (YouTube-VIS tracks,
    contiguous category ids); image -> ``{"instances": Instances}`` at the requested size with pred_boxes, scores,
    pred_classes, pred_masks, pred_embeddings.
    """

    @configurable
    def __init__(
        self,
        *,
        backbone: nn.Module,
        in_features: List[str],
        anchor_generator: nn.Module,
        head: nn.Module,
        protonet: nn.Module,
        protonet_in_feature: str,
        criterion: nn.Module,
        tf_head: Optional[nn.Module] = None,
        tf_feature: str = "p4",
        tf_feature_grad: bool = True,
        tracker: Optional[OnlineTracker] = None,
        boxshift_weight: float = 5.0,
        maskshift_weight: float = 6.125,
        pixel_mean,
        pixel_std,
        input_format: str = "RGB",
        softmax: bool = True,
        box2box_transform: Optional[Box2BoxTransform] = None,
        score_thresh: float = 0.05,
        nms_top_k: int = 200,
        nms_thresh: float = 0.5,
        cross_class_nms: bool = True,
        max_detections: int = 100,
        mask_thresh: float = 0.5,
        max_tracks_per_video: int = 0,
        min_size_test: int = 360,
        max_size_test: int = 640,
        test_resize: Optional[T.Augmentation] = None,
        truncate_boxes: bool = False,
        results_order: str = "score",
        fold_bn: bool = False,
        channels_last: bool = False,
        inference_dtype: str = "float32",
    ):
        """
        Args:
            backbone: a Detectron2 ``Backbone`` whose outputs include ``in_features`` and ``protonet_in_feature``.
            in_features: FPN levels fed to the head, e.g. ["p3", ..., "p7"].
            anchor_generator: e.g. ``FCAAnchorGenerator``; anchors in the head's order.
            head: prediction head (``STMaskPredictionHead``); protonet: ``ProtoNet``.
            criterion: ``STMaskLosses`` (frame-level losses; returns the anchor matches used by the TF loss).
            tf_head: ``TemporalFusionHead`` or None (no temporal fusion: memory is propagated unchanged).
            tf_feature: FPN level of the correlation (must be one of ``in_features``).
            tf_feature_grad: the TF losses reach that level, the head's upfeature conv and the backbone (released);
                False: TF trains TemporalNet only.
            tracker: an ``OnlineTracker`` used as the template of each video's tracker (copied per video).
            boxshift_weight, maskshift_weight: weights of the TF losses L_Bshift and L_Mshift.
            pixel_mean, pixel_std: per-channel normalisation in ``input_format`` order.
            softmax: True for softmax (C+1 logits), False for sigmoid focal logits (C).
            score_thresh, nms_top_k, nms_thresh, cross_class_nms, max_detections: frame-level inference (§10).
            mask_thresh: binarisation threshold of the soft masks.
            max_tracks_per_video: tracks kept per video (by score) in the results; <= 0: all (released).
            min_size_test, max_size_test: ResizeShortestEdge of video frames.
            test_resize: resize of video frames instead of that ResizeShortestEdge (e.g. the released fixed-size
                OpenCV resize, ``stmask_d2.data.transforms.build_test_resize``).
            truncate_boxes: output boxes truncated to integer pixels of the original image (released).
            results_order: order of a video's tracks, "score" or "first_emitted" (released), see VideoResults.
            fold_bn: fold the backbone's (Frozen)BatchNorms into their convs at inference (``fold_bn.py``).
            channels_last: run the frame network in channels_last memory format at inference.
            inference_dtype: "float32", "bfloat16" or "auto" (``inference_opts.resolve_inference_dtype``).
        """
        super().__init__()
        self.backbone = backbone
        self.in_features = list(in_features)
        self.anchor_generator = anchor_generator
        self.head = head
        self.protonet = protonet
        self.protonet_in_feature = protonet_in_feature
        self.criterion = criterion
        self.tf_head = tf_head
        self.tf_feature = tf_feature
        self.tf_feature_grad = tf_feature_grad
        if tf_feature not in self.in_features:
            raise ValueError(f"MODEL.STMASK.TF.CORR_FEATURE={tf_feature} must be one of {self.in_features}")
        self.tf_level = self.in_features.index(tf_feature)
        self.tracker_template = tracker if tracker is not None else OnlineTracker()
        self.boxshift_weight = boxshift_weight
        self.maskshift_weight = maskshift_weight
        self.input_format = input_format
        self.softmax = softmax
        self.box2box_transform = box2box_transform or stmask_box2box_transform()
        self.score_thresh = score_thresh
        self.nms_top_k = nms_top_k
        self.nms_thresh = nms_thresh
        self.cross_class_nms = cross_class_nms
        self.max_detections = max_detections
        self.mask_thresh = mask_thresh
        self.max_tracks_per_video = max_tracks_per_video
        self.truncate_boxes = truncate_boxes
        self.results_order = results_order
        self.test_resize = test_resize if test_resize is not None else T.ResizeShortestEdge(min_size_test,
                                                                                            max_size_test)
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)
        self.timer = NullTimer()  # the benchmark swaps in a StageTimer
        self._anchor_cache = {}
        if fold_bn:
            enable_bn_folding(self.backbone)
        self.channels_last = channels_last
        self._channels_last_params = False
        self.inference_dtype = inference_dtype

    @classmethod
    def from_config(cls, cfg):
        resolve_model_device(cfg)
        # Every part is built in its own init_scope: its initial weights depend on SEED and its name only, not on
        # which optional parts (TF head, FCB branches) are enabled.
        with init_scope("backbone"):
            backbone = build_backbone(cfg)
        shapes = backbone.output_shape()
        in_features = cfg.MODEL.STMASK.IN_FEATURES
        for f in in_features + [cfg.MODEL.STMASK.PROTONET.IN_FEATURE]:
            if f not in shapes:
                raise ValueError(f"Feature '{f}' is not produced by the backbone (it gives {sorted(shapes)}).")
        level_shapes = [shapes[f] for f in in_features]
        tf = cfg.MODEL.STMASK.TF
        with init_scope("head"):
            head = build_prediction_head(cfg, level_shapes)
        with init_scope("protonet"):
            protonet = build_protonet(cfg, shapes[cfg.MODEL.STMASK.PROTONET.IN_FEATURE])
        with init_scope("tf_head"):
            tf_head = build_temporal_fusion_head(cfg, shapes[tf.CORR_FEATURE]) if tf.ENABLED else None
        test = cfg.MODEL.STMASK.TEST
        return {
            "backbone": backbone,
            "in_features": in_features,
            "anchor_generator": build_anchor_generator(cfg, level_shapes),
            "head": head,
            "protonet": protonet,
            "protonet_in_feature": cfg.MODEL.STMASK.PROTONET.IN_FEATURE,
            "criterion": STMaskLosses(cfg),
            "tf_head": tf_head,
            "tf_feature": tf.CORR_FEATURE,
            "tf_feature_grad": tf.FEATURE_GRAD,
            "tracker": OnlineTracker(cfg),
            "boxshift_weight": cfg.MODEL.STMASK.LOSS.BOXSHIFT_WEIGHT,
            "maskshift_weight": cfg.MODEL.STMASK.LOSS.MASKSHIFT_WEIGHT,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "input_format": cfg.INPUT.FORMAT,
            "softmax": cfg.MODEL.STMASK.LOSS.CLASS_TYPE != "focal",
            "score_thresh": test.SCORE_THRESH,
            "nms_top_k": test.NMS_TOP_K,
            "nms_thresh": test.NMS_THRESH,
            "cross_class_nms": test.CROSS_CLASS_NMS,
            "max_detections": test.MAX_DETECTIONS,
            "mask_thresh": test.MASK_THRESH,
            "max_tracks_per_video": test.MAX_TRACKS_PER_VIDEO,
            "min_size_test": cfg.INPUT.MIN_SIZE_TEST,
            "max_size_test": cfg.INPUT.MAX_SIZE_TEST,
            "test_resize": build_test_resize(cfg),
            "truncate_boxes": test.TRUNCATE_BOXES,
            "results_order": test.RESULTS_ORDER,
            "fold_bn": cfg.MODEL.STMASK.INFERENCE.FOLD_BN,
            "channels_last": cfg.MODEL.STMASK.INFERENCE.CHANNELS_LAST,
            "inference_dtype": cfg.MODEL.STMASK.INFERENCE.DTYPE,
        }

    @property
    def device(self):
        return self.pixel_mean.device

    # ------------------------------------------------------------------------------------------------------------
    # shared pieces
    # ------------------------------------------------------------------------------------------------------------
    def preprocess(self, images: List[torch.Tensor]) -> ImageList:
        """Normalise (3, H, W) frames and pad them into an ImageList (size divisible by the backbone's 32)."""
        images = [(x.to(self.device, non_blocking=True).float() - self.pixel_mean) / self.pixel_std for x in images]
        return ImageList.from_tensors(
            images, self.backbone.size_divisibility, padding_constraints=self.backbone.padding_constraints
        )

    def anchors_for(self, level_features: List[torch.Tensor]) -> Boxes:
        """All anchors (A, 4) for the given level maps, concatenated P3 -> P7, cached per feature size."""
        key = tuple(tuple(f.shape[-2:]) for f in level_features) + (str(level_features[0].device),)
        if key not in self._anchor_cache:
            self._anchor_cache = {key: Boxes.cat(self.anchor_generator(level_features))}
        return self._anchor_cache[key]

    def _lazy_branches(self) -> bool:
        """Inference computes the mask / track branches at the NMS survivors only (head.predict_at) when the head
        supports it; training and FCB-calibrated mask / track branches use the dense outputs."""
        return not self.training and getattr(self.head, "supports_lazy_branches", False)

    def extract(self, images: ImageList):
        """Backbone + FPN, prediction head and ProtoNet on a batch. Returns (features dict, head outputs, protos).
        At inference the head outputs may lack "pred_coeffs" / "pred_embeds" (see :meth:`_detect`); with
        ``inference_dtype`` bfloat16 the network runs under autocast and its outputs are returned in float32."""
        x = images.tensor
        if self.training:
            return self._extract(x)
        if self.channels_last:
            self._to_channels_last()
            x = x.contiguous(memory_format=torch.channels_last)
        dtype = resolve_inference_dtype(self.inference_dtype, x.device.type)
        if dtype == torch.float32:
            return self._extract(x)
        with torch.autocast(x.device.type, dtype=dtype):
            out = self._extract(x)
        return cast_floats(out, torch.float32)

    def _to_channels_last(self):
        """Convolution weights of the frame network in channels_last (once; in place, state dict unchanged)."""
        if not self._channels_last_params:
            with torch.inference_mode(False), torch.no_grad():
                for m in (self.backbone, self.head, self.protonet, self.tf_head):
                    if m is not None:
                        m.to(memory_format=torch.channels_last)
            self._channels_last_params = True

    def _extract(self, x):
        with self.timer("backbone+fpn"):
            features = self.backbone(x)
        with self.timer("head"):
            feats = [features[f] for f in self.in_features]
            if self._lazy_branches():
                head_out = self.head(feats, dense_branches=False)
            else:
                head_out = self.head(feats)
            protos = self.protonet(features[self.protonet_in_feature])
        return features, head_out, protos

    # ------------------------------------------------------------------------------------------------------------
    # training
    # ------------------------------------------------------------------------------------------------------------
    def forward(self, batched_inputs):
        if self.training:
            return self.forward_train(batched_inputs)
        if "frames" in batched_inputs[0]:
            return [self.inference_video(x) for x in batched_inputs]
        return self.inference_images(batched_inputs)

    def forward_train(self, batched_inputs):
        """Frames of every sample are stacked ([pair0 f0, pair0 f1, image1, ...]); pairs index into that stack."""
        images, gt_instances, pairs = [], [], []
        for x in batched_inputs:
            if isinstance(x["image"], (list, tuple)):
                if len(x["image"]) != 2:
                    raise ValueError(f"A training sample must hold one image or a pair, got {len(x['image'])}.")
                pairs.append((len(images), len(images) + 1))
                images.extend(x["image"])
                gt_instances.extend(x["instances"])
            else:
                images.append(x["image"])
                gt_instances.append(x["instances"])
        images = self.preprocess(images)
        gt_instances = [self._prepare_targets(g, images.tensor.shape[-2:]) for g in gt_instances]

        features, head_out, protos = self.extract(images)
        anchors = self.anchors_for([features[f] for f in self.in_features])
        losses, matches = self.criterion(head_out, anchors, protos, gt_instances, tuple(images.tensor.shape[-2:]))
        if self.tf_head is not None:
            losses.update(self._tf_losses(features, head_out, protos, anchors, gt_instances, matches, pairs))
        return losses

    def _prepare_targets(self, inst: Instances, padded_hw) -> Instances:
        inst = inst.to(self.device)
        if inst.has("gt_masks") and isinstance(inst.gt_masks, PolygonMasks):
            h, w = inst.image_size
            inst.gt_masks = BitMasks.from_polygon_masks(inst.gt_masks, h, w)
        return inst

    def _tf_losses(self, features, head_out, protos, anchors, gt_instances, matches, pairs):
        tf_level_map = features[self.tf_feature]
        up = head_out["upfeatures"][self.tf_level]
        if not self.tf_feature_grad:  # TF trains TemporalNet only
            tf_level_map, up = tf_level_map.detach(), up.detach()
        if not pairs:
            zero = sum(p.sum() for p in self.tf_head.parameters()) * 0.0
            return {"loss_boxshift": zero, "loss_maskshift": zero}
        prev_idx = torch.tensor([p[0] for p in pairs], device=self.device)
        cur_idx = torch.tensor([p[1] for p in pairs], device=self.device)
        fused = self.tf_head.fuse(tf_level_map[prev_idx], tf_level_map[cur_idx], up[prev_idx], up[cur_idx])
        deltas = head_out["pred_deltas"].detach()
        pred_boxes = [self.box2box_transform.apply_deltas(d, anchors.tensor) for d in deltas]
        return temporal_fusion_losses(
            self.tf_head,
            fused,
            pairs,
            matches,
            gt_instances,
            pred_boxes,
            list(head_out["pred_coeffs"]),
            protos,
            boxshift_weight=self.boxshift_weight,
            maskshift_weight=self.maskshift_weight,
        )

    # ------------------------------------------------------------------------------------------------------------
    # inference
    # ------------------------------------------------------------------------------------------------------------
    def _detect(self, head_out, protos, anchors, i, input_hw) -> Instances:
        """Detections (after NMS) of image i of the batch with their soft masks at prototype resolution.
        Without dense "pred_coeffs" / "pred_embeds", the head computes them for the survivors (``predict_at``)."""
        with self.timer("nms+masks"):
            centerness = head_out.get("pred_centerness")
            dense = "pred_coeffs" in head_out
            dets = detect_frame(
                head_out["pred_logits"][i],
                head_out["pred_deltas"][i],
                head_out["pred_coeffs"][i] if dense else None,
                head_out["pred_embeds"][i] if dense else None,
                None if centerness is None else centerness[i],
                anchors,
                self.box2box_transform,
                input_hw,
                score_thresh=self.score_thresh,
                nms_top_k=self.nms_top_k,
                nms_thresh=self.nms_thresh,
                cross_class=self.cross_class_nms,
                max_dets=self.max_detections,
                softmax=self.softmax,
                branches_at=None if dense else (lambda sel: self.head.predict_at(head_out["upfeatures"], sel, i)),
            )
            build_masks(dets, protos[i])
        return dets

    @torch.inference_mode()
    def inference_images(self, batched_inputs):
        """Frame-level instance segmentation of independent images (Detectron2 convention)."""
        images = self.preprocess([x["image"] for x in batched_inputs])
        features, head_out, protos = self.extract(images)
        anchors = self.anchors_for([features[f] for f in self.in_features])
        results = []
        for i, x in enumerate(batched_inputs):
            input_hw = images.image_sizes[i]
            out_hw = (x.get("height", input_hw[0]), x.get("width", input_hw[1]))
            dets = self._detect(head_out, protos, anchors, i, input_hw)
            inst = frame_to_original(dets, input_hw, out_hw, mask_thresh=self.mask_thresh)
            inst.remove("pred_masks_soft")
            if self.truncate_boxes:
                inst.pred_boxes.tensor = inst.pred_boxes.tensor.trunc()
            results.append({"instances": inst})
        return results

    def _frame_tensor(self, frame: np.ndarray, transform) -> torch.Tensor:
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"A frame must be an HxWx3 uint8 array, got shape {frame.shape}.")
        img = transform.apply_image(frame)
        return torch.as_tensor(np.ascontiguousarray(img.transpose(2, 0, 1)))

    @torch.inference_mode()
    def track_frames(self, frames: Iterable[np.ndarray], height: int, width: int,
                     lazy_masks: bool = False) -> Iterator[Instances]:
        """Online video instance segmentation, one frame at a time (streaming: nothing of past frames is kept but
        the tracker's memory and the previous frame's TF features).

        Args:
            frames: iterable of HxWx3 uint8 arrays in ``input_format`` (e.g. a ``FrameSource``), all of the same
                size (height, width).
            height, width: output size (normally the frames' size).
            lazy_masks: ``pred_masks`` as :class:`~stmask_d2.layers.LazyMasks` (pasted per instance on use, so
                memory does not grow with frame size x tracks) instead of an (N, height, width) bool tensor.
        Yields:
            per frame, Instances((height, width)) with ``track_ids``, ``pred_boxes``, ``scores``, ``pred_classes``
            (contiguous) and ``pred_masks`` (bool), for every track emitted in that frame (§8 step 4).
        """
        tracker = copy.deepcopy(self.tracker_template)
        tracker.reset()
        prev = None  # (TF level map, upfeature) of the previous frame
        transform, first_hw = None, None
        for t, frame in enumerate(frames):
            if transform is None or frame.shape[:2] != first_hw:
                if transform is not None:
                    raise ValueError(
                        f"Frame {t} has size {frame.shape[:2]} but the video started with {first_hw}; all frames "
                        f"of a video must have one size (resize them first)."
                    )
                first_hw = frame.shape[:2]
                transform = self.test_resize.get_transform(frame)
            images = self.preprocess([self._frame_tensor(frame, transform)])
            input_hw = images.image_sizes[0]
            features, head_out, protos = self.extract(images)
            anchors = self.anchors_for([features[f] for f in self.in_features])
            dets = self._detect(head_out, protos, anchors, 0, input_hw)
            cur = (features[self.tf_feature], head_out["upfeatures"][self.tf_level])

            propagated = None
            with self.timer("tf"):
                memory = tracker.memory
                # the released frame-level tracker (no TF) compares with the tracks' last detections: no propagation
                if memory is not None and len(memory["boxes"]) > 0 and not tracker.frame_level:
                    boxes, coeffs = memory["boxes"], memory["coeffs"]
                    if self.tf_head is not None and prev is not None:
                        fused = self.tf_head.fuse(prev[0], cur[0], prev[1], cur[1])
                        box_deltas, coeff_deltas = self.tf_head(fused, [boxes])
                        boxes, coeffs = self.tf_head.propagate(boxes, coeffs, box_deltas, coeff_deltas)
                    masks = assemble_masks(protos[0], coeffs, boxes / PROTO_STRIDE)
                    propagated = {"boxes": boxes, "coeffs": coeffs, "masks": masks}
            with self.timer("tracker"):
                out = tracker.update(
                    {
                        "boxes": dets.pred_boxes.tensor,
                        "scores": dets.scores,
                        "classes": dets.pred_classes,
                        "coeffs": dets.pred_coeffs,
                        "embeds": dets.pred_embeddings,
                        "masks": dets.pred_masks_soft,
                    },
                    propagated,
                )
            with self.timer("paste+rle"):
                inst = Instances(
                    tuple(input_hw),
                    pred_boxes=Boxes(out["boxes"]),
                    scores=out["scores"],
                    pred_classes=out["classes"],
                    track_ids=out["track_ids"],
                    pred_masks_soft=out["masks"],
                )
                inst = frame_to_original(inst, input_hw, (height, width), mask_thresh=self.mask_thresh,
                                         lazy_masks=lazy_masks)
                inst.remove("pred_masks_soft")
                if self.truncate_boxes:  # released: boxes cast to integer pixels
                    inst.pred_boxes.tensor = inst.pred_boxes.tensor.trunc()
            prev = cur
            yield inst

    def inference_video(self, video: Dict) -> Dict:
        """Run :meth:`track_frames` over ``video["frames"]`` and aggregate per-track YouTube-VIS results (§11)."""
        frames = video["frames"]
        results = VideoResults()
        n = 0
        for t, inst in enumerate(self.track_frames(frames, video["height"], video["width"], lazy_masks=True)):
            with self.timer("paste+rle"):
                rles = encode_masks_rle(inst.pred_masks.cpu()) if len(inst) else []
            results.add_frame(
                t, inst.track_ids.tolist(), inst.scores.tolist(), inst.pred_classes.tolist(), rles
            )
            n = t + 1
        length = video.get("length", n)
        if n != length:
            raise ValueError(f"Video {video.get('video_id')} declares {length} frames but {n} were read.")
        return {
            "video_id": video.get("video_id"),
            "length": length,
            "tracks": results.finalize(length, self.max_tracks_per_video, self.results_order),
        }
