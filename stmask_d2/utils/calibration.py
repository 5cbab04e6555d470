"""Machine calibration: the time of a fixed reference workload, printed beside absolute timings so that figures
measured on different machines (or on one machine under different load) can be compared.

The reference is torchvision's ResNet-18 (random init, fp32, eval), forward of a batch of 8 224x224 images with 2
intra-op threads on the CPU; the median of a few timed runs after one warm-up. On a CUDA device the same network
and batch run on the GPU (threads do not apply).
"""
import statistics
import time

import torch

__all__ = ["resnet18_calibration", "format_calibration"]


def resnet18_calibration(device: str = "cpu", threads: int = 2, batch: int = 8, size: int = 224, repeats: int = 5,
                         dtype: torch.dtype = torch.float32) -> float:
    """Median seconds of one ResNet-18 forward (batch ``batch``, ``size`` x ``size``, ``dtype``) on ``device``,
    with ``threads`` intra-op threads on CPU (the previous thread count is restored)."""
    from torchvision.models import resnet18

    old_threads = torch.get_num_threads()
    if device == "cpu" and threads > 0:
        torch.set_num_threads(threads)
    try:
        gen = torch.Generator().manual_seed(0)
        model = resnet18(weights=None).eval().to(device=device, dtype=dtype)
        x = torch.randn(batch, 3, size, size, generator=gen).to(device=device, dtype=dtype)
        times = []
        with torch.inference_mode():
            for i in range(repeats + 1):
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                model(x)
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                if i:  # the first run warms up
                    times.append(time.perf_counter() - t0)
        return statistics.median(times)
    finally:
        torch.set_num_threads(old_threads)


def format_calibration(seconds: float, device: str = "cpu", threads: int = 2) -> str:
    """One line describing the calibration, e.g. for the head of a benchmark's output."""
    where = f"{threads} threads" if device == "cpu" else device
    gmacs = 1.8186 * 8 / seconds  # torchvision ResNet-18: 1.8186 GMAC per 224x224 image
    return (f"calibration: torchvision ResNet-18 fp32 forward, batch 8, 224x224, {where}: {seconds:.3f} s "
            f"(median; {gmacs:.1f} GMAC/s)")
