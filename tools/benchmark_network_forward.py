#!/usr/bin/env python
"""CPU (or CUDA) forward time of STMask's network parts: backbone+FPN, prediction head, ProtoNet. Library code and
the options: ``stmask_d2.engine.benchmark_network``.

    python tools/benchmark_network_forward.py [--depth 50] [--fcb ada] [--iters 5] [--threads 2] [--device cpu]
"""
import sys

from stmask_d2.engine.benchmark_network import main

if __name__ == "__main__":
    sys.exit(main())
