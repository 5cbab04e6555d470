"""Per-stage wall-clock timing for the benchmark (synchronises CUDA so GPU time lands in the right stage)."""
import time
from collections import defaultdict
from contextlib import contextmanager

import torch

__all__ = ["StageTimer", "NullTimer"]


class StageTimer:
    """Accumulates seconds per named stage: ``with timer("head"): ...``; ``timer.totals`` maps stage -> seconds."""

    def __init__(self, cuda_sync=None):
        self.cuda_sync = torch.cuda.is_available() if cuda_sync is None else cuda_sync
        self.totals = defaultdict(float)
        self.counts = defaultdict(int)

    @contextmanager
    def __call__(self, name):
        if self.cuda_sync:
            torch.cuda.synchronize()
        start = time.perf_counter()
        try:
            yield
        finally:
            if self.cuda_sync:
                torch.cuda.synchronize()
            self.totals[name] += time.perf_counter() - start
            self.counts[name] += 1

    def reset(self):
        self.totals.clear()
        self.counts.clear()


class NullTimer:
    """No-op stand-in for ``StageTimer`` (the default inside the model)."""

    @contextmanager
    def __call__(self, name):
        yield
