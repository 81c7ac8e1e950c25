"""Every Python and shell snippet of README.md (and zoo/README.md) runs, in order, as written.

A snippet is skipped only when the line after its closing fence is `<!-- readme-test: skip ... -->`
(the set-up commands themselves). The tours must leave the checkout as they found it: they write
to runs/ (ignored by git), never to the committed example.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^```(python|bash)\n(.*?)^```\n(<!-- readme-test: skip[^\n]*-->)?", re.S | re.M)


def snippets(path: Path) -> list[tuple[str, str]]:
    return [(lang, code) for lang, code, skip in FENCE.findall(path.read_text(encoding="utf-8"))
            if not skip]


def _git_status() -> str:
    return subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT,
                          capture_output=True, text=True).stdout


def test_the_readmes_have_snippets_to_run():
    assert len(snippets(ROOT / "README.md")) >= 5
    assert any(lang == "bash" and "zoo-serve" in code for lang, code in snippets(ROOT / "README.md"))


@pytest.mark.slow
@pytest.mark.parametrize("readme", ["README.md", "zoo/README.md"])
def test_every_snippet_runs_in_order(readme, subprocess_env):
    env = dict(subprocess_env, PATH=f"{Path(sys.executable).parent}{os.pathsep}{subprocess_env['PATH']}")
    before = _git_status()
    for i, (lang, code) in enumerate(snippets(ROOT / readme)):
        cmd = ([sys.executable, "-c", code] if lang == "python"
               else ["bash", "-e", "-o", "pipefail", "-c", code])
        out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, (f"{readme} snippet {i} ({lang}) failed:\n{code}\n--- stdout\n"
                                     f"{out.stdout[-3000:]}\n--- stderr\n{out.stderr[-3000:]}")
    assert _git_status() == before, "a README tour changed the checkout"
