"""Training step that skips (with a warning) an iteration whose loss is not finite."""
import logging
import time

import torch
import torch.distributed as dist
from detectron2.engine import SimpleTrainer
from detectron2.utils import comm
from detectron2.utils.events import get_event_storage

__all__ = ["NonFiniteSkippingTrainer"]

logger = logging.getLogger(__name__)


class NonFiniteSkippingTrainer(SimpleTrainer):
    """``SimpleTrainer`` whose step is skipped, on every process at once, when the total loss is NaN or inf.

    The released STMask code skips such steps too; Detectron2's default raises ``FloatingPointError`` after the
    weights were already updated. Skipping keeps the weights intact; the count of skipped steps is written to
    the event storage as ``skipped_nonfinite``.
    """

    def __init__(self, model, data_loader, optimizer, skip_nonfinite=True, **kwargs):
        super().__init__(model, data_loader, optimizer, **kwargs)
        self.skip_nonfinite = skip_nonfinite
        self.num_skipped = 0

    def _all_finite(self, losses):
        finite = torch.isfinite(losses.detach()).all().to(torch.float32).reshape(1)
        if comm.get_world_size() > 1:
            finite = finite.to(losses.device)
            dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        return bool(finite.item() > 0)

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

        if self.skip_nonfinite and not self._all_finite(losses):
            self.num_skipped += 1
            bad = {k: float(v.detach()) for k, v in loss_dict.items() if not torch.isfinite(v.detach()).all()}
            logger.warning(
                f"Iteration {self.iter}: non-finite loss {bad or '(on another process)'}; step skipped, weights "
                f"unchanged ({self.num_skipped} skipped so far)."
            )
            get_event_storage().put_scalar("skipped_nonfinite", self.num_skipped, smoothing_hint=False)
            self.optimizer.zero_grad()
            return

        losses.backward()
        self.after_backward()
        self._write_metrics(loss_dict, data_time)
        self.optimizer.step()
