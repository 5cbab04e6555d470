"""`import stmask_d2` is light (the evaluation CLI needs neither torch nor Detectron2); the components register on
`register_all()`, on `add_stmask_config` and on access of a subpackage."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(code):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


def test_evaluation_cli_imports_neither_torch_nor_detectron2(tmp_path):
    gt = {"videos": [{"id": 1, "height": 4, "width": 4, "length": 1, "file_names": ["a/0.jpg"]}],
          "annotations": [], "categories": [{"id": 1, "name": "c"}]}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "res.json").write_text("[]")
    code = (
        "import sys, runpy; sys.argv = ['x', '--gt', %r, '--results', %r]\n"
        "try:\n    runpy.run_module('stmask_d2.evaluation', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "print('torch' in sys.modules, 'detectron2' in sys.modules)"
    ) % (str(tmp_path / "gt.json"), str(tmp_path / "res.json"))
    assert _run(code) == "False False"


def test_register_all_and_add_config_register():
    assert _run(
        "import stmask_d2, sys; a = 'detectron2' in sys.modules; stmask_d2.register_all(); "
        "from detectron2.modeling import META_ARCH_REGISTRY, BACKBONE_REGISTRY; "
        "from detectron2.data import DatasetCatalog; "
        "print(a, 'STMask' in META_ARCH_REGISTRY, 'build_stmask_resnet_fpn_backbone' in BACKBONE_REGISTRY, "
        "'ytvis_2019_train' in DatasetCatalog.list())"
    ) == "False True True True"
    assert _run(
        "from detectron2.config import get_cfg; from stmask_d2.config import add_stmask_config; "
        "from detectron2.modeling import META_ARCH_REGISTRY; add_stmask_config(get_cfg()); "
        "print('STMask' in META_ARCH_REGISTRY)"
    ) == "True"
    assert _run("import stmask_d2; m = stmask_d2.modeling; from detectron2.modeling import META_ARCH_REGISTRY; "
                "print('STMask' in META_ARCH_REGISTRY, callable(stmask_d2.add_stmask_config))") == "True True"
