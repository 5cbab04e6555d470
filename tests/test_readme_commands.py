"""The commands and file references of the READMEs still work, so that none can rot.

Every command in a code block or an inline code span of README.md and datasets/README.md that starts with
``python``, ``python3``, ``make`` or ``bash`` (after optional ``VAR=value`` prefixes) is checked in a cheap form:

* ``python SCRIPT ...`` / ``python -m MODULE ...``: the script exists, ``--help`` exits 0, and every ``--flag``
  the README uses appears in that help. A few data-only commands (``CHEAP_RUNS``) are instead run for real (in this
  interpreter, as ``__main__``) on a tiny input with the README's own flags (argparse then rejects any flag that does not exist), because ``--help``
  would prove little there. Commands that need real data, a GPU or a long time are checked by ``--help`` only.
* ``make TARGET``: ``make -n TARGET`` (a dry run) exits 0 with the README's variables.
* ``bash SCRIPT``: the script exists and parses (``bash -n``).
* Config keys written in the commands or inline (``SOLVER.BASE_LR``, ``MODEL.STMASK.TRACKER.MATCH_MODE``) exist.
* Repository paths written inline (``tools/benchmark.py``, ``configs/youtubevis_2019/STMask_R{50,101}_DCN_ada.yaml``,
  ``configs/ablations/table1_*``) exist.

New README commands are picked up automatically; nothing here lists today's commands.
"""
import concurrent.futures
import glob
import itertools
import json
import os
import re
import shlex
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = ["README.md", os.path.join("datasets", "README.md")]
PY = sys.executable
LAUNCHERS = ("python", "python3", "make", "bash")
HELP_TIMEOUT = 180


# ------------------------------------------------------------------------------------------------------------------
# extraction
# ------------------------------------------------------------------------------------------------------------------
def _read(doc):
    with open(os.path.join(ROOT, doc), encoding="utf-8") as f:
        return f.read()


def _parse(text):
    """(code lines, inline spans) of a markdown text.

    code lines: (line number, text) of shell-like fenced code blocks, one logical line per entry (backslash
    continuations joined); inline spans: (line number, text) of the `code spans` outside fences (a span may wrap
    onto the next line)."""
    code, prose, fence, lang, buf, buf_line = [], [], False, "", "", 0
    for n, line in enumerate(text.splitlines(), 1):
        m = re.match(r"^\s*```(\w*)", line)
        if m:
            fence, lang = (not fence), m.group(1).lower()
            prose.append((n, ""))
            continue
        if not fence:
            prose.append((n, line))
            continue
        if lang not in ("", "bash", "sh", "shell", "console", "text"):
            continue
        line = re.sub(r"^\s*\$\s+", "", line)
        if not buf:
            buf_line = n
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        code.append((buf_line, buf + line))
        buf = ""
    spans, para, start = [], [], 0
    for n, line in prose + [(len(prose) + 1, "")]:
        if line.strip():
            if not para:
                start = n
            para.append(line)
            continue
        joined = "\n".join(para)
        for m in re.finditer(r"`([^`]+)`", joined):
            spans.append((start + joined.count("\n", 0, m.start()), " ".join(m.group(1).split())))
        para = []
    return code, spans


def _snippets(text):
    code, spans = _parse(text)
    return code + spans


def _strip_comment(cmd):
    return re.sub(r"\s+#(\s.*)?$", "", cmd).strip()


def _split(cmd):
    """(env dict, argv) of a command line; None when it is not a command we check."""
    cmd = _strip_comment(cmd)
    try:
        words = shlex.split(cmd)
    except ValueError:
        return None
    env = {}
    while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
        k, v = words.pop(0).split("=", 1)
        env[k] = v
    if not words or words[0] not in LAUNCHERS:
        return None
    if words[0].startswith("python") and len(words) > 1 and words[1] == "-c":
        return None  # inline Python snippets are not commands of this repository
    return env, words


