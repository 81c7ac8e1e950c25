"""Local chief/worker runs: one command starts keras-tuner's chief and N workers on 127.0.0.1.

keras-tuner distributes a search through three environment variables (KERASTUNER_TUNER_ID,
KERASTUNER_ORACLE_IP, KERASTUNER_ORACLE_PORT): the chief serves the oracle, each worker asks it
for trials. `run_workers` starts the same command in those roles as child processes, each with
cores / N TensorFlow threads (small CNNs train faster as N one-thread processes than as one
N-thread process), waits for them, and on Ctrl-C stops them all; finished trials stay recorded
and the same command resumes. Shared by `zoo-tune` and `zoo-compare`.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Sequence

from cnnzoo.cli import EXIT_INTERRUPTED
from cnnzoo.net import free_port

__all__ = ["run_workers", "is_distributed_process"]

_STOP_GRACE_S = 10.0


def is_distributed_process() -> bool:
    """True in a chief or worker started with keras-tuner's variables (by us or by hand)."""
    return bool(os.environ.get("KERASTUNER_TUNER_ID"))


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _stop(procs: Sequence[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    deadline = time.monotonic() + _STOP_GRACE_S
    for p in procs:
        try:
            p.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def run_workers(module: str, argv: Sequence[str], workers: int) -> int:
    """Run `python -m module *argv` as keras-tuner's chief plus `workers` workers; the exit code
    is the chief's (or the first failing worker's)."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive int, got {workers!r}")
    base = dict(os.environ, KERASTUNER_ORACLE_IP="127.0.0.1", KERASTUNER_ORACLE_PORT=str(free_port()),
                ZOO_TF_THREADS=str(max(_cores() // workers, 1)), PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", module, *argv]
    procs = [subprocess.Popen(cmd, env=dict(base, KERASTUNER_TUNER_ID="chief"))]
    try:
        procs += [subprocess.Popen(cmd, env=dict(base, KERASTUNER_TUNER_ID=f"tuner{i}"))
                  for i in range(workers)]
        while True:
            codes = [p.poll() for p in procs]
            failed = [c for c in codes[1:] if c not in (None, 0)]
            if codes[0] is not None or failed:
                if failed or codes[0]:
                    _stop(procs)
                    return (codes[0] or 0) or failed[0]
                # The chief ends once every worker has been told to stop; give them their grace.
                _stop(procs[1:])
                return 0
            time.sleep(0.5)
    except KeyboardInterrupt:
        _stop(procs)
        return EXIT_INTERRUPTED
