"""tools/ablation.py / stmask_d2.engine.ablation: small-model row variants, a tiny end-to-end table (2 rows x 2 seeds,
frame-level pretraining, one iteration per run), resumability, the markdown table and bad input."""
import json
import os


from stmask_d2.engine.ablation import TABLES, format_table, load_cfg, prepare_synthetic, run_table, small_row_opts

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_table_row_has_a_config_and_small_variant():
    for name, rows in TABLES.items():
        assert rows, name
        for row in rows:
            assert os.path.isfile(os.path.join(ROOT, row["config"])), row["config"]
    base = load_cfg("configs/synthetic/STMask_R18_synthetic.yaml")
    t4 = TABLES["table4"]
    opts = dict(zip(*[iter(small_row_opts(t4, t4[0]))] * 2))
    assert opts["MODEL.ANCHOR_GENERATOR.MODE"] == "ratio" and opts["MODEL.STMASK.FCB.MODE"] == "none"
    assert "MODEL.RESNETS.DEPTH" not in opts  # every Table 4 row is R101: the depth does not distinguish rows
    cfg = base.clone()
    cfg.merge_from_list(small_row_opts(t4, t4[-1]))
    assert cfg.MODEL.STMASK.TF.ENABLED and cfg.MODEL.STMASK.FCB.MODE == "ali" and cfg.MODEL.RESNETS.DEPTH == 18
    sup = TABLES["supp_table1"]
    depths = {dict(zip(*[iter(small_row_opts(sup, r))] * 2))["MODEL.RESNETS.DEPTH"] for r in sup}
    assert depths == {18, 34}  # R50 -> R18, R101 -> R34


def test_format_table_mean_std_and_paper():
    rows = TABLES["table4"][:2]
    md = format_table("t", rows, {"baseline": [{"AP": 10.0, "HOTA": 20.0}, {"AP": 14.0, "HOTA": 22.0}]})
    assert "| baseline | 2 | 12.0 ± 2.8 |" in md and "| 28.9 | 45.8 | 30.1 |" in md
    assert "| baseline +TF | 0 | — |" in md


def test_format_table_paired_delta():
    rows = [dict(name="a", paper={}), dict(name="b", paper={}), dict(name="b [v]", paper={})]
    res = {"a": [{"AP": 10.0}, {"AP": 2.0}], "b": [{"AP": 12.0}, {"AP": 5.0}], "b [v]": [{"AP": 11.0}, {"AP": 5.0}]}
    md = format_table("t", rows, res).splitlines()
    assert md[4].endswith("| — |")  # the first row has no reference
    assert md[5].endswith("| +2.5 ± 0.7 (a) |")  # per-seed gains +2 and +3
    assert md[6].endswith("| -0.5 ± 0.7 (b) |")  # a variant against its own row


def test_tiny_table_end_to_end_and_resume(tmp_path):
    reg = prepare_synthetic(str(tmp_path / "data"), num_videos=5, valid_videos=2, seed=1, num_frames=3, height=64,
                            width=96, motion_scale=2.0, object_blur=0.5, occluders=1)
    assert len(json.load(open(reg[1][1]))["videos"]) == 2
    opts = ["INPUT.MIN_SIZE_TRAIN", (64,), "INPUT.MAX_SIZE_TRAIN", 96, "INPUT.MIN_SIZE_TEST", 64,
            "INPUT.MAX_SIZE_TEST", 96, "SOLVER.IMS_PER_BATCH", 1, "DATALOADER.NUM_WORKERS", 0]
    lines = []
    kw = dict(train=reg[0][0], test=reg[1][0], register=reg, seeds=(0, 1), iters=1, pretrain_iters=1,
              rows=["baseline", "baseline +TF"], opts=opts, print_fn=lines.append)
    out = str(tmp_path / "out")
    md = run_table("table4", out, **kw)
    assert any("ETA" in ln for ln in lines) and any("pretraining" in ln for ln in lines)
    for row in ("baseline", "baseline_TF"):
        for seed in (0, 1):
            m = json.load(open(os.path.join(out, "runs", row, f"seed{seed}", "metrics.json")))
            assert {"AP", "AP50", "AP75", "AR1", "AR10", "HOTA", "AssA"} <= set(m)
            assert m["weights"].endswith("model_final.pth")
    spec = json.load(open(os.path.join(out, "runs", "baseline", "seed0", "spec.json")))
    assert spec["init"] == os.path.join(out, "init_released.pth")  # the released init: no prediction layers
    import torch

    kept = torch.load(spec["init"], weights_only=True)["model"]
    full = torch.load(os.path.join(out, "pretrain", "model_final.pth"), weights_only=True)["model"]
    assert set(kept) == {k for k in full if k.startswith(("backbone.", "protonet.", "head.upfeature."))}
    assert any(k.startswith("backbone.") for k in kept) and not any(k.startswith("head.class") for k in kept)
    assert "| baseline | 2 |" in md and "| baseline +TF | 2 |" in md and "28.9" in md
    assert open(os.path.join(out, "table.md")).read().strip() == md
    # re-run: every run is skipped
    lines.clear()
    assert run_table("table4", out, **kw) == md
    assert sum("done before" in ln for ln in lines) == 4 and not any("pretraining" in ln for ln in lines)


