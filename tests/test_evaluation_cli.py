"""`python -m stmask_d2.evaluation`: one JSON line on success, a one-line message and exit code 2 on bad input."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from pycocotools import mask as mask_util

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEYS = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10"]


def rle(m):
    r = mask_util.encode(np.asfortranarray(np.asarray(m, dtype=np.uint8)))
    r["counts"] = r["counts"].decode("ascii")
    return r


def box(y0, y1, x0, x1, h=12, w=16):
    m = np.zeros((h, w), np.uint8)
    m[y0:y1, x0:x1] = 1
    return m


@pytest.fixture
def files(tmp_path):
    a, b = box(0, 6, 0, 8), box(4, 12, 6, 16)
    gt = {
        "videos": [{"id": 1, "height": 12, "width": 16, "length": 2, "file_names": ["v1/0.jpg", "v1/5.jpg"]},
                   {"id": 2, "height": 12, "width": 16, "length": 2, "file_names": ["v2/0.jpg", "v2/5.jpg"]}],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
        "annotations": [
            {"id": 1, "video_id": 1, "category_id": 1, "iscrowd": 0, "segmentations": [rle(a), rle(a)],
             "areas": [48.0, 48.0]},
            {"id": 2, "video_id": 2, "category_id": 2, "iscrowd": 0, "segmentations": [rle(b), None],
             "areas": [80.0, None]},
        ],
    }
    res = [
        {"video_id": 1, "category_id": 1, "score": 0.9, "segmentations": [rle(a), rle(box(0, 6, 0, 7))]},
        {"video_id": 2, "category_id": 2, "score": 0.8, "segmentations": [rle(b), None]},
        {"video_id": 2, "category_id": 1, "score": 0.3, "segmentations": [rle(a), None]},
    ]
    gp, rp = tmp_path / "gt.json", tmp_path / "res.json"
    gp.write_text(json.dumps(gt))
    rp.write_text(json.dumps(res))
    return gp, rp, gt, res, tmp_path


class _Proc:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def run(*args):
    """In-process run of the CLI's main() (fast); `run_subprocess` checks the real entry point."""
    import contextlib
    import io

    from stmask_d2.evaluation.__main__ import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in args])
    return _Proc(rc, out.getvalue(), err.getvalue())


def run_subprocess(*args):
    return subprocess.run([sys.executable, "-m", "stmask_d2.evaluation", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_cli_json_line(files):
    gp, rp, *_ = files
    p = run_subprocess("--gt", gp, "--results", rp)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.strip().splitlines()
    assert len(lines) == 1
    out = json.loads(lines[0])
    assert list(out) == KEYS
    # video 1: IoU (48 + 42) / (48 + 48) = 0.9375 -> passes 0.50 .. 0.90 (9 of 10); video 2: perfect (cat 2)
    # cat 1: AP = 0.9 (the FP in video 2 has a lower score), cat 2: AP = 1 -> AP = 0.95
    assert out["AP"] == pytest.approx(0.95)
    assert out["AP50"] == pytest.approx(1.0)
    assert out["APm"] == -1 and out["APl"] == -1


def test_cli_hota(files):
    gp, rp, *_ = files
    p = run("--gt", gp, "--results", rp, "--hota")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout.strip())
    assert list(out) == KEYS + ["HOTA", "DetA", "AssA"]
    for k in ("HOTA", "DetA", "AssA"):
        assert 0 <= out[k] <= 1


def _bad(files, mutate):
    gp, rp, gt, res, tmp = files
    res = json.loads(json.dumps(res))
    path = tmp / "bad.json"
    content = mutate(res)
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return run("--gt", gp, "--results", path)


def _one_line_error(p, needle):
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert p.stdout == ""
    assert "Traceback" not in p.stderr
    err = p.stderr.strip().splitlines()
    assert len(err) == 1 and needle in err[0], p.stderr


@pytest.mark.slow
def test_cli_missing_file(files):
    gp, *_ = files
    _one_line_error(run_subprocess("--gt", gp, "--results", "/nonexistent/res.json"), "not found")


def test_cli_malformed_json(files):
    _one_line_error(_bad(files, lambda r: "[{oops"), "not valid JSON")


def test_cli_unknown_video(files):
    def m(r):
        r[1]["video_id"] = 99
        return r
    _one_line_error(_bad(files, m), "video_id 99")


def test_cli_wrong_length_and_lenient(files):
    def m(r):
        r[0]["segmentations"] = r[0]["segmentations"][:1]
        return r
    p = _bad(files, m)
    _one_line_error(p, "results[0]")
    gp, _, _, _, tmp = files
    p = run("--gt", gp, "--results", tmp / "bad.json", "--lenient")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["AP"] == pytest.approx(1.0)  # frame 1 dropped by zip: video 1 becomes perfect


def test_cli_wrong_rle_size(files):
    def m(r):
        r[2]["segmentations"][0] = rle(np.ones((6, 8)))
        return r
    _one_line_error(_bad(files, m), "size")


def test_cli_not_a_list_and_missing_key(files):
    _one_line_error(_bad(files, lambda r: {"video_id": 1}), "list")

    def m(r):
        del r[1]["score"]
        return r
    _one_line_error(_bad(files, m), "results[1]")
