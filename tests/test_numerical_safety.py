"""Numerical safety and determinism (issue 6.3, 6.4): awkward batches train without NaN, every parameter stays in
the graph (DDP-safe), a non-finite loss skips the step with a warning and unchanged weights, NaN / inf box
deltas give a non-finite loss instead of an assertion, and two seeded runs give identical losses."""
import copy
import logging

import pytest
import torch
from detectron2.engine import HookBase
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from detectron2.utils.env import seed_all_rng

from _tiny_setup import one_thread  # noqa: F401  (autouse)
from _tiny_setup import tiny_cfg





@pytest.fixture(scope="module")
def model(tiny_data):
    cfg = tiny_cfg(*tiny_data)
    torch.manual_seed(0)
    m = build_model(cfg)
    m.train()
    return m


def _inst(boxes, ids=None, hw=(64, 96)):
    boxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    n = len(boxes)
    masks = torch.zeros(n, *hw, dtype=torch.bool)
    for i, (x1, y1, x2, y2) in enumerate(boxes.round().long().tolist()):
        masks[i, min(y1, y2):max(y1, y2) + 1, min(x1, x2):max(x1, x2) + 1] = True
    inst = Instances(hw, gt_boxes=Boxes(boxes), gt_classes=torch.arange(n) % 5, gt_masks=masks)
    inst.gt_ids = torch.as_tensor(ids if ids is not None else list(range(n)), dtype=torch.int64)
    return inst


def _img(seed, hw=(64, 96)):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (3, *hw), generator=g, dtype=torch.uint8)


BOX = [10.0, 12.0, 50.0, 44.0]
CASES = {
    "pair": [{"image": [_img(0), _img(1)], "instances": [_inst([BOX]), _inst([BOX])]}],
    "no_instance_in_second_frame": [{"image": [_img(0), _img(1)], "instances": [_inst([BOX]), _inst([])]}],
    "no_instance_at_all": [{"image": [_img(0), _img(1)], "instances": [_inst([]), _inst([])]}],
    "no_positive_anchor": [{"image": [_img(2), _img(3)], "instances": [_inst([[5, 5, 5.5, 5.5]]),
                                                                      _inst([[5, 5, 5.5, 5.5]])]}],
    "degenerate_boxes": [{"image": [_img(4), _img(5)],
                          "instances": [_inst([[20, 20, 20, 40], [30, 30, 60, 30], [40, 40, 40, 40]], [0, 1, 2]),
                                        _inst([[60, 50, 30, 20], [0, 0, 0.2, 0.3]], [0, 5])]}],  # flipped, tiny
    "box_on_the_border": [{"image": [_img(6), _img(7)], "instances": [_inst([[0, 0, 96, 64]]),
                                                                     _inst([[90, 60, 96, 64]])]}],
    "single_image_no_pair": [{"image": _img(8), "instances": _inst([BOX])}],
    "odd_size_pair": [{"image": [_img(9, (70, 101)), _img(10, (70, 101))],
                       "instances": [_inst([BOX], hw=(70, 101)), _inst([BOX], hw=(70, 101))]}],
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_awkward_batches_train_without_nan(model, case):
    model.zero_grad(set_to_none=True)
    losses = model(copy.deepcopy(CASES[case]))
    assert losses, case
    for k, v in losses.items():
        assert torch.isfinite(v).all(), (case, k, v)
    sum(losses.values()).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"{case}: parameters outside the graph would stall DDP without find_unused_parameters: " \
        f"{missing[:5]}"
    bad = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    assert not bad, (case, bad[:5])


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_nonfinite_deltas_give_nonfinite_loss_not_assertion(model, monkeypatch, value):
    head = model.head
    orig = head.forward

    def poisoned(*a, **k):
        out = orig(*a, **k)
        d = out["pred_deltas"].clone()
        d[..., 0] = value  # every anchor, so the positives get a non-finite box
        out["pred_deltas"] = d
        return out

    monkeypatch.setattr(head, "forward", poisoned)
    losses = model(copy.deepcopy(CASES["pair"]))
    assert not torch.isfinite(sum(losses.values())), losses


def _trainer(cfg):
    from stmask_d2.engine import STMaskTrainer

    seed_all_rng(cfg.SEED)
    return STMaskTrainer(cfg)


class _Record(HookBase):
    def __init__(self):
        self.weights, self.losses = [], []

    def after_step(self):
        m = self.trainer.model
        self.weights.append({k: v.detach().clone() for k, v in m.state_dict().items()})
        self.losses.append({k: v for k, v in self.trainer.storage.latest().items() if k.startswith("loss")})


def test_nonfinite_loss_skips_step_keeps_weights_and_continues(tiny_data, tmp_path, caplog):
    cfg = tiny_cfg(*tiny_data, output_dir=tmp_path, extra_opts=["SOLVER.MAX_ITER", "4",
                                                                 "SOLVER.CHECKPOINT_PERIOD", "100"])
    trainer = _trainer(cfg)
    rec = _Record()
    trainer.register_hooks([rec])
    model = trainer.model
    orig = model.forward
    calls = []

    def forward(batched_inputs):
        losses = orig(batched_inputs)
        calls.append(1)
        if len(calls) == 2:  # iteration 1
            losses["loss_box"] = losses["loss_box"] * float("nan")
        return losses

    model.forward = forward
    with caplog.at_level(logging.WARNING, logger="stmask_d2.engine.train_loop"):
        trainer.train()
    assert len(calls) == 4 and trainer.iter == 4  # TrainerBase.train leaves iter at MAX_ITER
    warnings = [r.getMessage() for r in caplog.records if "non-finite loss" in r.getMessage()]
    assert len(warnings) == 1 and "Iteration 1" in warnings[0] and "loss_box" in warnings[0], warnings
    assert trainer._trainer.num_skipped == 1
    w = rec.weights
    assert all(torch.equal(w[0][k], w[1][k]) for k in w[0]), "the skipped step changed the weights"
    assert any(not torch.equal(w[1][k], w[2][k]) for k in w[1]), "training did not continue after the skip"
    assert all(torch.isfinite(v).all() for v in w[3].values() if v.is_floating_point())


@pytest.mark.slow
def test_two_seeded_runs_give_identical_losses(tiny_data, tmp_path):
    runs = []
    for i in range(2):
        cfg = tiny_cfg(*tiny_data, output_dir=tmp_path / f"run{i}",
                       extra_opts=["SOLVER.MAX_ITER", "3", "SOLVER.CHECKPOINT_PERIOD", "100"])
        trainer = _trainer(cfg)
        rec = _Record()
        trainer.register_hooks([rec])
        trainer.train()
        runs.append(rec)
    assert len(runs[0].losses) == 3
    assert runs[0].losses == runs[1].losses
    assert all(torch.equal(runs[0].weights[-1][k], runs[1].weights[-1][k]) for k in runs[0].weights[-1])
