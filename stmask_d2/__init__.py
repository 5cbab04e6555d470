"""STMask as a Detectron2 extension. Importing this package registers every component."""
try:
    import detectron2  # noqa: F401
except ImportError as e:  # pragma: no cover - depends on the user's environment
    raise ImportError(
        "stmask_d2 needs Detectron2, which is not importable here. Run `make install` (creates .venv with "
        "the sal-detectron2 wheel) or install Detectron2 yourself: "
        "https://detectron2.readthedocs.io/en/latest/tutorials/install.html"
    ) from e

__version__ = "0.1.0"

from . import config, data, evaluation, layers, modeling, tracking, utils  # noqa: F401,E402
from .config import add_stmask_config  # noqa: F401,E402
