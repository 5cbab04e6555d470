#!/usr/bin/env python
"""Training-step benchmark: the configured step against variants (fused / unfused AdamW, CPU deformable conv
implementations, bf16 AMP) in one run; the library code and the options are in ``stmask_d2.engine.benchmark_train``
(``--help`` lists them).

    python tools/benchmark_train_step.py [--config-file configs/synthetic/STMask_R18_synthetic_TF.yaml] [--steps 5]
        [--warmup 2] [--rounds 2] [--threads 2] [--compare adamw_unfused+dcn_grid_sample,amp] [--opts KEY VALUE ...]

A script that prints numbers; it never asserts timings. Bad input: one line on stderr, exit code 2.
"""
import sys

from stmask_d2.engine.benchmark_train import main

if __name__ == "__main__":
    sys.exit(main())
