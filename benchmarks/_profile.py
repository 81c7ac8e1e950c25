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


# Where a serving request's CPU goes, for S2's "server CPU per image vs its floor": each sample is
# charged to the first category that one of its frames matches, innermost frame first (so the
# model run inside a batch's merge counts as the model, not as the merge). Patterns are substrings
# of the shortened frames ('pkg/mod.py:function').
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("model run (TensorFlow)", ("tensorflow/python/eager/", "runtime.py:_call_flat", "runtime.py:fast")),
    ("tensor conversion", ("convert_to_tensor", "tensors.py:from_numpy", "tensors.py:to_numpy",
                           "numpy_ops", ":numpy", "make_tensor_proto", "frombuffer")),
    ("proto parsing and serializing", ("google/protobuf", "FromString", "SerializeToString", "ParseFromString",
                                       "grpc_host.py:work")),
    ("batch merge and split", ("batching.py:_run_merged", "batching.py:_execute", "concatenate", "repeat")),
    ("locking and waiting", ("threading.py", "batching.py:_wait", "batching.py:_signal", "batching.py:_take",
                             "acquire", "queue.py")),
    ("gRPC (grpcio, its event loop)", ("grpc/", "cygrpc", "asyncio/")),
    ("service and validation", ("service.py", "runtime.py", "tfserving_grpc.py", "deadlines.py")),
)


def categorize(raw: Path) -> dict[str, float]:
    """Share of non-idle samples per CATEGORIES entry ('other' for the rest), from a py-spy raw file."""
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    for line in Path(raw).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [_short(f) for f in stack.split(";") if not f.startswith(("thread (", "process "))]
        if not frames:
            continue
        n = int(count)
        total += n
        counts[next((name for f in reversed(frames) for name, patterns in CATEGORIES
                     if any(p in f for p in patterns)), "other")] += n
    return {name: round(counts[name] / total, 3) if total else 0.0
            for name in [c for c, _ in CATEGORIES] + ["other"]}


def report(summary: dict[str, Any], title: str, categories: dict[str, float] | None = None) -> str:
    lines = [f"### {title} ({summary['samples']} samples)", ""]
    if categories:
        lines += ["| share of samples | where |", "|---|---|"]
        lines += [f"| {s:.1%} | {name} |" for name, s in categories.items()]
        lines.append("")
    lines += ["| inclusive share | function |", "|---|---|"]
    lines += [f"| {s:.1%} | `{f}` |" for f, s in summary["inclusive"]]
    lines += ["", "| self share | function |", "|---|---|"]
    lines += [f"| {s:.1%} | `{f}` |" for f, s in summary["self"]]
    return "\n".join(lines) + "\n"
