"""Config keys of STMask. Every key is commented; paper symbols are named where the paper has one.

Defaults follow the authors' released code (docs/METHOD.md); where the paper says something else, a key selects
the paper's variant. Use::

    from detectron2.config import get_cfg
    from stmask_d2.config import add_stmask_config
    cfg = get_cfg(); add_stmask_config(cfg); cfg.merge_from_file("configs/...yaml")
"""
from detectron2.config import CfgNode as CN

__all__ = ["add_stmask_config", "resolve_device", "resolve_model_device"]


def resolve_device(device):
    """The torch device string of a ``MODEL.DEVICE`` value: "auto" (configs/Base-STMask.yaml) is "cuda" when torch
    sees a GPU, else "cpu"; any other value is returned unchanged. Called when the model is built
    (:func:`stmask_d2.modeling.build_model`), so that a dumped config does not depend on the machine."""
    if str(device).lower() == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_model_device(cfg):
    """Replace ``MODEL.DEVICE`` "auto" by :func:`resolve_device`'s answer in ``cfg`` itself (frozen or not).

    Called by the STMask meta-architecture when it is built (``STMask.from_config``), so that Detectron2's own
    ``build_model``, which then moves the model to ``torch.device(cfg.MODEL.DEVICE)``, and everything that reads
    the device from the same config afterwards (trainer, predictor) see a real device. A config dumped before the
    model is built (``default_setup``'s config.yaml) keeps "auto"."""
    device = resolve_device(cfg.MODEL.DEVICE)
    if device != cfg.MODEL.DEVICE:
        frozen = cfg.is_frozen()
        cfg.defrost()
        cfg.MODEL.DEVICE = device
        if frozen:
            cfg.freeze()
    return device


