"""Process memory for the benchmarks: resident set size (current / peak) on the CPU, PyTorch's allocator on CUDA."""
import sys

__all__ = ["rss_mib", "peak_memory_mib", "current_memory_mib"]


def _proc_status_kb(key):
    """``key`` (e.g. "VmRSS", "VmHWM") of /proc/self/status in KiB, or None (not Linux)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _peak_rss_kib():
    kb = _proc_status_kb("VmHWM")
    if kb is None:  # not Linux: ru_maxrss (KiB on Linux, bytes on macOS)
        import resource

        r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        kb = r / 1024 if sys.platform == "darwin" else r
    return kb


def rss_mib():
    """(current, peak) resident set size of this process in MiB (current 0.0 where /proc is missing)."""
    return (_proc_status_kb("VmRSS") or 0) / 1024.0, _peak_rss_kib() / 1024.0


def peak_memory_mib(device):
    """CUDA: peak allocated by PyTorch since the last reset; CPU: peak resident set size of the process."""
    if device == "cuda":
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    return _peak_rss_kib() / 1024


def current_memory_mib(device):
    """CUDA: allocated by PyTorch now; CPU: resident set size now (nan where /proc is missing)."""
    if device == "cuda":
        import torch

        return torch.cuda.memory_allocated() / 2**20
    kb = _proc_status_kb("VmRSS")
    return kb / 1024 if kb is not None else float("nan")
