"""References from the code to the method notes stay valid: they point into docs/ (not to files outside the
repository), and every cited section ("docs/METHOD.md §9", "§12 item 10", "docs/YTVIS_FORMAT.md §4.2", "RC5") exists."""
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SKIP_DIRS = {".git", ".venv", "output", "build", "__pycache__", ".pytest_cache"}
EXTENSIONS = (".py", ".md", ".yaml", ".yml", ".sh", ".txt", ".ini", ".cfg")


def _files():
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS and not d.endswith(".egg-info")]
        for name in filenames:
            if name.endswith(EXTENSIONS) or name == "Makefile":
                path = os.path.join(dirpath, name)
                with open(path, encoding="utf-8", errors="replace") as f:
                    yield os.path.relpath(path, ROOT), f.read()


def _headings(doc):
    with open(os.path.join(ROOT, "docs", doc), encoding="utf-8") as f:
        text = f.read()
    return text, set(re.findall(r"^## (\d+(?:\.\d+)?)\.? ", text, re.M))


def test_no_reference_to_notes_outside_the_repository():
    bad = []
    for rel, text in _files():
        if rel == os.path.join("tests", "test_docs_references.py"):
            continue
        for n, line in enumerate(text.splitlines(), 1):
            if "STMASK_SPEC" in line or re.search(r"(?<!docs/)YTVIS_FORMAT\.md", line):
                bad.append(f"{rel}:{n}: {line.strip()}")
    assert not bad, "cite docs/METHOD.md or docs/YTVIS_FORMAT.md instead:\n" + "\n".join(bad)


def test_cited_sections_exist():
    method, method_sections = _headings("METHOD.md")
    _, format_sections = _headings("YTVIS_FORMAT.md")
    section12 = method[method.index("\n## 12."):method.index("\n## 13.")]
    items12 = set(re.findall(r"^(\d+)\. ", section12, re.M))
    cases = set(re.findall(r"\*\*RC(\d+)\b", method))
    bad = []
    for rel, text in _files():
        if rel.startswith("docs" + os.sep) or rel == os.path.join("tests", "test_docs_references.py"):
            continue
        for n, line in enumerate(text.splitlines(), 1):
            for doc, cited in re.findall(r"docs/(METHOD|YTVIS_FORMAT)\.md((?:[ ,;]*§ ?\d+(?:\.\d+)?)*)", line):
                sections = re.findall(r"§ ?(\d+(?:\.\d+)?)", cited)
                known = method_sections if doc == "METHOD" else format_sections
                bad += [f"{rel}:{n}: {doc}.md §{s}" for s in sections if s not in known]
            if "docs/METHOD.md" in line:
                bad += [f"{rel}:{n}: §12 item {k}" for k in re.findall(r"§12 item (\d+)", line) if k not in items12]
            if rel.startswith("tests"):
                bad += [f"{rel}:{n}: RC{k}" for k in re.findall(r"\bRC(\d+)\b", line) if k not in cases]
    assert not bad, "cited sections missing from docs/:\n" + "\n".join(bad)
