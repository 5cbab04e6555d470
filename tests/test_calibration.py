"""The machine calibration (ResNet-18 time) and the main job's iteration time read from metrics.json."""
import json

import torch

from stmask_d2.utils.calibration import format_calibration, resnet18_calibration



def test_calibration_runs_and_restores_threads():
    n = torch.get_num_threads()
    s = resnet18_calibration(batch=1, size=32, repeats=1, threads=1)
    assert s > 0 and torch.get_num_threads() == n
    line = format_calibration(0.236)
    assert line.startswith("calibration: torchvision ResNet-18 fp32 forward, batch 8, 224x224, 2 threads: 0.236 s")
    assert "61.6 GMAC/s" in line


def test_main_job_iteration_time(tmp_path):
    from stmask_d2.engine import main_job

    recs = [{"iteration": 19, "time": 1.0}, {"iteration": 39, "time": 3.0}, {"iteration": 59, "time": 2.0},
            {"iteration": 60}]
    (tmp_path / "metrics.json").write_text("\n".join(json.dumps(r) for r in recs) + "\nnot json\n")
    assert main_job.iteration_time(str(tmp_path)) == 2.0
    assert main_job.iteration_time(str(tmp_path), start_iter=30) == 2.5
    assert main_job.iteration_time(str(tmp_path / "none")) != main_job.iteration_time(str(tmp_path / "none"))  # nan