def readme_commands():
    cmds = []
    for doc in DOCS:
        for line, snippet in _snippets(_read(doc)):
            parsed = _split(snippet)
            if parsed is not None:
                cmds.append(pytest.param(doc, line, _strip_comment(snippet), parsed[0], parsed[1],
                                         id=f"{doc}:{line}:{' '.join(parsed[1][:2])}"))
    return cmds


COMMANDS = readme_commands()


def _target(argv):
    """What a python command runs: ("script", path) or ("module", name)."""
    if argv[1] == "-m":
        return ("module", argv[2])
    return ("script", argv[1])


def _flags(cmd):
    return sorted(set(re.findall(r"(?<![\w-])(--[A-Za-z][\w-]*)", cmd)))


def _without_notation(argv):
    """argv with README notation resolved: ``[--hota]`` -> ``--hota``, ``cpu|cuda`` -> ``cpu``."""
    out = []
    for w in argv:
        w = w.strip("[]")
        if w:
            out.append(w.split("|")[0] if re.match(r"^[\w.-]+\|[\w.|-]+$", w) else w)
    return out


def _run(argv, env=None, timeout=HELP_TIMEOUT, cwd=ROOT):
    # this checkout's stmask_d2 (the scripts import the package; an editable install may point elsewhere)
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), **(env or {})}
    return subprocess.run(argv, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


def _run_in_process(argv, env=None):
    """``python SCRIPT ARGS`` / ``python -m MODULE ARGS`` (``argv`` without the interpreter) run in this interpreter
    with ``runpy`` as ``__main__`` (cwd: the repository; ``env`` set for the call): the code path of the process
    without the cost of starting one. Returns an object with ``returncode``, ``stdout`` and ``stderr``."""
    import contextlib
    import io
    import runpy
    import types
    import warnings

    out, err = io.StringIO(), io.StringIO()
    old_argv, old_cwd = sys.argv, os.getcwd()
    old_env = {k: os.environ.get(k) for k in (env or {})}
    code = 0
    try:
        os.environ.update(env or {})
        os.chdir(ROOT)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
            # runpy warns when the module was imported before (by an earlier test); it is run afresh all the same
            warnings.filterwarnings("ignore", message=".*found in sys.modules", category=RuntimeWarning)
            try:
                if argv[0] == "-m":
                    sys.argv = [argv[1], *argv[2:]]
                    runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
                else:
                    sys.argv = list(argv)
                    runpy.run_path(os.path.join(ROOT, argv[0]), run_name="__main__")
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = old_argv
        os.chdir(old_cwd)
        for k, v in old_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return types.SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())


# ------------------------------------------------------------------------------------------------------------------
# cheap real runs of data-only commands (in this interpreter: see _run_in_process)
# ------------------------------------------------------------------------------------------------------------------
def _opt(argv, flag, value):
    """argv with ``flag value`` set (replaced when present, appended otherwise)."""
    argv = list(argv)
    if flag in argv:
        argv[argv.index(flag) + 1] = value
    else:
        argv += [flag, value]
    return argv


def _cheap_make_synthetic(argv, tiny):
    argv = _opt(argv, "--out", os.path.join(tiny["tmp"], "synthetic_readme"))
    for flag, value in (("--videos", "2"), ("--frames", "2"), ("--height", "32"), ("--width", "48")):
        argv = _opt(argv, flag, value)

    def check(proc):
        with open(os.path.join(tiny["tmp"], "synthetic_readme", "train.json")) as f:
            assert len(json.load(f)["videos"]) == 2

    return argv, check


def _cheap_split(argv, tiny):
    out_dir = os.path.join(tiny["tmp"], "split_readme")
    argv = [tiny["train_json"] if w.endswith(".json") else w for w in argv]
    argv = _opt(argv, "--out-dir", out_dir)

    def check(proc):
        for name in ("train_sub.json", "valid_sub.json"):
            assert os.path.isfile(os.path.join(out_dir, name)), proc.stdout + proc.stderr

    return argv, check


