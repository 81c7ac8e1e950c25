"""The user docs say only what is true and current: generated index pages match their result
files, every relative link resolves, every file and module path they name exists, every picture
under docs/ is shown somewhere, the curl examples send an image the committed example model
accepts, and no working notes are left in."""
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
# README.md and the pages it links to that explain the project to a newcomer.
PAGES = ["README.md", "zoo/README.md", "tuning/README.md", "saved_models/README.md",
         "serving/README.md", "deploy/README.md", "benchmarks/README.md", "benchmarks/results/README.md",
         "docs/architecture.md", "docs/findings.md"]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def _pages() -> list[Path]:
    return [ROOT / p for p in PAGES if (ROOT / p).is_file()]


def test_results_index_is_what_the_script_generates():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import run_all
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    results = ROOT / "benchmarks" / "results"
    timing = json.loads((results / "run_all.json").read_text())
    expected = run_all.readme(run_all.load_results(results), timing)
    assert (results / "README.md").read_text(encoding="utf-8") == expected, (
        "benchmarks/results/README.md is stale: run python benchmarks/run_all.py --readme-only")


@pytest.mark.parametrize("page", PAGES)
def test_relative_links_resolve(page):
    path = ROOT / page
    missing = [target for target in LINK.findall(path.read_text(encoding="utf-8"))
               if "://" not in target and not (path.parent / target).exists()]
    assert not missing, f"{page} links to files that do not exist: {missing}"


FOLDERS = ("cnnzoo", "zoo", "tuning", "serving", "tests", "benchmarks", "scripts", "deploy", "docs",
           "saved_models")
FILE_PATH = re.compile(r"(?<![\w/.<-])((?:" + "|".join(FOLDERS) + r")/[\w./-]*[\w])")
MODULE_PATH = re.compile(r"(?<![\w/.-])((?:cnnzoo|zoo|tuning|serving)(?:\.[A-Za-z_]\w*)+)")


def _defines(module_file: Path, name: str) -> bool:
    """Whether a module's source defines (or lazily exports) a top-level name."""
    text = module_file.read_text(encoding="utf-8")
    return bool(re.search(rf"^(?:def|class|async def) {name}\b|^{name}\s*[:=]|\"{name}\"", text, re.M))


def _module_path_exists(dotted: str) -> bool:
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):  # the longest prefix that is a module or package
        base = ROOT.joinpath(*parts[:i])
        found = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
        if found.is_file():
            return i == len(parts) or _defines(found, parts[i])
    return False


@pytest.mark.parametrize("page", PAGES)
def test_every_file_and_module_path_named_exists(page):
    """A path a page names in its text (not only in links), such as `tuning/comparisons/stats.py`
    or `serving.exporter.model_server_config.update_model_config`, exists: files moved with the
    layout, and a stale path would send a reader to nothing."""
    text = (ROOT / page).read_text(encoding="utf-8")
    files = sorted({p for p in FILE_PATH.findall(text) if not (ROOT / p).exists()
                    and not any(ROOT.glob(p + "*"))})  # a prefix such as tests/serving/server/test_reliability_
    modules = sorted({m for m in MODULE_PATH.findall(text) if m.rpartition(".")[2] not in ("md", "py", "png", "json")
                      and not _module_path_exists(m)})
    assert (files, modules) == ([], []), f"{page} names paths that do not exist"


def test_every_picture_under_docs_is_shown_somewhere():
    text = "\n".join(p.read_text(encoding="utf-8") for p in ROOT.rglob("*.md")
                     if ".venv" not in p.parts and "runs" not in p.parts)
    unused = [str(p.relative_to(ROOT)) for p in (ROOT / "docs").rglob("*.png")
              if str(p.relative_to(ROOT)) not in text]
    assert not unused, f"pictures nobody references: {unused}"


@pytest.mark.parametrize("page", ["README.md", "deploy/README.md"])
def test_curl_predict_examples_send_an_image_the_example_model_accepts(page):
    info = json.loads((ROOT / "saved_models/digits/1/assets.extra/zoo.json").read_text())
    text = (ROOT / page).read_text(encoding="utf-8")
    bodies = []
    lines = text.replace("\\\n", " ").splitlines()  # shell continuation lines joined
    for line in (x for x in lines if x.startswith("IMAGE=") or (x.startswith("curl") and ":predict" in x)):
        python = re.search(r"python -c '([^']*)'", line)
        if python:  # the body is what this one-liner prints
            out = subprocess.run([sys.executable, "-c", python.group(1)], capture_output=True,
                                 text=True, check=True).stdout
            bodies.append(json.loads(out))
        elif re.search(r" -d '", line):
            words = shlex.split(line, comments=True)
            bodies.append(json.loads(words[words.index("-d") + 1]))
    assert bodies, f"no predict example found in {page}"
    for body in bodies:
        shape = np.asarray(body["instances"], dtype=np.float32).shape
        assert shape[1:] == tuple(info["input_shape"]), (page, shape)


def test_no_working_notes_in_the_user_docs():
    notes = re.compile(r"\(Q\d\)|\bToday's\b|this time\b|the issue\b|issue's", re.I)
    found = [(p.name, m.group(0)) for p in _pages() for m in notes.finditer(p.read_text("utf-8"))]
    assert not found, found


def test_the_front_page_is_short_and_links_to_the_tables():
    """README.md was 245-253 lines: the front page keeps the pitch, the two commands, the answer
    (figure and a few lines) and the tours; the studies' tables live on docs/findings.md."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 220
    assert "](docs/findings.md)" in readme and "| rule | 20k params |" not in readme
    assert "| rule | 20k params |" in (ROOT / "docs" / "findings.md").read_text(encoding="utf-8")
