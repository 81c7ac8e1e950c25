"""Shared pieces of the benchmark scripts: machine facts, robust statistics, result files.

Every script measures a *ratio against a named limit* (the in-process call, the hand-written
model, the cached dataset...), so noise from other work on the machine mostly cancels: both sides
are measured in the same process, interleaved round by round, after warm-up. A check records the
per-round ratios; its headline is the median ratio and its spread the interquartile range.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

from cnnzoo.files import write_atomic

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

RESULTS_DIR = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # so `python benchmarks/x.py` finds the checkout's packages
    sys.path.insert(0, str(ROOT))

DIRECTIONS = (">=", "<=")


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (platform.processor() is often empty on Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def machine_info() -> dict[str, Any]:
    """Where the numbers came from: platform, CPU, cores, load, TF version and whether TF saw a GPU."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        load = None
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": cpu_model(),
        "cores": usable_cores(),
        "load_average_at_start": load,
        "tensorflow": tf.__version__,
        "gpu_used": bool(gpus),
        "gpus": [g.name for g in gpus],
    }


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in [0, 100]) without numpy, same as numpy's default."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"q must be in [0, 100], got {q!r}")
    s = sorted(values)
    pos = (len(s) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def summarize(values: Iterable[float]) -> dict[str, float]:
    """p50, p99, quartiles, mean and count of a sample."""
    v = [float(x) for x in values]
    return {"n": len(v), "p50": percentile(v, 50), "p99": percentile(v, 99),
            "q1": percentile(v, 25), "q3": percentile(v, 75), "mean": statistics.fmean(v),
            "min": min(v), "max": max(v)}


def check(check_id: str, what: str, *, value: float, limit: float, ratios: Sequence[float],
          target: float, direction: str, unit: str, value_name: str, limit_name: str,
          extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """One measured comparison: `value` (e.g. served p50) against `limit` (e.g. in-process p50).

    `ratios` are the per-round value/limit ratios (their median is the headline, their IQR the
    spread); `direction` ">=" means the ratio must be at least `target`, "<=" at most.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    if not ratios:
        raise ValueError(f"check {check_id}: ratios is empty")
    r = summarize(ratios)
    met = r["p50"] >= target if direction == ">=" else r["p50"] <= target
    return {"id": check_id, "what": what, "value": value, "limit": limit, "unit": unit,
            "value_name": value_name, "limit_name": limit_name,
            "ratio_p50": r["p50"], "ratio_q1": r["q1"], "ratio_q3": r["q3"], "rounds": r["n"],
            "target": target, "direction": direction, "met": bool(met), **(extra or {})}


def fmt(x: float | None, digits: int = 3) -> str:
    if x is None:
        return "-"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def checks_table(checks: Sequence[dict[str, Any]], source: str | None = None) -> str:
    """Markdown table of checks: value vs limit, ratio p50 [IQR], target, verdict."""
    head = ("| check | what | measured | limit | ratio p50 [IQR] | target | met |\n"
            "|---|---|---|---|---|---|---|\n")
    rows = []
    for c in checks:
        cid = f"{c['id']} ({source})" if source else c["id"]
        rows.append(
            f"| {cid} | {c['what']} | {c['value_name']}: {fmt(c['value'])} {c['unit']} | "
            f"{c['limit_name']}: {fmt(c['limit'])} {c['unit']} | "
            f"{c['ratio_p50']:.3f} [{c['ratio_q1']:.3f}, {c['ratio_q3']:.3f}] | "
            + (f"{c['direction']} {c['target']:g} | {verdict(c)} |" if not c.get("informative")
             else "(none) | n/a |"))
    return head + "\n".join(rows) + "\n"


def clearly_met(c: dict[str, Any]) -> bool:
    """The median ratio meets the target and so does the ratio of the measured values: Q1-digits'
    median per-seed ratio was 1.000 while its mean accuracy was 0.979 against doubling's 0.982,
    which is no "met"."""
    if not c["met"]:
        return False
    if not c.get("limit"):
        return True
    whole = c["value"] / c["limit"]
    return whole >= c["target"] if c["direction"] == ">=" else whole <= c["target"]


def verdict(c: dict[str, Any]) -> str:
    """yes / **no** / unclear (the median meets the target, the measured values do not)."""
    if clearly_met(c):
        return "yes"
    if c["met"]:
        return (f"unclear: median ratio {c['ratio_p50']:.3f} meets it, {fmt(c['value'])} / "
                f"{fmt(c['limit'])} = {c['value'] / c['limit']:.3f} does not")
    return "**no**"


def machine_line(m: dict[str, Any]) -> str:
    gpu = ", ".join(m["gpus"]) if m.get("gpu_used") else "no GPU (CPU only)"
    return (f"{m['cpu_model']}, {m['cores']} cores, {gpu}; {m['platform']}, Python {m['python']}, "
            f"TensorFlow {m['tensorflow']}; load average at start {m['load_average_at_start']}")


def write_results(name: str, payload: dict[str, Any], extra_markdown: str = "",
                  results_dir: Path = RESULTS_DIR) -> tuple[Path, Path]:
    """Write <results_dir>/<name>.json and .md (atomically: temp file + rename)."""
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    json_path = results_dir / f"{name}.json"
    md_path = results_dir / f"{name}.md"
    m = payload["machine"]
    md = (f"# {payload['title']}\n\n"
          f"{'Quick run (--quick): indicative only. ' if payload['quick'] else ''}"
          f"Measured {payload['finished']} in {payload['duration_s']:.0f} s on: {machine_line(m)}.\n\n"
          f"{payload.get('method', '')}\n\n"
          + checks_table(payload["checks"]) + ("\n" + extra_markdown if extra_markdown else ""))
    for path, text in ((json_path, json.dumps(payload, indent=2, sort_keys=True) + "\n"), (md_path, md)):
        write_atomic(path, text)
    return json_path, md_path


class Run:
    """Context of one benchmark run: parses --quick, times the run, collects checks, writes files."""

    def __init__(self, name: str, title: str, method: str, argv: Sequence[str] | None = None,
                 parser: argparse.ArgumentParser | None = None) -> None:
        self.parser = parser or argparse.ArgumentParser(description=title)
        self.parser.add_argument("--quick", action="store_true",
                                 help="tiny sizes and few rounds: checks the script, numbers are rough")
        self.parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR,
                                 help=f"where <name>.json/.md go (default {RESULTS_DIR})")
        self.args = self.parser.parse_args(argv)
        self.name, self.title, self.method = name, title, method
        self.quick = bool(self.args.quick)
        self.checks: list[dict[str, Any]] = []
        self.details: dict[str, Any] = {}
        self.started = time.time()
        self.machine = machine_info()

    def add(self, c: dict[str, Any]) -> dict[str, Any]:
        self.checks.append(c)
        print(f"[{self.name}] {c['id']}: {c['what']}: ratio p50 {c['ratio_p50']:.3f} "
              f"[IQR {c['ratio_q1']:.3f}-{c['ratio_q3']:.3f}] target {c['direction']} {c['target']:g} "
              f"-> {'met' if c['met'] else 'MISSED'}", flush=True)
        return c

    def finish(self, extra_markdown: str = "") -> tuple[Path, Path]:
        now = time.time()
        payload = {"name": self.name, "title": self.title, "method": self.method, "quick": self.quick,
                   "started": _iso(self.started), "finished": _iso(now),
                   "duration_s": now - self.started, "machine": self.machine,
                   "checks": self.checks, "details": self.details}
        payload["extra_markdown"] = extra_markdown
        paths = write_results(self.name, payload, extra_markdown, self.args.results_dir)
        print(f"[{self.name}] wrote {paths[0]} and {paths[1]}", flush=True)
        return paths


def _iso(t: float) -> str:
    return _dt.datetime.fromtimestamp(t, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