def _cheap_evaluate(argv, tiny):
    argv = _opt(_opt(argv, "--gt", tiny["train_json"]), "--results", tiny["perfect_results"])

    def check(proc):
        metrics = json.loads(proc.stdout.strip().splitlines()[-1])
        assert metrics["AP"] == pytest.approx(1.0), metrics

    return argv, check


# key: ("script", path) or ("module", name); value: f(README argv, tiny fixture) -> (argv to run, check(proc))
CHEAP_RUNS = {
    ("script", "datasets/make_synthetic_vis.py"): _cheap_make_synthetic,
    ("script", "datasets/prepare_ytvis_split.py"): _cheap_split,
    ("module", "stmask_d2.evaluation"): _cheap_evaluate,
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 3-video synthetic YouTube-VIS set (32x48, compressed RLE) and a results file equal to its ground truth."""
    tmp = str(tmp_path_factory.mktemp("readme"))
    proc = _run_in_process(["datasets/make_synthetic_vis.py", "--out", os.path.join(tmp, "syn"), "--videos", "3",
                            "--frames", "3", "--height", "32", "--width", "48", "--compressed-rle"])
    assert proc.returncode == 0, proc.stderr
    train_json = os.path.join(tmp, "syn", "train.json")
    with open(train_json) as f:
        gt = json.load(f)
    results = [
        {"video_id": a["video_id"], "category_id": a["category_id"], "score": 1.0,
         "segmentations": a["segmentations"]}
        for a in gt["annotations"]
    ]
    perfect = os.path.join(tmp, "perfect_results.json")
    with open(perfect, "w") as f:
        json.dump(results, f)
    return {"tmp": tmp, "train_json": train_json, "perfect_results": perfect}


@pytest.fixture(scope="module")
def help_texts():
    """``--help`` output of every script / module the READMEs run without a cheap real run, computed in parallel
    once: {target: CompletedProcess}."""
    targets = sorted({_target(p.values[4]) for p in COMMANDS if p.values[4][0].startswith("python")
                      and len(p.values[4]) > 1} - set(CHEAP_RUNS))

    def one(target):
        kind, name = target
        if kind == "script" and not os.path.isfile(os.path.join(ROOT, name)):
            return target, None
        argv = [PY, "-m", name, "--help"] if kind == "module" else [PY, name, "--help"]
        return target, _run(argv)

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        return dict(pool.map(one, targets))


# ------------------------------------------------------------------------------------------------------------------
# tests
# ------------------------------------------------------------------------------------------------------------------
def test_readmes_have_commands():
    launchers = {p.values[4][0] for p in COMMANDS}
    assert {"python", "make"} <= launchers, f"command extraction found only {launchers}"
    assert len(COMMANDS) >= 10


@pytest.mark.parametrize("doc,line,cmd,env,argv", COMMANDS)
def test_readme_command(doc, line, cmd, env, argv, help_texts, tiny):
    where = f"{doc}:{line}: {cmd}"
    launcher = argv[0]
    if launcher == "make":
        targets = [w for w in argv[1:] if not w.startswith("-") and "=" not in w]
        variables = [w for w in argv[1:] if "=" in w and not w.startswith("-")]
        proc = _run(["make", "-n", *variables, *targets], env=env, timeout=60)
        assert proc.returncode == 0, f"{where}\n`make -n` failed: {proc.stderr.strip()}"
        return
    if launcher == "bash":
        script = argv[1]
        assert os.path.isfile(os.path.join(ROOT, script)), f"{where}\n{script} does not exist"
        proc = _run(["bash", "-n", script], timeout=30)
        assert proc.returncode == 0, f"{where}\n{proc.stderr}"
        return

    assert len(argv) > 1, f"{where}\nno script"
    target = _target(argv)
    kind, name = target
    if kind == "script":
        assert os.path.isfile(os.path.join(ROOT, name)), f"{where}\n{name} does not exist"
    if target in CHEAP_RUNS:
        run_argv, check = CHEAP_RUNS[target](_without_notation(argv[1:]), tiny)
        proc = _run_in_process(run_argv, env=env)
        assert proc.returncode == 0, f"{where}\nran as {run_argv}: exit {proc.returncode}\n{proc.stderr[-2000:]}"
        check(proc)
        return
    proc = help_texts[target]
    assert proc is not None and proc.returncode == 0, (
        f"{where}\n`{name} --help` exited {proc and proc.returncode}\n{proc and proc.stderr[-2000:]}"
    )
    missing = [f for f in _flags(cmd) if not re.search(rf"(?<![\w-]){re.escape(f)}(?![\w-])", proc.stdout)]
    sub = _subcommand(argv, kind)
    if missing and sub and re.search(rf"(?<![\w-]){re.escape(sub)}(?![\w-])", proc.stdout):
        # a CLI with subcommands (e.g. `python -m stmask_d2.data.convert FORMAT ...`): the flags are the subcommand's
        head = ["-m", name] if kind == "module" else [name]
        sub_proc = _run_in_process([*head, sub, "--help"])
        assert sub_proc.returncode == 0, f"{where}\n`{name} {sub} --help` exited {sub_proc.returncode}"
        missing = [f for f in missing if not re.search(rf"(?<![\w-]){re.escape(f)}(?![\w-])", sub_proc.stdout)]
    assert not missing, f"{where}\nflags not in `{name} --help`: {missing}"


def _subcommand(argv, kind):
    """The first word after the script / module when it looks like a subcommand name (letters, digits, dashes)."""
    rest = argv[3:] if kind == "module" else argv[2:]
    if rest and re.fullmatch(r"[a-z][a-z0-9-]*", rest[0]):
        return rest[0]
    return None


_REPO_DIRS = ("configs/", "tools/", "datasets/", "demo/", "docs/", "stmask_d2/", "tests/")


def _brace_expand(s):
    m = re.search(r"\{([^{}]*)\}", s)
    if not m:
        return [s]
    return list(itertools.chain.from_iterable(
        _brace_expand(s[: m.start()] + alt + s[m.end():]) for alt in m.group(1).split(",")
    ))


def _doc_paths():
    for doc in DOCS:
        text = _read(doc)
        spans = _parse(text)[1] + [
            (n, target) for n, line in enumerate(text.splitlines(), 1) for target in re.findall(r"\]\(([^)\s#]+)\)", line)
        ]
        for n, span in spans:
            for word in span.split():
                word = word.strip("'\"(),")
                if "..." in word or "<" in word or "$" in word or "://" in word:
                    continue
                code_file = re.search(r"\.(py|yaml|md|sh)$", word)
                if (word.startswith(_REPO_DIRS) and (code_file or "*" in word)) or word in ("Makefile", "setup.py"):
                    yield doc, n, word


def test_readme_paths_exist():
    missing = []
    for doc, n, word in _doc_paths():
        bases = {ROOT, os.path.join(ROOT, os.path.dirname(doc))}
        if not any(glob.glob(os.path.join(base, p)) for base in bases for p in _brace_expand(word)):
            missing.append(f"{doc}:{n}: {word}")
    assert not missing, "README files name paths that do not exist:\n" + "\n".join(missing)


def test_readme_config_keys_exist():
    from detectron2.config import get_cfg

    from stmask_d2.config import add_stmask_config

    cfg = get_cfg()
    add_stmask_config(cfg)
    roots = set(cfg.keys())
    missing = []
    for doc in DOCS:
        for n, snippet in _snippets(_read(doc)):
            for key in re.findall(r"(?<![\w.])([A-Z][A-Z0-9_]*(?:\.[A-Z0-9_]+)+)(?![\w.])", snippet):
                if key.split(".")[0] not in roots:
                    continue
                node = cfg
                for part in key.split("."):
                    if not hasattr(node, "keys") or part not in node:
                        missing.append(f"{doc}:{n}: {key}")
                        break
                    node = node[part]
    assert not missing, "README files name config keys that do not exist:\n" + "\n".join(sorted(set(missing)))
