"""SOLVER.AMP.ENABLED through Detectron2's AMPTrainer: bf16 autocast on CPU, the non-finite-step skip kept."""
import logging

import pytest
import torch
from detectron2.engine import AMPTrainer, HookBase
from detectron2.utils.env import seed_all_rng

from _tiny_setup import one_thread  # noqa: F401  (autouse)
from _tiny_setup import make_tiny_dataset, tiny_cfg
from stmask_d2.engine.train_loop import NonFiniteSkippingAMPTrainer, amp_dtype


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("amp_data"))


class _Record(HookBase):
    def __init__(self):
        self.weights, self.losses, self.dtypes = [], [], []

    def after_step(self):
        m = self.trainer.model
        self.weights.append({k: v.detach().clone() for k, v in m.state_dict().items()})
        self.losses.append({k: v for k, v in self.trainer.storage.latest().items() if k.startswith("loss")})


def _amp_trainer(tiny_data, tmp_path, iters):
    from stmask_d2.engine import STMaskTrainer

    cfg = tiny_cfg(*tiny_data, output_dir=tmp_path, extra_opts=[
        "SOLVER.MAX_ITER", str(iters), "SOLVER.CHECKPOINT_PERIOD", "100", "SOLVER.AMP.ENABLED", "True"])
    seed_all_rng(cfg.SEED)
    return STMaskTrainer(cfg)


def test_amp_dtype():
    assert amp_dtype("auto", "cpu") == torch.bfloat16
    assert amp_dtype("auto", "cuda") == torch.float16
    assert amp_dtype("bfloat16", "cuda") == torch.bfloat16
    with pytest.raises(ValueError, match="float16 is for CUDA"):
        amp_dtype("float16", "cpu")
    with pytest.raises(ValueError, match="PRECISION"):
        amp_dtype("int8", "cpu")


def test_bf16_autocast_steps_run_with_finite_losses_and_skip_nonfinite(tiny_data, tmp_path, caplog):
    trainer = _amp_trainer(tiny_data, tmp_path, 4)
    inner = trainer._trainer
    assert isinstance(inner, NonFiniteSkippingAMPTrainer) and isinstance(inner, AMPTrainer)
    assert inner.precision == torch.bfloat16 and inner.device_type == "cpu"
    assert not inner.grad_scaler.is_enabled()  # bf16 needs no loss scaling
    rec = _Record()
    trainer.register_hooks([rec])
    model = trainer.model
    orig = model.forward
    seen = {"calls": 0}

    def backbone_hook(_mod, _inp, out):
        seen["dtype"] = out["p3"].dtype

    handle = model.backbone.register_forward_hook(backbone_hook)

    def forward(batched_inputs):
        losses = orig(batched_inputs)
        seen["calls"] += 1
        if seen["calls"] == 2:  # iteration 1: poisoned
            losses["loss_box"] = losses["loss_box"] * float("nan")
        return losses

    model.forward = forward
    with caplog.at_level(logging.WARNING, logger="stmask_d2.engine.train_loop"):
        trainer.train()
    handle.remove()
    assert seen["dtype"] == torch.bfloat16, "the forward did not run under bf16 autocast"
    warnings = [r.getMessage() for r in caplog.records if "non-finite loss" in r.getMessage()]
    assert len(warnings) == 1 and "Iteration 1" in warnings[0], warnings
    assert inner.num_skipped == 1
    w = rec.weights
    assert all(torch.equal(w[0][k], w[1][k]) for k in w[0]), "the skipped step changed the weights"
    assert any(not torch.equal(w[1][k], w[2][k]) for k in w[1]), "training did not continue after the skip"
    assert all(v.dtype == torch.float32 for v in w[3].values() if v.is_floating_point()), "weights stay fp32"
    assert all(torch.isfinite(v).all() for v in w[3].values() if v.is_floating_point())
    for i in (0, 2, 3):
        assert rec.losses[i] and all(torch.isfinite(torch.tensor(v[0])) for v in rec.losses[i].values())
    # checkpointable (Detectron2's AMPTrainer state: grad_scaler), and a checkpoint without it loads
    sd = inner.state_dict()
    assert "grad_scaler" in sd
    sd.pop("grad_scaler")
    inner.load_state_dict(sd)
