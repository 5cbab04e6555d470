#!/usr/bin/env bash
# GPU check of stmask_d2 (issue 12), on one CUDA machine, in at most 8 minutes (each step has its own time limit):
#
#   0. packages: import check; what is missing is installed from ./wheels (no network:
#      pip install --no-index --find-links wheels ...; tools/fetch_wheels.sh fills wheels/ on a networked machine)
#   1. the CUDA tests (tests/test_cuda.py: torchvision's CUDA deformable conv against the CPU path, the model on
#      CUDA against CPU, fp16 inference, fp16 AMP training steps) and the CPU-equality tests of the export
#   2. tools/benchmark.py --device cuda at 360x640, fp32 then fp16 (with the ResNet-18 calibration)
#   3. 100 AMP training iterations (fp16 + GradScaler) of the synthetic config on synthetic data (train_net.py)
#
#   bash tools/gpu_check.sh [OUT_DIR]          (default output/gpu_check; a log of every step is written there)
#   PYTHON=python3.12 bash tools/gpu_check.sh
#   GPU_CHECK_DRY_RUN=1 bash tools/gpu_check.sh   CPU dry run of the same steps at toy sizes (no CUDA needed):
#                                                  checks the script's plumbing, measures nothing
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=${PYTHON:-python3}
OUT=${1:-output/gpu_check}
DRY=${GPU_CHECK_DRY_RUN:-0}
# time limits are sized for a CUDA machine; a CPU dry run on a shared machine gets longer ones
LIMIT_SCALE=${GPU_CHECK_LIMIT_SCALE:-$([ "$DRY" = 1 ] && echo 8 || echo 1)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export DETECTRON2_DATASETS="$OUT/datasets"
START=$(date +%s)
FAILED=()

elapsed() { echo $(( $(date +%s) - START )); }
step() { echo; echo "=== [$(elapsed) s] $*"; }
# run NAME LIMIT_S CMD...: the command's output goes to the screen and to OUT/NAME.log
run() {
    local name=$1 limit=$(( $2 * LIMIT_SCALE ))
    shift 2
    timeout --signal=TERM --kill-after=10 "$limit" "$@" 2>&1 | tee "$OUT/$name.log"
    local rc=${PIPESTATUS[0]}
    if [ "$rc" -ne 0 ]; then
        [ "$rc" -eq 124 ] && echo "!!! $name: time limit of $limit s reached"
        echo "!!! $name failed (exit $rc), log: $OUT/$name.log"
        FAILED+=("$name")
    fi
    return 0
}

# --- 0. packages ----------------------------------------------------------------------------------------------
step "0/3 packages ($PY)"
check_imports() {
    "$PY" - <<'PYCHECK'
import importlib, sys
missing = []
for mod in ["torch", "torchvision", "detectron2", "fvcore", "iopath", "pycocotools", "cv2", "yacs", "termcolor",
            "tabulate", "cloudpickle", "tqdm", "omegaconf", "hydra", "matplotlib", "PIL", "trackeval", "onnx",
            "onnxruntime", "pytest", "tensorboard"]:
    try:
        importlib.import_module(mod)
    except Exception as e:  # noqa: BLE001
        missing.append(f"{mod} ({type(e).__name__})")
if missing:
    print("missing: " + ", ".join(missing))
    sys.exit(1)
PYCHECK
}
if ! check_imports; then
    if [ -d wheels ]; then
        echo "installing from ./wheels (no index)"
        "$PY" -m pip install --disable-pip-version-check -q --no-index --find-links wheels -r requirements.txt \
            || echo "!!! some requirements could not be installed from wheels/"
        if ! "$PY" -c "import detectron2" 2>/dev/null; then
            pyver=$("$PY" -c "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')")
            SP=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
            if [ "$pyver" = "3.10" ]; then
                "$PY" -m pip install -q --no-index --find-links wheels --no-deps sal-detectron2
            else  # the cp310 wheel's pure-Python code runs on newer interpreters (as tools/install_env.sh)
                "$PY" -m pip install -q --no-index --find-links wheels --no-deps --only-binary=:all: \
                    --python-version 3.10 --target "$SP" --upgrade sal-detectron2
            fi
        fi
    else
        echo "!!! packages are missing and there is no ./wheels folder to install them from (tools/fetch_wheels.sh)"
    fi
    check_imports || { echo "!!! cannot continue without these packages"; exit 2; }
fi
"$PY" - <<'PYINFO'
import torch, torchvision
cuda = torch.cuda.is_available()
print(f"python {__import__('sys').version.split()[0]}  torch {torch.__version__}  torchvision {torchvision.__version__}"
      f"  CUDA {torch.version.cuda}  device: {torch.cuda.get_device_name() if cuda else 'none'}")
PYINFO
if [ "$DRY" != 1 ] && ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "!!! no CUDA device: run it on a CUDA machine, or GPU_CHECK_DRY_RUN=1 for a CPU dry run"
    exit 2
fi

if [ "$DRY" = 1 ]; then
    DEV=cpu; BENCH_SIZE=(--height 64 --width 96 --frames 2 --warmup 1); BENCH_OPTS=(--opts INPUT.MIN_SIZE_TEST 64 INPUT.MAX_SIZE_TEST 96)
    ITERS=3; FP16=(); AMP_PREC=bfloat16
else
    DEV=cuda; BENCH_SIZE=(--height 360 --width 640 --frames 100 --warmup 10); BENCH_OPTS=()
    ITERS=100; FP16=(--fp16); AMP_PREC=float16
fi

# --- 1. tests ---------------------------------------------------------------------------------------------------
step "1/3 CUDA tests (+ export equality)"
run tests 150 "$PY" -m pytest -q -rs -p no:cacheprovider tests/test_cuda.py tests/test_cuda_amp_export.py tests/test_export.py -k "not demo and not unexportable"

# --- 2. benchmark ---------------------------------------------------------------------------------------------
step "2/3 benchmark $DEV fp32 (R50-DCN ada + TF, 360x640, and Mask R-CNN R50-FPN)"
run bench_fp32 90 "$PY" tools/benchmark.py --device "$DEV" "${BENCH_SIZE[@]}" --skip-flops "${BENCH_OPTS[@]}"
step "2/3 benchmark $DEV ${FP16[*]:-fp32 (dry run)}"
run bench_fp16 90 "$PY" tools/benchmark.py --device "$DEV" "${BENCH_SIZE[@]}" --skip-flops --no-calibration \
    "${FP16[@]}" "${BENCH_OPTS[@]}"

# --- 3. AMP training --------------------------------------------------------------------------------------------
step "3/3 $ITERS AMP ($AMP_PREC) training iterations on synthetic data"
DATA="$DETECTRON2_DATASETS/gpu_check_vis"
run data 30 "$PY" - "$DATA" <<'PYDATA'
import os, sys
from stmask_d2.data.synthetic import make_synthetic_vis
out = sys.argv[1]
if not os.path.isfile(os.path.join(out, "train.json")):
    print("wrote", make_synthetic_vis(out, num_videos=12, num_frames=6, height=128, width=224))
PYDATA
JSON=$(ls "$DATA"/*.json 2>/dev/null | head -1)
run train 110 "$PY" train_net.py --config-file configs/synthetic/STMask_R18_synthetic_TF.yaml \
    --register-ytvis gpu_check_vis "$JSON" "$DATA/JPEGImages" \
    DATASETS.TRAIN '("gpu_check_vis",)' DATASETS.TEST '()' MODEL.DEVICE "$DEV" \
    SOLVER.MAX_ITER "$ITERS" SOLVER.AMP.ENABLED True SOLVER.AMP.PRECISION "$AMP_PREC" SOLVER.CHECKPOINT_PERIOD 100000 \
    SOLVER.WARMUP_ITERS 10 DATALOADER.NUM_WORKERS 2 TEST.EVAL_PERIOD 0 OUTPUT_DIR "$OUT/train"
"$PY" - "$OUT/train/metrics.json" <<'PYMETRICS'
import json, statistics, sys
try:
    recs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
except OSError:
    sys.exit(print("no metrics.json"))
times = [r["time"] for r in recs if "time" in r]
last = recs[-1] if recs else {}
print(f"training: {last.get('iteration', -1) + 1} iterations, median {statistics.median(times) if times else float('nan'):.3f} "
      f"s/iteration, last total_loss {last.get('total_loss', float('nan')):.3f}, skipped non-finite: "
      f"{last.get('skipped_nonfinite', 0)}")
PYMETRICS

step "done in $(elapsed) s"
if [ "$DRY" = 1 ]; then
    echo "CPU DRY RUN: the script's plumbing ran; nothing was measured on a GPU."
fi
if [ ${#FAILED[@]} -gt 0 ]; then
    echo "FAILED steps: ${FAILED[*]}"
    exit 1
fi
echo "all steps passed"
