"""The embedded server as a child process: `python -m serving ARGS` on free loopback ports.

Used wherever a program needs a real server of its own (the demo, benchmarks, tests): it is ready
when it prints its `zoo-serve ready` line, its output goes to a log file, and it stops with
SIGTERM (SIGKILL after a grace).

    with ServerProcess(workdir, ["--model_config_file=models.config"]) as server:
        client = serving.Client(server.target)
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any, Mapping, Sequence

from cnnzoo.net import free_ports

__all__ = ["ServerProcess", "READY_LINE"]

READY_LINE = "zoo-serve ready"


class ServerProcess:
    """`python -m serving ARGS` with free ports; output in `<workdir>/<name>.log`.

    `restart` (after `kill9`) starts the same command line again on the same ports.
    """

    def __init__(self, workdir: str | os.PathLike, args: Sequence[str], *, rest: bool = True,
                 name: str = "server", env: Mapping[str, str] | None = None,
                 host: str = "127.0.0.1", preferred_ports: Sequence[int] = (),
                 new_session: bool = False) -> None:
        """`preferred_ports` (gRPC, REST) are used where free; `new_session` keeps a terminal's
        Ctrl-C from reaching the server, so the parent stops it in its own order."""
        self.workdir = Path(workdir)
        self.host = host
        self.new_session = new_session
        ports = free_ports(2 if rest else 1, host, preferred=preferred_ports)
        self.grpc_port = ports[0]
        self.rest_port = ports[1] if rest else None
        self.argv = [sys.executable, "-m", "serving", f"--port={self.grpc_port}", *args]
        if rest:
            self.argv.append(f"--rest_api_port={self.rest_port}")
        self.name = name
        self.env = dict(os.environ if env is None else env, PYTHONUNBUFFERED="1")
        self.starts = 0
        self.proc: subprocess.Popen | None = None
        self.log_path = self.workdir / f"{name}.log"
        self._log: IO[str] | None = None
        self._offset = 0

    @property
    def target(self) -> str:
        """The gRPC address, host:port."""
        return f"{self.host}:{self.grpc_port}"

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.rest_port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    def start(self, timeout: float = 120.0) -> ServerProcess:
        """Start the server and wait until it is ready (RuntimeError with its log otherwise)."""
        self.starts += 1
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "a", encoding="utf-8")
        self._log.write(f"\n=== start {self.starts}: {' '.join(self.argv)}\n")
        self._log.flush()
        self._offset = self.log_path.stat().st_size
        self.proc = subprocess.Popen(self.argv, cwd=self.workdir, env=self.env, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=self.new_session)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if READY_LINE in self.log()[self._offset:]:
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"server did not become ready: {' '.join(self.argv)}\n{self.log()[-3000:]}")

    restart = start

    def log(self) -> str:
        """Everything the server printed so far (all starts)."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def kill9(self) -> None:
        assert self.proc is not None, "not started"
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._close_log()

    def stop(self, grace: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL after `grace` seconds; returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        self._close_log()
        return self.proc.returncode

    def _close_log(self) -> None:
        if self._log is not None and not self._log.closed:
            self._log.close()

    def __enter__(self) -> ServerProcess:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
