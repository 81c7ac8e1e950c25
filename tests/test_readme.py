"""Every Python and shell snippet of README.md (and zoo/README.md, serving/README.md) runs, in order, as written.

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
@pytest.mark.parametrize("readme", ["README.md", "zoo/README.md", "serving/README.md"])
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
    if readme == "README.md":
        _the_slim_example_pruned(ROOT / "runs" / "readme-slim")


def _the_slim_example_pruned(project_dir: Path) -> None:
    """README's `zoo-tune --mode slim` example (3 epochs) must learn a profile with its default
    settings: --epochs is the trial's, the wide training takes the recipe's epochs (--slim-epochs'
    default). Once it learned 32-32-32-32, the wide network's own widths, and presented it as
    learned. Checked here on the tour's own run rather than training the example a second time."""
    from tuning.searches.slim_profile import pruning_note, read_slim

    result = read_slim(project_dir)
    assert result is not None, f"the slim example left no slim.json in {project_dir}"
    assert result.wide == [32] * 4 and result.epochs > 3, result
    assert pruning_note(result) is None, result.profile
