#!/usr/bin/env python
"""stmask_d2: STMask (CVPR 2021) as a Detectron2 extension.

Detectron2 is deliberately *not* in install_requires: no distribution of that name exists on the package
index. Install it first (tools/install_env.sh does it; see README.md); `import stmask_d2` checks for it.
"""
from setuptools import find_packages, setup

setup(
    name="stmask_d2",
    version="0.1.0",
    description="STMask one-stage video instance segmentation as a Detectron2 extension",
    packages=find_packages(include=["stmask_d2", "stmask_d2.*"]),
    python_requires=">=3.9",
    install_requires=[
        "torch>=2.0",
        "torchvision>=0.15",
        "fvcore",
        "iopath",
        "pycocotools",
        "opencv-python",
        "numpy",
        "tqdm",
    ],
    extras_require={"hota": ["trackeval"], "test": ["pytest"]},
)
