"""Training steps that skip (with a warning) an iteration whose loss is not finite: plain fp32
(``NonFiniteSkippingTrainer``) and mixed precision through Detectron2's ``AMPTrainer``
(``NonFiniteSkippingAMPTrainer``: bf16 autocast on CPU, fp16 autocast + GradScaler on CUDA)."""
import logging
import time

import torch
import torch.distributed as dist
from detectron2.engine import AMPTrainer, SimpleTrainer
from detectron2.utils import comm
from detectron2.utils.events import get_event_storage

__all__ = ["NonFiniteSkippingTrainer", "NonFiniteSkippingAMPTrainer", "amp_dtype"]

logger = logging.getLogger(__name__)


def amp_dtype(precision: str, device_type: str) -> torch.dtype:
    """The autocast dtype of ``SOLVER.AMP.PRECISION`` on ``device_type``: "auto" is bfloat16 on CPU (the only
    reduced precision CPU autocast runs fast) and float16 on CUDA (with a GradScaler)."""
    p = str(precision).lower()
    if p == "auto":
        return torch.bfloat16 if device_type == "cpu" else torch.float16
    if p in ("bfloat16", "bf16"):
        return torch.bfloat16
    if p in ("float16", "fp16", "half"):
        if device_type == "cpu":
            raise ValueError("SOLVER.AMP.PRECISION float16 is for CUDA; on CPU use bfloat16 (or auto).")
        return torch.float16
    raise ValueError(f"SOLVER.AMP.PRECISION must be auto, bfloat16 or float16, got {precision!r}.")


class _SkipNonFinite:
    """The shared part: the all-process finiteness check and the skip."""

    def _init_skip(self, skip_nonfinite):
        self.skip_nonfinite = skip_nonfinite
        self.num_skipped = 0

    def _all_finite(self, losses):
        finite = torch.isfinite(losses.detach()).all().to(torch.float32).reshape(1)
        if comm.get_world_size() > 1:
            finite = finite.to(losses.device)
            dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        return bool(finite.item() > 0)

    def _maybe_skip(self, loss_dict, losses) -> bool:
        """True (step skipped: warning, event-storage count, gradients zeroed) when the loss is not finite on any
        process."""
        if not self.skip_nonfinite or self._all_finite(losses):
            return False
        self.num_skipped += 1
        bad = {k: float(v.detach()) for k, v in loss_dict.items() if not torch.isfinite(v.detach()).all()}
        logger.warning(
            f"Iteration {self.iter}: non-finite loss {bad or '(on another process)'}; step skipped, weights "
            f"unchanged ({self.num_skipped} skipped so far)."
        )
        get_event_storage().put_scalar("skipped_nonfinite", self.num_skipped, smoothing_hint=False)
        self.optimizer.zero_grad()
        return True


class NonFiniteSkippingTrainer(_SkipNonFinite, SimpleTrainer):
    """``SimpleTrainer`` whose step is skipped, on every process at once, when the total loss is NaN or inf.

    The released STMask code skips such steps too; Detectron2's default raises ``FloatingPointError`` after the
    weights were already updated. Skipping keeps the weights intact; the count of skipped steps is written to
    the event storage as ``skipped_nonfinite``.
    """

    def __init__(self, model, data_loader, optimizer, skip_nonfinite=True, **kwargs):
        super().__init__(model, data_loader, optimizer, **kwargs)
        self._init_skip(skip_nonfinite)

    def run_step(self):
        assert self.model.training, "[NonFiniteSkippingTrainer] model was changed to eval mode!"
        start = time.perf_counter()
        data = next(self._data_loader_iter)
        data_time = time.perf_counter() - start

        self.optimizer.zero_grad()
        loss_dict = self.model(data)
        if isinstance(loss_dict, torch.Tensor):
            loss_dict = {"total_loss": loss_dict}
        losses = sum(loss_dict.values())
        if self._maybe_skip(loss_dict, losses):
            return

        losses.backward()
        self.after_backward()
        self._write_metrics(loss_dict, data_time)
        self.optimizer.step()


class NonFiniteSkippingAMPTrainer(_SkipNonFinite, AMPTrainer):
    """Detectron2's ``AMPTrainer`` (``SOLVER.AMP.ENABLED``) on CPU or CUDA, with the non-finite-loss skip.

    The forward runs under ``torch.autocast(device_type, dtype)``: bfloat16 on CPU (no GradScaler: bf16 has the
    range of fp32), float16 on CUDA with a ``GradScaler`` (whose own inf/NaN-gradient check also skips steps).
    The losses are summed in float32. A step whose total loss is not finite is skipped before the backward
    pass, as in :class:`NonFiniteSkippingTrainer`.
    """

    def __init__(self, model, data_loader, optimizer, skip_nonfinite=True, precision="auto", device_type=None,
                 **kwargs):
        """
        Args:
            precision: ``SOLVER.AMP.PRECISION`` ("auto", "bfloat16", "float16"), see :func:`amp_dtype`.
            device_type: "cpu" or "cuda" (default: the device of the model's parameters).
        """
        if device_type is None:
            device_type = next(model.parameters()).device.type
        self.device_type = device_type
        dtype = amp_dtype(precision, device_type)
        scaler = torch.amp.GradScaler(device_type, enabled=(device_type == "cuda" and dtype == torch.float16))
        super().__init__(model, data_loader, optimizer, grad_scaler=scaler, precision=dtype, **kwargs)
        self._init_skip(skip_nonfinite)

    def run_step(self):
        assert self.model.training, "[NonFiniteSkippingAMPTrainer] model was changed to eval mode!"
        start = time.perf_counter()
        data = next(self._data_loader_iter)
        data_time = time.perf_counter() - start

        self.optimizer.zero_grad()
        with torch.autocast(self.device_type, dtype=self.precision):
            loss_dict = self.model(data)
        if isinstance(loss_dict, torch.Tensor):
            loss_dict = {"total_loss": loss_dict}
        loss_dict = {k: v.float() for k, v in loss_dict.items()}
        losses = sum(loss_dict.values())
        if self._maybe_skip(loss_dict, losses):
            return

        self.grad_scaler.scale(losses).backward()
        if self.log_grad_scaler and self.grad_scaler.is_enabled():
            get_event_storage().put_scalar("[metric]grad_scaler", self.grad_scaler.get_scale())
        self.after_backward()
        self._write_metrics(loss_dict, data_time)
        self.grad_scaler.step(self.optimizer)
        self.grad_scaler.update()

    def load_state_dict(self, state_dict):
        SimpleTrainer.load_state_dict(self, state_dict)
        if "grad_scaler" in state_dict:  # absent in a checkpoint of a run without AMP
            self.grad_scaler.load_state_dict(state_dict["grad_scaler"])
