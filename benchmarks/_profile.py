"""py-spy sampling of a server process while a benchmark drives it, and a summary of the stacks.

py-spy is a developer tool, not a project dependency: `.venv/bin/pip install py-spy`. Profiles are
"raw" (collapsed stacks: `frame;frame;... count` per line, root first), summarised as the share of
non-idle samples spent inside each function (inclusive) and at the top of the stack (self).
"""
from __future__ import annotations

import collections
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def py_spy() -> str | None:
    exe = Path(sys.executable).with_name("py-spy")
    return str(exe) if exe.exists() else shutil.which("py-spy")


class Recorder:
    """`with Recorder(pid, out): ...` samples `pid` (all threads, idle ones left out) meanwhile."""

    def __init__(self, pid: int, out: Path, rate: int = 200) -> None:
        exe = py_spy()
        if exe is None:
            raise RuntimeError("py-spy is not installed: .venv/bin/pip install py-spy")
        self.out = Path(out)
        self.argv = [exe, "record", "--pid", str(pid), "--format", "raw", "--rate", str(rate),
                     "--output", str(self.out), "--nonblocking", "--threads"]
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "Recorder":
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(1.0)  # attach before the measured work starts
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _short(frame: str) -> str:
    """'fn (/long/path/site-packages/pkg/mod.py:12)' -> 'pkg/mod.py:fn' (line dropped, merges callers)."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/work/main/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{path}:{name}"


def summarize(raw: Path, top: int = 25) -> dict[str, Any]:
    """Inclusive and self shares of samples per function from a py-spy raw file."""
    inclusive: collections.Counter[str] = collections.Counter()
    self_: collections.Counter[str] = collections.Counter()
    total = 0
    for line in Path(raw).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_short(f) for f in stack.split(";") if not f.startswith(("thread (", "process "))]
        if not frames:
            continue
        total += n
        for f in set(frames):
            inclusive[f] += n
        self_[frames[-1]] += n
    share = lambda c: [(f, round(v / total, 3)) for f, v in c.most_common(top)]  # noqa: E731
    return {"samples": total, "inclusive": share(inclusive), "self": share(self_)}


def report(summary: dict[str, Any], title: str) -> str:
    lines = [f"### {title} ({summary['samples']} samples)", "", "| inclusive share | function |",
             "|---|---|"]
    lines += [f"| {s:.1%} | `{f}` |" for f, s in summary["inclusive"]]
    lines += ["", "| self share | function |", "|---|---|"]
    lines += [f"| {s:.1%} | `{f}` |" for f, s in summary["self"]]
    return "\n".join(lines) + "\n"
