"""STMask as a Detectron2 extension.

Importing this package is light (no torch, no Detectron2), so that ``python -m stmask_d2.evaluation`` starts as
fast as the official YouTube-VIS API. The components register themselves with Detectron2's registries when their
modules load, which happens on any of:

* :func:`register_all` (explicit; train_net.py, demo and the tools call it),
* ``stmask_d2.config.add_stmask_config(cfg)`` (every STMask config goes through it),
* importing or accessing a subpackage: ``stmask_d2.modeling``, ``stmask_d2.data`` (builtin dataset splits), ...
  (``stmask_d2.<name>`` attributes load on first access).
"""
import importlib

__version__ = "0.1.0"

_SUBMODULES = ("config", "data", "engine", "evaluation", "export", "layers", "modeling", "tracking", "utils")

__all__ = ["__version__", "register_all", "add_stmask_config", *_SUBMODULES]

_registered = False


def register_all():
    """Register every STMask component (backbones, anchor generator, heads, meta-arch) and the builtin dataset
    splits with Detectron2. Idempotent; raises one clear ImportError when Detectron2 is missing."""
    global _registered
    if _registered:
        return
    try:
        import detectron2  # noqa: F401
    except ImportError as e:  # pragma: no cover - depends on the user's environment
        raise ImportError(
            "stmask_d2 needs Detectron2, which is not importable here. Run `make install` (creates .venv with "
            "the sal-detectron2 wheel) or install Detectron2 yourself: "
            "https://detectron2.readthedocs.io/en/latest/tutorials/install.html"
        ) from e
    _registered = True
    importlib.import_module(".modeling", __name__)
    importlib.import_module(".data", __name__)


def __getattr__(name):
    if name in _SUBMODULES:
        module = importlib.import_module(f".{name}", __name__)
        if name in ("modeling", "data", "config", "engine", "export"):
            register_all()
        return module
    if name == "add_stmask_config":
        from .config import add_stmask_config

        return add_stmask_config
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
