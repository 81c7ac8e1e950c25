"""Where zoo-serve's start-up goes, for the committed 4,466-parameter digits model.

    python benchmarks/bench_serve_startup.py [--rounds N] [--baseline REF] [--quick]

Two kinds of fresh process per round. `ready`: the installed `zoo-serve` console script, timed
from spawn to its first AVAILABLE answer on the REST status route (bench_startup's serve-ready
case). `phases`: the same server started through a probe that stamps the wall clock as the
interpreter starts, after the CLI's imports and after TensorFlow's import, then runs the CLI's
own main; the server's log lines stamp the rest (model load, warm-up, gRPC and REST binds) and the
first AVAILABLE answer ends it. With `--baseline REF` the same runs are made on `git archive REF`
too, alternating sides within each round and flipping the order every round (and which kind of
run goes first), so the machine's background load and its page cache fall on both. The load
average and the CPU share of lower-priority (nice > 0) processes, such as a study training in the
background, are recorded with every run.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common
import bench_startup

from cnnzoo.net import free_ports

# The probe: the CLI's main as the console script runs it, with stamps between its phases.
PROBE = """
import json, os, sys, time
stamps = {"interpreter": time.time()}
from serving.server import cli
stamps["cli_imports"] = time.time()
from cnnzoo.env import setup_tensorflow
setup_tensorflow()
stamps["tensorflow"] = time.time()
with open(os.environ["ZOO_BENCH_STAMPS"], "w") as f:
    json.dump(stamps, f)
cli.main(sys.argv[1:])
"""
# (phase, what it covers): each phase runs from the previous stamp to its own.
PHASES = [
    ("python", "spawn to the first line of the program (interpreter, site, editable finder)"),
    ("cli_imports", "importing serving.server.cli (argparse, options, grpc, config files)"),
    ("tensorflow", "`import tensorflow` (muted) and the device probe"),
    ("server_setup", "server modules, threads, devices, model manager, up to 'Loading servable'"),
    ("savedmodel_load", "reading the version: signatures and tf.saved_model.load"),
    ("warmup", "replaying assets.extra/tf_serving_warmup_requests"),
    ("grpc_start", "gRPC front ends imported and bound"),
    ("rest_start", "REST front end (aiohttp) imported and bound"),
    ("first_answer", "until the status route first answers AVAILABLE (20 ms polls)"),
]
LOG_MARKS = {
    "load_start": re.compile(r"Loading servable version \{name: digits"),
    "loaded": re.compile(r"Successfully loaded servable version \{name: digits"),
    "warmup": re.compile(r"Finished reading warmup data .* Elapsed time \(microseconds\): (\d+)"),
    "grpc": re.compile(r"Running gRPC ModelServer"),
    "rest": re.compile(r"Exporting HTTP/REST API"),
}
TIMEOUT_S = 180


def background_load() -> dict[str, Any]:
    """The load average and the CPU share of processes at nice > 0 (ps %CPU: percent of one core
    over each process's life, so a long-running study shows its steady share)."""
    out = subprocess.run(["ps", "-eo", "ni=,pcpu="], capture_output=True, text=True).stdout
    niced = 0.0
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].lstrip("-").isdigit() and int(parts[0]) > 0:
            niced += float(parts[1])
    return {"load_average": [round(v, 2) for v in os.getloadavg()], "niced_cpu_percent": round(niced)}


def _log_time(line: str) -> float:
    # logging's default asctime: local time with milliseconds
    return dt.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()


