"""Training / evaluation plumbing on top of Detectron2's engine (trainer, checkpointer, setup)."""
from .checkpoint import AtomicDetectionCheckpointer  # noqa: F401
from .train_loop import NonFiniteSkippingAMPTrainer, NonFiniteSkippingTrainer  # noqa: F401
from .trainer import STMaskTrainer, setup_cfg  # noqa: F401
