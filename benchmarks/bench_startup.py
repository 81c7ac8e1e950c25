"""Start-up time of each console script: this checkout against a baseline commit.

    python benchmarks/bench_startup.py [--baseline REF] [--rounds N] [--quick]

Each case is one fresh process of an installed console script (`zoo-query`, `zoo-serve`,
`zoo-export`, `zoo-tune`), timed from spawn to exit; `serve-ready` times `zoo-serve` from spawn
to its first AVAILABLE answer on the REST status route. The baseline is the same scripts run on
`git archive REF` (PYTHONPATH puts that tree ahead of the editable install), so both sides use one
virtualenv and one page cache. Sides alternate within each round and the order flips every round,
so load from other work on the machine falls on both. The status and predict cases ask a real
`python -m serving` started here. Headline per case: median over rounds of now / baseline, with
its interquartile range; the raw seconds of both sides are in the JSON's details.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from io import BytesIO
from pathlib import Path

import _common

from cnnzoo.net import free_ports
from serving import Client
from serving.server.process import ServerProcess

BIN = Path(sys.executable).parent
DIGITS = _common.ROOT / "saved_models" / "digits"
DEFAULT_BASELINE = "5801073"  # the commit before the client path was made lazy
# Flags renamed since the default baseline (one CLI vocabulary): the baseline side is given its
# own spelling, so both sides run the same command and neither prints a deprecation warning.
BASELINE_SPELLINGS = {"--model-name": "--model"}

# id -> (what, argv with {rest} {grpc} {npz} placeholders); None = special-cased below
CASES: dict[str, tuple[str, list[str] | None]] = {
    "query-help": ("zoo-query --help", ["zoo-query", "--help"]),
    "query-rest-status": ("zoo-query --rest URL --model-name digits status",
                          ["zoo-query", "--rest", "{rest}", "--model-name", "digits", "status"]),
    "query-grpc-status": ("zoo-query --server HOST:PORT --model-name digits status",
                          ["zoo-query", "--server", "{grpc}", "--model-name", "digits", "status"]),
    "query-rest-npz": ("zoo-query --rest URL --model-name digits --npz digits_test.npz (270 images)",
                       ["zoo-query", "--rest", "{rest}", "--model-name", "digits", "--npz", "{npz}"]),
    "query-grpc-npz": ("zoo-query --server HOST:PORT --model-name digits --npz digits_test.npz",
                       ["zoo-query", "--server", "{grpc}", "--model-name", "digits", "--npz", "{npz}"]),
    "serve-help": ("zoo-serve --help", ["zoo-serve", "--help"]),
    "export-help": ("zoo-export --help", ["zoo-export", "--help"]),
    "tune-help": ("zoo-tune --help", ["zoo-tune", "--help"]),
    "serve-ready": ("zoo-serve --model_name digits ... until GET /v1/models/digits is AVAILABLE", None),
}


def baseline_tree(ref: str, into: Path) -> str:
    """Extract `git archive ref` into `into`; returns the full commit hash."""
    commit = subprocess.run(["git", "rev-parse", "--verify", f"{ref}^{{commit}}"], cwd=_common.ROOT,
                            capture_output=True, text=True, check=True).stdout.strip()
    archive = subprocess.run(["git", "archive", commit], cwd=_common.ROOT, capture_output=True,
                             check=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return commit


def env_for(tree: Path) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(tree), TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("PYTHONSTARTUP", None)
    return env


def run_once(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    start = time.perf_counter()
    result = subprocess.run([str(BIN / argv[0]), *argv[1:]], env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, timeout=300)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {result.returncode}: {result.stderr[-1500:]}")
    return elapsed


def serve_ready(env: dict[str, str], cwd: Path) -> float:
    """Seconds from spawning zoo-serve to the first 200 AVAILABLE on the REST status route."""
    grpc_port, rest_port = free_ports(2)
    url = f"http://127.0.0.1:{rest_port}/v1/models/digits"
    start = time.perf_counter()
    proc = subprocess.Popen([str(BIN / "zoo-serve"), "--port", str(grpc_port), "--rest_api_port",
                             str(rest_port), "--model_name", "digits", "--model_base_path", str(DIGITS),
                             "--file_system_poll_wait_seconds", "0"],
                            env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_available(proc, url, start)
        return time.perf_counter() - start
    except RuntimeError as exc:
        raise RuntimeError(f"{exc}: {proc.stderr.read()[-1500:]!r}") from None
    finally:
        stop(proc)


def wait_available(proc: subprocess.Popen, url: str, start: float, timeout_s: float = 180) -> float:
    """Poll the REST status route `url` every 20 ms until it answers AVAILABLE; the wall clock
    (time.time()) of that answer. RuntimeError when `proc` exits first or after `timeout_s`."""
    while time.perf_counter() - start < timeout_s:
        if proc.poll() is not None:
            raise RuntimeError(f"zoo-serve exited {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:
                if b"AVAILABLE" in answer.read():
                    return time.time()
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.02)
    raise RuntimeError(f"zoo-serve was not AVAILABLE within {timeout_s} s")


def stop(proc: subprocess.Popen, grace_s: float = 20) -> None:
    """SIGTERM, then SIGKILL after `grace_s`: a benchmark never leaves a server behind."""
    proc.terminate()
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def start_server(work: Path) -> tuple[ServerProcess, dict[str, str]]:
    """The server the status/predict cases ask (this checkout's, the same for both sides)."""
    server = ServerProcess(work, ["--model_name", "digits", "--model_base_path", str(DIGITS),
                                  "--file_system_poll_wait_seconds", "0"], env=env_for(_common.ROOT))
    server.start(timeout=180)
    with Client(server.target, timeout=30) as client:
        client.wait_until_available("digits", timeout=180)
    return server, {"rest": server.rest_url, "grpc": server.target}


def write_npz(path: Path) -> None:
    """digits' test split as floats in [0, 1] (both sides' zoo-query read those alike)."""
    import numpy as np
    import zoo
    data = zoo.datasets.load("digits")
    np.savez(path, x_test=data.x_test, y_test=data.y_test)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="start-up time of the console scripts, now vs a baseline")
    parser.add_argument("--baseline", default=DEFAULT_BASELINE, help=f"git ref (default {DEFAULT_BASELINE})")
    parser.add_argument("--rounds", type=int, default=7, help="rounds per case (default 7; --quick 2)")
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated case ids")
    run = _common.Run("startup", "Console-script start-up: this checkout vs a baseline commit",
                      __doc__.split("\n\n", 2)[2].strip(), argv, parser)
    args = run.args
    rounds = 2 if run.quick else args.rounds
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in cases if c not in CASES]
    if unknown or rounds < 1:
        parser.error(f"unknown cases {unknown} (valid: {list(CASES)})" if unknown else "--rounds must be >= 1")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=_common.ROOT, capture_output=True,
                          text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=_common.ROOT,
                                capture_output=True, text=True).stdout.strip())
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        work = Path(tmp)
        base = work / "baseline"
        base.mkdir()
        base_commit = baseline_tree(args.baseline, base)
        write_npz(work / "digits_test.npz")
        server, where = start_server(work)
        sides = {"baseline": (env_for(base), base), "now": (env_for(_common.ROOT), _common.ROOT)}
        times: dict[str, dict[str, list[float]]] = {c: {"baseline": [], "now": []} for c in cases}
        try:
            for r in range(rounds):
                order = ["baseline", "now"] if r % 2 == 0 else ["now", "baseline"]
                for case in cases:
                    template = CASES[case][1]
                    for side in order:
                        env, cwd = sides[side]
                        if template is None:
                            seconds = serve_ready(env, cwd)
                        else:
                            argv_ = [a.format(npz=work / "digits_test.npz", **where) for a in template]
                            if side == "baseline":
                                argv_ = [BASELINE_SPELLINGS.get(a, a) for a in argv_]
                            seconds = run_once(argv_, env, cwd)
                        times[case][side].append(seconds)
                print(f"[startup] round {r + 1}/{rounds}: " + ", ".join(
                    f"{c} {times[c]['baseline'][-1]:.2f}->{times[c]['now'][-1]:.2f} s" for c in cases), flush=True)
        finally:
            server.stop()
    load_end = [round(v, 2) for v in os.getloadavg()]
    for case in cases:
        b, n = times[case]["baseline"], times[case]["now"]
        sb, sn = _common.summarize(b), _common.summarize(n)
        run.add(_common.check(
            f"U-{case}", f"start-up of `{CASES[case][0]}`, now vs baseline (informative)",
            value=sn["p50"], limit=sb["p50"], ratios=[x / y for x, y in zip(n, b)], target=1.0,
            direction="<=", unit="s", value_name="now", limit_name=f"baseline {base_commit[:7]}",
            extra={"informative": True}))
        run.details[case] = {"command": CASES[case][0], "baseline_s": b, "now_s": n,
                             "baseline": sb, "now": sn}
    run.details["baseline_commit"] = base_commit
    run.details["now_commit"] = head + (" (with uncommitted changes)" if dirty else "")
    run.details["load_average_at_end"] = load_end
    run.details["rounds"] = rounds
    rows = "\n".join(
        f"| {c} | `{CASES[c][0]}` | {run.details[c]['baseline']['p50']:.2f} "
        f"[{run.details[c]['baseline']['min']:.2f}-{run.details[c]['baseline']['max']:.2f}] | "
        f"{run.details[c]['now']['p50']:.2f} [{run.details[c]['now']['min']:.2f}-{run.details[c]['now']['max']:.2f}] |"
        for c in cases)
    extra = (f"Baseline {base_commit[:7]}, now {run.details['now_commit'][:7]}"
             f"{' (with uncommitted changes)' if dirty else ''}; {rounds} rounds; load average at end "
             f"{load_end}.\n\n| case | command | baseline s, median [min-max] | now s, median [min-max] |\n"
             f"|---|---|---|---|\n{rows}\n")
    run.finish(extra)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