def phases_once(env: dict[str, str], cwd: Path, work: Path) -> dict[str, float]:
    """Seconds per phase of one probed start-up (see PHASES), plus `total`."""
    grpc_port, rest_port = free_ports(2)
    stamps_path, log_path = work / "stamps.json", work / "server.log"
    stamps_path.unlink(missing_ok=True)
    argv = ["--port", str(grpc_port), "--rest_api_port", str(rest_port), "--model_name", "digits",
            "--model_base_path", str(bench_startup.DIGITS), "--file_system_poll_wait_seconds", "0"]
    with open(log_path, "w") as log:
        spawn, start = time.time(), time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", PROBE, *argv], cwd=cwd, stdout=subprocess.DEVNULL,
                                stderr=log, env=dict(env, ZOO_BENCH_STAMPS=str(stamps_path)))
        try:
            ready = bench_startup.wait_available(proc, f"http://127.0.0.1:{rest_port}/v1/models/digits",
                                                 start, TIMEOUT_S)
        finally:
            bench_startup.stop(proc)
    stamps = json.loads(stamps_path.read_text())
    marks: dict[str, float] = {}
    warmup_s = 0.0
    for line in log_path.read_text().splitlines():
        for name, pattern in LOG_MARKS.items():
            m = pattern.search(line)
            if m and name not in marks:
                marks[name] = _log_time(line)
                if name == "warmup":
                    warmup_s = int(m.group(1)) / 1e6
    missing = [n for n in ("load_start", "loaded", "grpc", "rest") if n not in marks]
    if missing:
        raise RuntimeError(f"the server log lacks {missing}: {log_path.read_text()[-1500:]}")
    # the log's clock has millisecond steps: keep phases from going negative by rounding
    ends = {"python": stamps["interpreter"], "cli_imports": stamps["cli_imports"],
            "tensorflow": stamps["tensorflow"], "server_setup": marks["load_start"],
            "warmup": marks["loaded"], "grpc_start": marks["grpc"], "rest_start": marks["rest"],
            "first_answer": ready}
    ends["savedmodel_load"] = ends["warmup"] - warmup_s
    out, previous = {}, spawn
    for phase, _ in PHASES:
        out[phase] = max(0.0, ends[phase] - previous)
        previous = max(previous, ends[phase])
    out["total"] = ready - spawn
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="where zoo-serve's start-up goes")
    parser.add_argument("--rounds", type=int, default=7, help="rounds (default 7; --quick 1)")
    parser.add_argument("--baseline", default=None, help="git ref to compare with (default: none)")
    parser.add_argument("--name", default="serve_startup", help="results file name (default serve_startup)")
    run = _common.Run("serve_startup", "zoo-serve start-up: where the time goes",
                      __doc__.split("\n\n", 2)[2].strip(), argv, parser)
    args = run.args
    run.name = args.name
    rounds = 1 if run.quick else args.rounds
    if rounds < 1:
        parser.error("--rounds must be >= 1")
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=_common.ROOT, capture_output=True,
                          text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                cwd=_common.ROOT, capture_output=True, text=True).stdout.strip())
    sides_order = ["now"] if args.baseline is None else ["baseline", "now"]
    samples: dict[str, dict[str, list[Any]]] = {s: {"ready": [], "phases": [], "load": []}
                                               for s in sides_order}
    with tempfile.TemporaryDirectory(prefix="bench-serve-startup-") as tmp:
        work = Path(tmp)
        sides = {"now": (bench_startup.env_for(_common.ROOT), _common.ROOT)}
        base_commit = None
        if args.baseline is not None:
            (work / "baseline").mkdir()
            base_commit = bench_startup.baseline_tree(args.baseline, work / "baseline")
            sides["baseline"] = (bench_startup.env_for(work / "baseline"), work / "baseline")
        for r in range(rounds):
            order = sides_order if r % 2 == 0 else sides_order[::-1]
            for side in order:
                env, cwd = sides[side]
                samples[side]["load"].append(background_load())
                # which kind runs first alternates too: the second finds TensorFlow's files cached
                if r % 2 == 0:
                    samples[side]["ready"].append(bench_startup.serve_ready(env, cwd))
                samples[side]["phases"].append(phases_once(env, cwd, work))
                if r % 2 == 1:
                    samples[side]["ready"].append(bench_startup.serve_ready(env, cwd))
            print(f"[serve_startup] round {r + 1}/{rounds}: " + ", ".join(
                f"{s} ready {samples[s]['ready'][-1]:.2f} s (tensorflow "
                f"{samples[s]['phases'][-1]['tensorflow']:.2f} s)" for s in sides_order), flush=True)
    end_load = background_load()
    summary: dict[str, Any] = {}
    for side in sides_order:
        summary[side] = {"ready": _common.summarize(samples[side]["ready"]),
                         "phases": {p: _common.summarize([x[p] for x in samples[side]["phases"]])
                                    for p, _ in [*PHASES, ("total", "")]}}
        not_tf = [x["total"] - x["tensorflow"] for x in samples[side]["phases"]]
        summary[side]["not_tensorflow"] = _common.summarize(not_tf)
    now_ready = samples["now"]["ready"]
    if base_commit is None:
        run.add(_common.check("S-serve-ready", "zoo-serve spawn to AVAILABLE (informative)",
                              value=summary["now"]["ready"]["p50"], limit=summary["now"]["ready"]["p50"],
                              ratios=[1.0] * len(now_ready), target=1.0, direction="<=", unit="s",
                              value_name="now", limit_name="now", extra={"informative": True}))
    else:
        base_ready = samples["baseline"]["ready"]
        run.add(_common.check("S-serve-ready", "zoo-serve spawn to AVAILABLE, now vs baseline (informative)",
                              value=summary["now"]["ready"]["p50"], limit=summary["baseline"]["ready"]["p50"],
                              ratios=[n / b for n, b in zip(now_ready, base_ready)], target=1.0,
                              direction="<=", unit="s", value_name="now",
                              limit_name=f"baseline {base_commit[:7]}", extra={"informative": True}))
    run.details.update(samples=samples, summary=summary, rounds=rounds, load_at_end=end_load,
                       now_commit=head + (" (with uncommitted changes)" if dirty else ""),
                       baseline_commit=base_commit)
    run.finish(_markdown(summary, sides_order, samples, end_load, rounds, head, dirty, base_commit))
    return 0


