"""The one command-line wrapper (``stmask_d2.utils.errors.run_cli``) and the one config path
(``stmask_d2.engine.setup.get_stmask_cfg``) that every entry point uses: a user error is one line on stderr with exit
code 2, any other exception keeps its traceback, ``STMASK_DEBUG=1`` re-raises user errors too; no script is
imported by the package or the tests."""
import ast
import glob
import os

import pytest

from stmask_d2.utils.errors import ConfigError, InputError, MissingFileError, UserError, is_user_error, run_cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _raiser(exc):
    def main(argv):
        raise exc

    return main


@pytest.mark.parametrize("exc", [InputError("--fps must be positive, got -1"), MissingFileError("x.json: missing"),
                                 ConfigError("MODEL.FOO: no such key")])
def test_user_error_is_one_line_exit_2(exc, capsys, monkeypatch):
    monkeypatch.delenv("STMASK_DEBUG", raising=False)
    assert run_cli(_raiser(exc), [], prog="tool.py") == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [f"tool.py: error: {exc}"]


def test_without_prog_and_multiline_message(capsys, monkeypatch):
    monkeypatch.delenv("STMASK_DEBUG", raising=False)
    assert run_cli(_raiser(InputError("first\n  second")), []) == 2
    assert capsys.readouterr().err == "error: first second\n"


@pytest.mark.parametrize("exc", [KeyError("internal"), ValueError("bug"), RuntimeError("bug"), TypeError("bug"),
                                 FileNotFoundError("not raised at a user input")])
def test_other_errors_keep_their_traceback(exc, monkeypatch):
    monkeypatch.delenv("STMASK_DEBUG", raising=False)
    with pytest.raises(type(exc)):
        run_cli(_raiser(exc), [], prog="tool.py")


def test_debug_reraises_user_errors(monkeypatch):
    monkeypatch.setenv("STMASK_DEBUG", "1")
    with pytest.raises(InputError):
        run_cli(_raiser(InputError("bad")), [], prog="tool.py")
    monkeypatch.setenv("STMASK_DEBUG", "0")
    assert run_cli(_raiser(InputError("bad")), [], prog="tool.py") == 2


def test_return_codes_and_interrupt(capsys):
    assert run_cli(lambda argv: None, []) == 0
    assert run_cli(lambda argv: 3, []) == 3
    assert run_cli(_raiser(KeyboardInterrupt()), [], prog="demo.py", interrupted="interrupted") == 130
    assert capsys.readouterr().err == "demo.py: interrupted\n"
    with pytest.raises(KeyboardInterrupt):
        run_cli(_raiser(KeyboardInterrupt()), [])


def test_user_error_types():
    from stmask_d2.data.converters import ConversionError
    from stmask_d2.data.ytvis import YTVISFormatError
    from stmask_d2.evaluation.ytvis_eval import YTVISEvalError
    from stmask_d2.export import ExportError
    from stmask_d2.utils.video import FrameReadError

    for t in (ConversionError, ExportError, FrameReadError, MissingFileError, InputError, ConfigError):
        assert issubclass(t, UserError)
    assert is_user_error(YTVISFormatError("x")) and is_user_error(YTVISEvalError("x"))
    assert not is_user_error(ValueError("x")) and not is_user_error(KeyError("x"))


def test_get_stmask_cfg_order_and_errors(tmp_path):
    from stmask_d2.engine.setup import get_stmask_cfg

    config = os.path.join(ROOT, "configs", "synthetic", "STMask_R18_synthetic_TF.yaml")
    cfg = get_stmask_cfg(config, ["MODEL.DEVICE", "cpu", "INPUT.MIN_SIZE_TEST", "64"],
                         {"INPUT.MIN_SIZE_TEST": 80, "MODEL.STMASK.TEST.SCORE_THRESH": 0.0})
    assert cfg.is_frozen() and cfg.INPUT.MIN_SIZE_TEST == 80 and cfg.MODEL.STMASK.TEST.SCORE_THRESH == 0.0
    with pytest.raises(ConfigError, match="does not exist"):
        get_stmask_cfg(str(tmp_path / "nope.yaml"))
    with pytest.raises(ConfigError, match="misspelt"):
        get_stmask_cfg(config, ["MODEL.NOPE", "1"])
    with pytest.raises(ConfigError, match="NMS_THRESH"):
        get_stmask_cfg(config, ["MODEL.STMASK.TEST.NMS_THRESH", "1.5"])
    assert get_stmask_cfg(config, ["MODEL.STMASK.TEST.NMS_THRESH", "1.5"], validate=False, freeze=False)


def _python_files(*patterns):
    return [f for p in patterns for f in glob.glob(os.path.join(ROOT, p), recursive=True)]


def test_no_sys_path_edits_or_script_loading():
    """Scripts are thin CLIs over the package: nothing edits sys.path or loads a script file as a module."""
    offenders = []
    for path in _python_files("stmask_d2/**/*.py", "tools/*.py", "demo/*.py", "datasets/*.py", "tests/*.py",
                              "train_net.py"):
        tree = ast.parse(open(path).read())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr == "path" and getattr(node.value, "id", "") == "sys":
                offenders.append(f"{os.path.relpath(path, ROOT)}:{node.lineno} sys.path")
            if isinstance(node, ast.Attribute) and node.attr == "spec_from_file_location":
                rel = os.path.relpath(path, ROOT)
                if rel != "tests/test_backbone.py":  # re-imports a Detectron2 module, not a script
                    offenders.append(f"{rel}:{node.lineno} spec_from_file_location")
    # Python embedded in the shell scripts (heredocs) too: an import of a script's name breaks when it is thin
    for path in _python_files("tools/*.sh", ".ci/*", "Makefile"):
        for n, line in enumerate(open(path), 1):
            if "sys.path" in line or "from make_synthetic_vis" in line or "from prepare_ytvis_split" in line:
                offenders.append(f"{os.path.relpath(path, ROOT)}:{n} {line.strip()}")
    assert offenders == []


def test_scripts_are_thin():
    """Every entry-point script defines nothing itself: it imports its main from the package."""
    for path in _python_files("tools/*.py", "demo/*.py", "datasets/*.py", "train_net.py"):
        tree = ast.parse(open(path).read())
        defs = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
        imports = [n.module for n in tree.body if isinstance(n, ast.ImportFrom)]
        assert defs == [], (path, defs)
        assert any(m and m.startswith("stmask_d2.") for m in imports), path
