"""Multi-process launch that also works on CPU (gloo), for ``--num-gpus N MODEL.DEVICE cpu``.

On CUDA this is Detectron2's ``launch`` (NCCL, one process per GPU). With ``device="cpu"`` Detectron2's launch
would still pick NCCL and bind a GPU whenever CUDA is present, so the CPU path starts the processes itself with
the gloo backend and the same local process group set-up (``comm.create_local_process_group``).
"""
import logging
from datetime import timedelta

import torch.distributed as dist
import torch.multiprocessing as mp
from detectron2.engine import launch as d2_launch
from detectron2.engine.launch import _find_free_port
from detectron2.utils import comm

__all__ = ["launch"]

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = timedelta(minutes=30)


def launch(main_func, num_processes_per_machine, num_machines=1, machine_rank=0, dist_url=None, args=(),
           timeout=DEFAULT_TIMEOUT, device="cuda"):
    """Run ``main_func(*args)`` in ``num_processes_per_machine * num_machines`` processes (one process: in this
    one). ``device``: "cpu" uses gloo and binds no GPU; anything else is Detectron2's ``launch``."""
    world_size = num_machines * num_processes_per_machine
    if world_size <= 1 or not str(device).startswith("cpu"):
        return d2_launch(main_func, num_processes_per_machine, num_machines=num_machines,
                         machine_rank=machine_rank, dist_url=dist_url, args=args, timeout=timeout)
    if dist_url == "auto" or dist_url is None:
        assert num_machines == 1, "dist_url=auto is not supported in multi-machine jobs."
        dist_url = f"tcp://127.0.0.1:{_find_free_port()}"
    mp.start_processes(
        _cpu_worker,
        nprocs=num_processes_per_machine,
        args=(main_func, world_size, num_processes_per_machine, machine_rank, dist_url, args, timeout),
        daemon=False,
    )


def _cpu_worker(local_rank, main_func, world_size, num_per_machine, machine_rank, dist_url, args, timeout):
    rank = machine_rank * num_per_machine + local_rank
    try:
        dist.init_process_group(backend="gloo", init_method=dist_url, world_size=world_size, rank=rank,
                                timeout=timeout)
    except Exception:
        logger.error(f"Process group URL: {dist_url}")
        raise
    comm.create_local_process_group(num_per_machine)
    comm.synchronize()
    try:
        main_func(*args)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