def add_stmask_config(cfg):
    """Add the STMask keys to a Detectron2 config, in place. Every pre-existing Detectron2 key keeps Detectron2's
    default: the Detectron2 defaults STMask changes (input format and sizes, backbone, anchor generator,
    meta-architecture, MODEL.DEVICE "auto", ...) are set once, in ``configs/Base-STMask.yaml``, which every config
    of configs/ inherits."""
    _C = cfg
    from . import register_all

    register_all()  # an STMask config needs the STMask components registered (import stmask_d2 is light)

    # ---------------------------------------------------------------------------------------------------------
    # Input (docs/METHOD.md §1); the Detectron2 input keys (format, sizes, flip) are set in Base-STMask.yaml.
    # ---------------------------------------------------------------------------------------------------------
    # Reference-frame sampling for training pairs (§9): the second frame is drawn uniformly among the annotated
    # frames (with >= 1 box) at an index distance in [1, SAMPLING_FRAME_RANGE] from the key frame (the released
    # code: +-2; the paper says delta in [-5, 5]); the key frame itself when the video has no such frame.
    _C.INPUT.SAMPLING_FRAME_RANGE = 2
    # Order of the pair: "sorted" (released: earlier frame first, so TF always learns forward motion) or
    # "random" (keep the drawn order; TF then also sees backward motion).
    _C.INPUT.SAMPLING_FRAME_ORDER = "sorted"

    # ---------------------------------------------------------------------------------------------------------
    # Backbone: Detectron2 ResNet with modulated deformable 3x3 convs every DEFORM_INTERVAL blocks (§1), built on
    # torchvision.ops.deform_conv2d (no compiled extension), and a Yolact-style FPN P3-P7.
    # ---------------------------------------------------------------------------------------------------------
    # (The Detectron2 keys MODEL.BACKBONE / RESNETS / FPN are set in Base-STMask.yaml.)
    # Block i of a deformable stage is deformable when i % DEFORM_INTERVAL == 0 (§1: R101-DCN 3, R50-DCN 2 at
    # HEAD, 3 in the CVPR-period code).
    _C.MODEL.RESNETS.DEFORM_INTERVAL = 3
    # Extra levels by stride-2 3x3 convs on P5's output: 2 gives P6, P7 (Yolact `num_downsample`).
    _C.MODEL.FPN.NUM_DOWNSAMPLE = 2
    # ReLU after the 3x3 output convs of P3-P5 (Yolact FPN; no ReLU on P6/P7).
    _C.MODEL.FPN.RELU_OUTPUTS = True

    # ---------------------------------------------------------------------------------------------------------
    # Anchors: FCA, kernel-shaped anchors (§2). One anchor per (kernel shape, scale) at every location.
    # ---------------------------------------------------------------------------------------------------------
    # (MODEL.ANCHOR_GENERATOR.NAME, ASPECT_RATIOS and OFFSET are set in Base-STMask.yaml.)
    # "kernel": anchor k is a KERNEL_SHAPES[k] block of cells (h x w cells of size stride), i.e. the receptive
    #   field of its FCA conv (released STMask: 3x3, 3h x 5w, 5h x 3w).
    # "ratio": Yolact's baseline, w = BASE_CELLS*s*sqrt(ar), h = BASE_CELLS*s/sqrt(ar) for ar in
    #   MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS (paper Table 1 row 1: [1, 1/2, 2] with one 3x3 kernel).
    _C.MODEL.ANCHOR_GENERATOR.MODE = "kernel"
    # (h, w) in feature cells of each anchor kernel, paper's k = (k_h, k_w); Table 1 also tries {3:3, 3:2, 2:3}.
    _C.MODEL.ANCHOR_GENERATOR.KERNEL_SHAPES = [[3, 3], [3, 5], [5, 3]]
    # Side in cells of the square anchor in "ratio" mode (Yolact: scale 24 px at stride 8 = 3 cells).
    _C.MODEL.ANCHOR_GENERATOR.BASE_CELLS = 3
    # Multipliers of the anchor size; one anchor per (shape, scale). [1.0] gives 3 anchors per location; Yolact++
    # uses [1, 2^(1/3), 2^(2/3)] (9 anchors, supplement Table 1).
    _C.MODEL.ANCHOR_GENERATOR.SCALES = [1.0]

    # ---------------------------------------------------------------------------------------------------------
    # STMask
    # ---------------------------------------------------------------------------------------------------------
    _C.MODEL.STMASK = CN()
    _C.MODEL.STMASK.NUM_CLASSES = 40  # foreground classes C (background is added internally for softmax)
    _C.MODEL.STMASK.IN_FEATURES = ["p3", "p4", "p5", "p6", "p7"]  # FPN levels fed to the prediction head
    _C.MODEL.STMASK.MASK_DIM = 32  # k, number of prototypes / mask coefficients
    _C.MODEL.STMASK.TRACK_DIM = 128  # dimension of the L2-normalised track embedding

    # Prediction head (§3).
    _C.MODEL.STMASK.HEAD = CN()
    _C.MODEL.STMASK.HEAD.NAME = "STMaskPredictionHead"
    _C.MODEL.STMASK.HEAD.CONV_DIM = 256  # channels of `upfeature` and of the towers
    _C.MODEL.STMASK.HEAD.NUM_TOWER_CONVS = 2  # 3x3 conv+ReLU per tower (class, box, mask, track)
    # FCA: one conv per anchor kernel shape, of that shape (True), or one 3x3 conv for every anchor (False,
    # Yolact baseline).
    _C.MODEL.STMASK.HEAD.USE_FCA = True
    # Centerness branch (released code, not in the paper): tanh output regressing DIoU, multiplies the score.
    _C.MODEL.STMASK.HEAD.USE_CENTERNESS = True
    # Reproduce the released code's centerness ordering bug (§12 item 10). False = the correct order.
    _C.MODEL.STMASK.HEAD.CENTERNESS_ORDER_BUG = False
    # How the per-kernel FCA convs of a branch run: "separate" (one conv per kernel) or "grouped" (one conv with
    # the bounding kernel, per-kernel weights zero-padded and stacked; same parameters and function). On CPU
    # (384x640, 2 threads) separate is faster: it does 39 instead of 75 kernel taps per output triple.
    _C.MODEL.STMASK.HEAD.FCA_IMPL = "separate"
    # On CPU, run the head on all FPN levels at once, packed side by side into one map with zero gaps (the same
    # function as level by level; stmask_d2/modeling/heads/level_packing.py): one call of each conv instead of one
    # per level. False = level by level, as released (and always on CUDA, under tracing / export, and with an FCB
    # whose deformable conv is not the CPU gather).
    _C.MODEL.STMASK.HEAD.PACK_LEVELS = True

    # FCB, feature calibration for boxes (§4, paper eqs. 6-9).
    _C.MODEL.STMASK.FCB = CN()
    # "none", "ada" (adaptive: offsets = 1x1 conv of the detached box deltas) or "ali" (aligned: analytic
    # offsets O = (dy, dx) I + (dh, dw) R of supplement eq. 6).
    _C.MODEL.STMASK.FCB.MODE = "none"
    # Branches whose prediction conv is calibrated. Released: ["class"]. Paper: ada -> class, mask, track;
    # ali -> mask, track.
    _C.MODEL.STMASK.FCB.BRANCHES = ["class"]

    # ProtoNet (§6), on P3, output stride 4.
    _C.MODEL.STMASK.PROTONET = CN()
    _C.MODEL.STMASK.PROTONET.NAME = "ProtoNet"
    _C.MODEL.STMASK.PROTONET.IN_FEATURE = "p3"
    _C.MODEL.STMASK.PROTONET.CONV_DIM = 256
    _C.MODEL.STMASK.PROTONET.NUM_CONVS = 3  # 3x3 convs before the x2 upsample (one more after it)

    # Anchor matching (§9).
    _C.MODEL.STMASK.MATCHER = CN()
    _C.MODEL.STMASK.MATCHER.IOU_THRESHOLDS = [0.4, 0.5]  # neg < 0.4 <= neutral < 0.5 <= pos
    _C.MODEL.STMASK.MATCHER.IOU_LABELS = [0, -1, 1]
    _C.MODEL.STMASK.MATCHER.ALLOW_LOW_QUALITY_MATCHES = True  # each GT keeps its best anchor
    # Released class-aware boost: overlap += 2p/(1+p) for positives, thresholds raised by its mean (§9 step 3).
    _C.MODEL.STMASK.MATCHER.CLASS_AWARE = True
    # Released: anchors with IoU > neg threshold to more than one GT become neutral (§9 step 2).
    _C.MODEL.STMASK.MATCHER.MULTI_GT_NEUTRAL = True

    # Losses (§9). Weights are the released values.
    _C.MODEL.STMASK.LOSS = CN()
    _C.MODEL.STMASK.LOSS.CLASS_TYPE = "softmax_ohem"  # or "focal" (sigmoid focal loss)
    _C.MODEL.STMASK.LOSS.CLASS_WEIGHT = 6.125 / 4  # L_C weight (released conf_alpha)
    _C.MODEL.STMASK.LOSS.OHEM_NEG_POS_RATIO = 3  # OHEM negatives : positives, mined over the whole batch
    _C.MODEL.STMASK.LOSS.FOCAL_ALPHA = 0.25
    _C.MODEL.STMASK.LOSS.FOCAL_GAMMA = 2.0
    _C.MODEL.STMASK.LOSS.BOX_TYPE = "diou"  # "diou" (released BIoU loss) or "smooth_l1" (paper)
    _C.MODEL.STMASK.LOSS.BOX_WEIGHT = 5.0  # weight of the DIoU loss
    _C.MODEL.STMASK.LOSS.SMOOTH_L1_WEIGHT = 1.5  # weight of the smooth-L1 box loss (released bbox_alpha)
    _C.MODEL.STMASK.LOSS.CENTERNESS_WEIGHT = 20.0
    _C.MODEL.STMASK.LOSS.MASK_WEIGHT = 6.125  # L_M weight (released mask_alpha)
    _C.MODEL.STMASK.LOSS.MASK_BOX_ENLARGE = 1.2  # training masks are cropped with the enlarged predicted box
    _C.MODEL.STMASK.LOSS.TRACK_WEIGHT = 5.0  # L_T weight
    _C.MODEL.STMASK.LOSS.BOXSHIFT_WEIGHT = 5.0  # L_Bshift weight (TF)
    _C.MODEL.STMASK.LOSS.MASKSHIFT_WEIGHT = 6.125  # L_Mshift weight (TF)

    # Frame-level inference (§10).
    _C.MODEL.STMASK.TEST = CN()
    _C.MODEL.STMASK.TEST.SCORE_THRESH = 0.05  # candidates need max foreground probability above this
    _C.MODEL.STMASK.TEST.NMS_TOP_K = 200  # candidates kept (by score) before Fast NMS
    _C.MODEL.STMASK.TEST.NMS_THRESH = 0.5  # Fast NMS IoU threshold
    # True: released cross-class Fast NMS. False: per-class Fast NMS then top MAX_DETECTIONS (paper / "mAP*").
    _C.MODEL.STMASK.TEST.CROSS_CLASS_NMS = True
    _C.MODEL.STMASK.TEST.MAX_DETECTIONS = 100  # per image after per-class NMS
    _C.MODEL.STMASK.TEST.MASK_THRESH = 0.5  # binarisation threshold of the soft masks
    # Tracks kept per video (best scores) in the results; 0 = every track (released; the official maxDets of 100
    # is applied per video and category by the evaluation itself).
    _C.MODEL.STMASK.TEST.MAX_TRACKS_PER_VIDEO = 0

    # Temporal fusion (§7, paper eqs. 10-14).
    _C.MODEL.STMASK.TF = CN()
    _C.MODEL.STMASK.TF.ENABLED = True
    _C.MODEL.STMASK.TF.NAME = "TemporalFusionHead"
    _C.MODEL.STMASK.TF.CORR_FEATURE = "p4"  # FPN level of the correlation (paper Table 3: P4)
    _C.MODEL.STMASK.TF.CORR_PATCH_SIZE = 11  # side d of the displacement window (Table 3: 11)
    _C.MODEL.STMASK.TF.ROI_SIZE = 7  # RoIAlign output size
    _C.MODEL.STMASK.TF.CONV_DIMS = [512, 512, 1024]  # TemporalNet's three 3x3 convs
    # On CPU, TemporalNet runs on the RoIs padded with zero RoIs to a multiple of this count (0 or 1: no padding) and
    # drops the padded rows: the same outputs, but oneDNN meets a few batch sizes and reuses its kernels instead of
    # building new ones for every RoI count (14 ms a step of the synthetic training, README "Speed options").
    _C.MODEL.STMASK.TF.ROI_BATCH_MULTIPLE = 16
    # Training: the TF losses reach the correlated FPN level, the head's upfeature conv and the backbone (released);
    # False detaches those inputs so that TF trains only TemporalNet (an ablation of its effect on the features).
    _C.MODEL.STMASK.TF.FEATURE_GRAD = True

    # Online tracker (§8, paper eqs. 15-17).
    _C.MODEL.STMASK.TRACKER = CN()
    # "released": S = (1+cos)/2 + MASK_IOU_WEIGHT*mIoU + BOX_IOU_WEIGHT*bIoU against NEW_TRACK_SCORE.
    # "paper": S = ALPHA*cos + BETA*mIoU, a new track when the best S < PAPER_THRESH.
    _C.MODEL.STMASK.TRACKER.MATCH_MODE = "released"
    _C.MODEL.STMASK.TRACKER.MASK_IOU_WEIGHT = 1.0
    _C.MODEL.STMASK.TRACKER.BOX_IOU_WEIGHT = 2.0
    _C.MODEL.STMASK.TRACKER.NEW_TRACK_SCORE = 1.4  # score of the "new track" column (0.5 + 0.3 + 2*0.3)
    _C.MODEL.STMASK.TRACKER.ALPHA = 1.0  # paper's alpha (cosine similarity weight)
    _C.MODEL.STMASK.TRACKER.BETA = 1.0  # paper's beta (mask IoU weight)
    _C.MODEL.STMASK.TRACKER.PAPER_THRESH = 0.8  # paper mode: below this best score a detection starts a track
    _C.MODEL.STMASK.TRACKER.SCORE_DECAY = 0.95  # decaying confidence of propagated (missing) tracks, eq. 17
    _C.MODEL.STMASK.TRACKER.MAX_MISSING_OUTPUT = 10  # propagated masks are emitted for at most this many frames
    # Tracks unseen for more than this many frames are removed from memory (bounded memory on long videos;
    # the released code never prunes). Must be >= MAX_MISSING_OUTPUT; 0 or less disables pruning.
    _C.MODEL.STMASK.TRACKER.PRUNE_AFTER = 30
    _C.MODEL.STMASK.TRACKER.MIN_MASK_PIXELS = 1  # an emitted mask needs more pixels than this at proto size

    # ---------------------------------------------------------------------------------------------------------
    # Solver (§9); the Detectron2 solver keys as released (momentum, weight decay, warm-up, steps) are set in
    # Base-STMask.yaml.
    # ---------------------------------------------------------------------------------------------------------
    # "SGD" (released: momentum SOLVER.MOMENTUM) or "ADAMW" (used by the small synthetic model trained from scratch).
    _C.SOLVER.OPTIMIZER = "SGD"
    # ADAMW only: PyTorch's fused AdamW kernel (``fused=True``: one kernel updates every parameter; the same update
    # as the per-parameter loop, about 10x less optimizer time on CPU). False: PyTorch's default implementation.
    _C.SOLVER.ADAMW_FUSED = True
    # Per-parameter gradient-norm clipping (SOLVER.CLIP_GRADIENTS with CLIP_TYPE "norm") computed for all parameters
    # in a few batched kernels (stmask_d2/engine/grad_clip.py; the same coefficients as Detectron2's one
    # clip_grad_norm_ call per parameter). False: Detectron2's per-parameter loop.
    _C.SOLVER.CLIP_GRADIENTS.BATCHED = True
    # Skip the optimizer step (with a warning) when the total loss is not finite (released behaviour).
    _C.SOLVER.SKIP_NONFINITE_LOSS = True

    # ---------------------------------------------------------------------------------------------------------
    # Issue 10 (ablations as released)
    # ---------------------------------------------------------------------------------------------------------
    # Tracker of a model without TF: "released" (layers/functions/track.py: tracks compared with their last
    # detection, no propagation, only the current frame's detections emitted) or "propagate" (the TF tracker with
    # an identity propagation: missing tracks emitted for MAX_MISSING_OUTPUT frames with their last box and
    # coefficients on the current prototypes, decaying score). Ignored when TF is enabled.
    _C.MODEL.STMASK.TRACKER.NO_TF_MODE = "released"

    # Evaluation
    _C.TEST.YTVIS_HOTA = False  # also compute HOTA / DetA / AssA with trackeval in YTVISEvaluator

    # ---------------------------------------------------------------------------------------------------------
    # Reliability (issue 11): bad input is refused early with one line instead of a crash or a huge allocation.
    # ---------------------------------------------------------------------------------------------------------
    # Frames with more pixels (height * width) than this are refused with one line before they are decoded (demo,
    # evaluation, training). Memory per frame is bounded (masks are pasted and encoded one instance at a time),
    # so the limit guards against absurd inputs; 0 disables it. Default 2**26 = 67M pixels (8192 x 8192).
    _C.INPUT.MAX_FRAME_PIXELS = 2 ** 26
    # Check at start-up that every frame file of the training / test datasets exists and is not empty (one line
    # naming dataset, video, frame and file otherwise). False skips it for huge datasets on slow file systems;
    # the data loader still reports a missing file in one line when it reaches it.
    _C.DATASETS.CHECK_FILES = True
    # A training frame that cannot be read or decoded (missing / empty / corrupt file, size differing from the
    # JSON, bad RLE): False (default) stops with one line naming dataset, video id, frame index, file and fix;
    # True skips the sample (another one is drawn) and logs the running count of skipped frames.
    _C.DATALOADER.SKIP_BAD_FRAMES = False
    # ---------------------------------------------------------------------------------------------------------
    # Released-behaviour switches (issue 9: configs/released/*.yaml set them to run the authors' checkpoints
    # exactly as their eval.py does; the project defaults above stay as they are).
    # ---------------------------------------------------------------------------------------------------------
    # Test-time resize of video frames: "shortest_edge" (Detectron2 ResizeShortestEdge(MIN_SIZE_TEST,
    # MAX_SIZE_TEST), aspect kept) or "fixed" (released: cv2.resize to TEST_FIXED_SIZE, INTER_LINEAR on the uint8
    # frame, aspect NOT kept; padded at the bottom/right to /32 like every input).
    _C.INPUT.TEST_RESIZE_MODE = "shortest_edge"
    # (width, height) of the "fixed" test resize (released YouTube-VIS / OVIS: 640x360 -> network input 384x640).
    _C.INPUT.TEST_FIXED_SIZE = [640, 360]
    # Training: DIoU of the box loss (and the centerness target) on boxes divided by the padded input size, as
    # released (§12 item 16); False computes it in pixels (project default).
    _C.MODEL.STMASK.LOSS.DIOU_NORMALIZED = False
    # Training: detach the DIoU target of the centerness loss (project default); False = released (§12 item 15: the
    # centerness loss also back-propagates into the box branch).
    _C.MODEL.STMASK.LOSS.CENTERNESS_TARGET_DETACH = True
    # Output boxes at the original image size truncated to integer pixels (released `boxes.long()`); False keeps
    # the float boxes (project default). Masks and results.json are not affected.
    _C.MODEL.STMASK.TEST.TRUNCATE_BOXES = False
    # Order of a video's tracks in results.json: "score" (descending, project default) or "first_emitted" (frame of
    # first emission, then track id: the released results2json order). Evaluation does not depend on it.
    _C.MODEL.STMASK.TEST.RESULTS_ORDER = "score"
    # ---------------------------------------------------------------------------------------------------------
    # Speed (issue 12): mixed precision and inference-time rewrites that keep the math.
    # ---------------------------------------------------------------------------------------------------------
    # Autocast dtype of SOLVER.AMP.ENABLED (Detectron2's key, honoured on CPU and CUDA): "auto" = bfloat16 on CPU,
    # float16 (+ GradScaler) on CUDA; or "bfloat16", or "float16" (CUDA only).
    _C.SOLVER.AMP.PRECISION = "auto"
    _C.MODEL.STMASK.INFERENCE = CN()
    # Fold BatchNorm / FrozenBatchNorm into the preceding convs of the backbone when the model is put in eval
    # mode for inference (same function up to float round-off; the state dict keeps its keys).
    _C.MODEL.STMASK.INFERENCE.FOLD_BN = True
    # Run the frame network in channels_last memory format (oneDNN / cuDNN NHWC kernels). Off by default: R50-DCN
    # at 360x640 on the 2-core reference CPU ran 0.97x the time (within noise; ResNet-18 alone was slower there).
    # Measure with tools/benchmark.py --compare channels_last.
    _C.MODEL.STMASK.INFERENCE.CHANNELS_LAST = False
    # Inference dtype of the frame network: "float32", or "bfloat16" (CPU autocast; used only where the CPU has
    # native bf16 (AVX512-BF16 or AMX), else float32 with one log line), or "auto" (bfloat16 where native).
    # float32 by default: bf16 ran 0.77x the time on the AVX512-BF16 reference CPU, its AP change is not measured.
    _C.MODEL.STMASK.INFERENCE.DTYPE = "float32"
    # ---------------------------------------------------------------------------------------------------------
    # Issue 13 (one registry per part)
    # ---------------------------------------------------------------------------------------------------------
    # FCB module of the FCB-calibrated prediction convs, from FCB_REGISTRY (stmask_d2.modeling.heads.build_fcb);
    # each one is built through its ``from_config(cfg, in_channels, out_channels, kernel_size, anchor_cells)``.
    _C.MODEL.STMASK.FCB.NAME = "FCB"
