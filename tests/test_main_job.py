"""The main job's config (tools/main_job.py, `make demo`): the half-width R-18 config, AMP only where it is fast,
the user's KEY VALUE pairs last, and one config for training and the demo."""
import os

import pytest

from stmask_d2.engine import main_job
from stmask_d2.engine.setup import get_stmask_cfg


@pytest.mark.parametrize("native_bf16", [True, False])
def test_job_cfg_amp_where_the_cpu_computes_bf16(monkeypatch, tmp_path, native_bf16):
    import stmask_d2.modeling.inference_opts as io

    monkeypatch.setattr(io, "cpu_has_native_bf16", lambda: native_bf16)
    args = main_job.get_parser().parse_args(["--cpu"])
    cfg = main_job.job_cfg(args, str(tmp_path))
    assert cfg.SOLVER.AMP.ENABLED is native_bf16
    assert cfg.MODEL.DEVICE == "cpu" and cfg.OUTPUT_DIR == str(tmp_path)
    assert cfg.MODEL.RESNETS.RES2_OUT_CHANNELS == 32 and cfg.MODEL.STMASK.TF.ENABLED
    assert cfg.SOLVER.MAX_ITER == 1100 and tuple(cfg.SOLVER.STEPS) == (863, 1021)
    assert cfg.DATALOADER.NUM_WORKERS == 0  # on CPU the data is loaded in the training process


def test_job_cfg_user_keys_win_and_iters_rescale(monkeypatch, tmp_path):
    import stmask_d2.modeling.inference_opts as io

    monkeypatch.setattr(io, "cpu_has_native_bf16", lambda: True)
    args = main_job.get_parser().parse_args(["--cpu", "--iters", "450", "SOLVER.AMP.ENABLED", "False",
                                             "MODEL.RESNETS.RES2_OUT_CHANNELS", "64", "DATALOADER.NUM_WORKERS", "2"])
    cfg = main_job.job_cfg(args, str(tmp_path))
    assert cfg.SOLVER.AMP.ENABLED is False and cfg.MODEL.RESNETS.RES2_OUT_CHANNELS == 64
    assert cfg.DATALOADER.NUM_WORKERS == 2
    assert cfg.SOLVER.MAX_ITER == 450 and tuple(cfg.SOLVER.STEPS) == (353, 417)


def test_amp_available_on_cuda_and_by_cpu_flag(monkeypatch):
    import stmask_d2.modeling.inference_opts as io

    assert main_job.amp_available("cuda") and main_job.amp_available("cuda:1")
    monkeypatch.setattr(io, "cpu_has_native_bf16", lambda: False)
    assert not main_job.amp_available("cpu")


def test_the_demo_reads_the_jobs_model_from_the_dumped_config(monkeypatch, tmp_path):
    """Step 4 passes main_job_config.yaml (what step 2 trained) to demo/demo.py: the user's model keys reach it."""
    args = main_job.get_parser().parse_args(["--cpu", "MODEL.RESNETS.STEM_OUT_CHANNELS", "64"])
    cfg = main_job.job_cfg(args, str(tmp_path))
    dumped = tmp_path / "main_job_config.yaml"
    dumped.write_text(cfg.dump())
    again = get_stmask_cfg(str(dumped), ["MODEL.WEIGHTS", "x.pth"], validate=True)
    assert again.MODEL.RESNETS.STEM_OUT_CHANNELS == 64 and again.MODEL.RESNETS.RES2_OUT_CHANNELS == 32
    assert again.MODEL.STMASK.TF.ENABLED and os.path.basename(main_job.CONFIG) == "STMask_R18w32_synthetic_TF.yaml"
