#!/usr/bin/env bash
# Create or refresh the project's virtual environment with the verified stack.
#
#   VENV=.venv (default)      where the environment lives
#   PYTHON=python3            interpreter used to create it
#   SYSTEM_SITE=1             create the venv with --system-site-packages, so a Detectron2 / torch
#                             you already built (e.g. from source with CUDA) is used instead of ours
#
# Idempotent: when nothing changed since the last successful run it only checks imports (seconds).
# An importable `detectron2` in the environment is never replaced.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
PIP_FLAGS=(--disable-pip-version-check -q)
STAMP="$VENV/.stmask_install_stamp"
want_stamp=$(cat tools/install_env.sh requirements.txt setup.py | sha256sum | cut -d' ' -f1)

if [ ! -x "$VENV/bin/python" ]; then
    echo "[install] creating virtual environment $VENV"
    if [ "${SYSTEM_SITE:-0}" = 1 ]; then
        "$PYTHON" -m venv --system-site-packages "$VENV"
    else
        "$PYTHON" -m venv "$VENV"
    fi
fi
PY="$VENV/bin/python"

check_imports() {
    "$PY" - <<'PYCHECK' >/dev/null 2>&1
import torch, torchvision, detectron2, pycocotools, fvcore, trackeval, cv2, stmask_d2
from torchvision.ops import nms
nms(torch.zeros(1, 4), torch.zeros(1), 0.5)
PYCHECK
}

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want_stamp" ] && check_imports; then
    echo "[install] $VENV is up to date"
    exit 0
fi

start=$(date +%s)
# 1. torch + torchvision: the regular build (torchvision's compiled ops need it; it runs on CPU too).
if ! "$PY" -c "import torch, torchvision; from torchvision.ops import nms; nms(torch.zeros(1,4), torch.zeros(1), 0.5)" >/dev/null 2>&1; then
    echo "[install] torch + torchvision"
    "$PY" -m pip install "${PIP_FLAGS[@]}" "torch==2.13.0,!=2.13.0+cpu" "torchvision==0.28.0"
fi
# 2. Python dependencies.
echo "[install] python dependencies (requirements.txt)"
"$PY" -m pip install "${PIP_FLAGS[@]}" -r requirements.txt
# 3. Detectron2: keep an existing one; otherwise the sal-detectron2 wheel (upstream main a59f056, cp310
#    tag; its pure-Python code runs on newer interpreters without the compiled _C).
if "$PY" -c "import detectron2" >/dev/null 2>&1; then
    echo "[install] keeping the Detectron2 already installed: $("$PY" -c 'import detectron2, os; print(os.path.dirname(detectron2.__file__))')"
else
    echo "[install] detectron2 (sal-detectron2==0.7.2 wheel)"
    SP=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    pyver=$("$PY" -c "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')")
    if [ "$pyver" = "3.10" ]; then
        "$PY" -m pip install "${PIP_FLAGS[@]}" --no-deps sal-detectron2==0.7.2
    else
        "$PY" -m pip install "${PIP_FLAGS[@]}" --no-deps --only-binary=:all: --python-version 3.10 \
            --target "$SP" --upgrade sal-detectron2==0.7.2
    fi
fi
# 4. This project, editable.
echo "[install] stmask_d2 (editable)"
"$PY" -m pip install "${PIP_FLAGS[@]}" --no-deps --no-build-isolation -e .

if ! check_imports; then
    echo "[install] ERROR: the environment in $VENV does not import; see the messages above." >&2
    exit 1
fi
echo "$want_stamp" > "$STAMP"
echo "[install] done in $(( $(date +%s) - start )) s"
