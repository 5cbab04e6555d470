#!/usr/bin/env bash
# Fill ./wheels with the packages of requirements.txt and Detectron2 for another machine's interpreter, so that
# tools/gpu_check.sh can install them there without network (pip install --no-index --find-links wheels).
# Run it where PyPI is reachable:
#
#   PYVER=3.12 bash tools/fetch_wheels.sh        (PYVER: the target's Python, default 3.12; x86-64 Linux)
#
# torch / torchvision are not fetched (the target has them). Binary wheels are fetched for PYVER; packages that
# PyPI has only as source (e.g. fvcore, iopath) are built here into pure-Python wheels, with their dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
PYVER=${PYVER:-3.12}
PLAT=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
mkdir -p wheels
sed 's/#.*//' requirements.txt | awk 'NF' | while read -r req; do
    if ! "$PY" -m pip download -q --disable-pip-version-check --only-binary=:all: --python-version "$PYVER" \
            "${PLAT[@]}" -d wheels "$req" 2>/dev/null; then
        echo "[wheels] $req: no binary wheel for Python $PYVER, building a wheel here"
        "$PY" -m pip wheel -q --disable-pip-version-check -w wheels "$req"
    fi
done
"$PY" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: --python-version 3.10 \
    -d wheels sal-detectron2==0.7.2
echo "[wheels] $(ls wheels | wc -l) files in wheels/ ($(du -sh wheels | cut -f1))"
