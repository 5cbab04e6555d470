"""Initial weights of each model part independent of which optional parts are built.

Building a module draws random numbers (PyTorch's default init, Xavier, ...). When parts are built one after the
other from one generator, enabling an optional part (the TF head, an FCB branch) shifts every draw after it, so
"TF on" vs "TF off" with the same ``SEED`` would also compare two initialisations. :func:`init_scope` builds a
part from a generator seeded by (the current global RNG state, the part's name) and leaves the global RNG state
as it found it: a part's initial weights depend only on the seed and its name (and its own configuration).

    with init_scope("head.box_pred"):
        self.box_pred = FCAConvs(...)
"""
import contextlib
import zlib

import torch

__all__ = ["init_scope"]


@contextlib.contextmanager
def init_scope(name: str):
    """Run the body with the CPU generator seeded from (current CPU RNG state, ``name``); restore the state after.

    Nested scopes derive their seed from the enclosing scope's seeded state, so names need only be unique among
    siblings. Only the CPU generator is touched (modules are built on the CPU).
    """
    state = torch.random.get_rng_state()
    # consumes a draw (the state is restored below); on the CPU explicitly, also under `with torch.device("meta")`
    base = int(torch.randint(0, 2**31 - 1, (1,), device="cpu").item())
    seed = (base * 1_000_003 + zlib.crc32(name.encode("utf-8"))) % (2**63 - 1)
    torch.default_generator.manual_seed(seed)
    try:
        yield
    finally:
        torch.random.set_rng_state(state)