def test_cli_bad_input(tmp_path, capsys):
    """In-process (``main`` returns the exit code); the script itself is checked by tests/test_readme_commands."""
    from stmask_d2.engine.ablation import main

    assert main(["--table", "table4", "--output", str(tmp_path)]) == 2
    assert "--synthetic DIR, or --train and --test" in capsys.readouterr().err
    assert main(["--table", "table4", "--train", "a", "--test", "b", "--rows", "nope", "--output", str(tmp_path)]) == 2
    assert "unknown rows ['nope']" in capsys.readouterr().err
    assert main(["--table", "table1", "--list-rows"]) == 0
    assert capsys.readouterr().out.count("configs/ablations/") == 3


def test_eval_variants_evaluate_finished_runs_without_training(tmp_path):
    reg = prepare_synthetic(str(tmp_path / "data"), num_videos=4, valid_videos=1, seed=1, num_frames=3, height=64,
                            width=96)
    opts = ["INPUT.MIN_SIZE_TRAIN", (64,), "INPUT.MAX_SIZE_TRAIN", 96, "INPUT.MIN_SIZE_TEST", 64,
            "INPUT.MAX_SIZE_TEST", 96, "SOLVER.IMS_PER_BATCH", 1, "DATALOADER.NUM_WORKERS", 0]
    lines = []
    kw = dict(train=reg[0][0], test=reg[1][0], register=reg, seeds=(0,), iters=1, rows=["baseline +TF"], opts=opts,
              print_fn=lines.append)
    out = str(tmp_path / "out")
    variants = [("no TF at test", ["MODEL.STMASK.TF.ENABLED", False])]
    md = run_table("table4", out, eval_variants=variants, **kw)
    vdir = os.path.join(out, "runs", "baseline_TF", "seed0", "variant_no_TF_at_test")
    spec = json.load(open(os.path.join(vdir, "spec.json")))
    assert spec["iters"] == 0 and spec["init"].endswith(os.path.join("baseline_TF", "seed0", "model_final.pth"))
    assert spec["opts"][-2:] == ["MODEL.STMASK.TF.ENABLED", False]
    assert not os.path.exists(os.path.join(vdir, "model_final.pth"))  # evaluated, not trained
    assert "AP" in json.load(open(os.path.join(vdir, "metrics.json")))
    assert "| baseline +TF [no TF at test] | 1 |" in md
    assert md.index("| baseline +TF | 1 |") < md.index("| baseline +TF [no TF at test] |")
    lines.clear()  # resumable: nothing runs again
    assert run_table("table4", out, eval_variants=variants, **kw) == md
    assert not any("evaluation only" in ln for ln in lines)
    try:
        run_table("table4", out, eval_variants=[("x", ["ONLY_A_KEY"])], **kw)
    except ValueError as e:
        assert "KEY VALUE pairs" in str(e)
    else:
        raise AssertionError("odd variant options were accepted")


def test_filter_init_checkpoint(tmp_path):
    import torch

    from stmask_d2.engine.ablation import filter_init_checkpoint

    src = str(tmp_path / "full.pth")
    torch.save({"model": {"backbone.a": torch.ones(2), "head.upfeature.0.weight": torch.ones(1),
                          "head.class_pred.convs.0.weight": torch.ones(3), "tf_head.fc.weight": torch.ones(1)},
                "iteration": 5}, src)
    out = filter_init_checkpoint(src, str(tmp_path / "kept.pth"))
    assert sorted(torch.load(out, weights_only=True)["model"]) == ["backbone.a", "head.upfeature.0.weight"]
    torch.save({"model": {"head.class_pred.w": torch.ones(1)}}, src)
    try:
        filter_init_checkpoint(src, str(tmp_path / "none.pth"))
    except ValueError as e:
        assert "no parameter starts with" in str(e) and not os.path.exists(tmp_path / "none.pth")
    else:
        raise AssertionError("a checkpoint without backbone parameters was accepted")


def test_cli_opts_after_eval_variant():
    from stmask_d2.engine.ablation import cli_opts, get_parser

    args = get_parser().parse_args(["--table", "table4", "--eval-variant", "v", "K1", "1", "--", "K2", "2"])
    assert args.eval_variant == [["v", "K1", "1"]] and cli_opts(args) == ["K2", "2"]
    args = get_parser().parse_args(["--table", "table4", "K2", "2"])
    assert args.eval_variant == [] and cli_opts(args) == ["K2", "2"]