def _cell(s: dict[str, float]) -> str:
    return f"{s['p50']:.2f} [{s['q1']:.2f}-{s['q3']:.2f}]"


def _markdown(summary: dict[str, Any], sides: list[str], samples: dict[str, Any], end_load: dict[str, Any],
              rounds: int, head: str, dirty: bool, base_commit: str | None) -> str:
    names = {"now": f"now ({head}{', with uncommitted changes' if dirty else ''})",
             "baseline": f"baseline ({(base_commit or '')[:7]})"}
    header = " | ".join(names[s] for s in sides)
    lines = [f"{rounds} rounds; seconds, median [interquartile range] over rounds.", "",
             f"| phase | what | {header} |", "|---|---|" + "---|" * len(sides)]
    for phase, what in PHASES:
        lines.append(f"| {phase} | {what} | " + " | ".join(_cell(summary[s]["phases"][phase]) for s in sides) + " |")
    lines.append("| **total** (probed) | spawn to AVAILABLE | "
                 + " | ".join(_cell(summary[s]["phases"]["total"]) for s in sides) + " |")
    lines.append("| total less `tensorflow` | what is not TensorFlow's import | "
                 + " | ".join(_cell(summary[s]["not_tensorflow"]) for s in sides) + " |")
    lines.append("| **zoo-serve ready** | the console script, spawn to AVAILABLE | "
                 + " | ".join(_cell(summary[s]["ready"]) for s in sides) + " |")
    loads = [x["load_average"][0] for s in sides for x in samples[s]["load"]]
    niced = [x["niced_cpu_percent"] for s in sides for x in samples[s]["load"]]
    lines += ["", f"Background load while measuring: 1-minute load average {min(loads):.1f}-{max(loads):.1f} "
              f"(at the end {end_load['load_average']}); processes at nice > 0 (a background study) had used "
              f"{min(niced)}-{max(niced)}% of one core over their lives (ps %CPU); "
              f"{_common.usable_cores()} usable cores."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
