"""Deadlines that stop the model: TensorFlow work past its request's deadline is cancelled in TF.

TF Serving passes each request's deadline into the session run (`RunOptions.timeout_in_ms`,
`--enforce_session_run_timeout`, default true), so a client that gave up does not keep a thread
and cores busy. Here a run inside `bounded(deadline)` gets a TensorFlow CancellationManager, and
one watchdog thread calls `start_cancel()` on it when the deadline passes: TF's executor then
stops scheduling the function's ops (a loop stops at its next iteration) and the call raises,
which `bounded` turns into DEADLINE_EXCEEDED. An op already running (one long kernel, a blocking
read) finishes first: cancellation acts between ops.

TensorFlow reads the active CancellationManager from one module global
(`tensorflow.python.eager.cancellation.context()`, set by `CancellationManagerContext`), which is
not safe with concurrent requests: `install()` makes it per-thread (falling back to the global,
so TensorFlow's own users of it are unchanged).
"""
from __future__ import annotations

import contextlib
import heapq
import itertools
import threading
import time
from typing import Any, Iterator

import grpc

from serving.errors import ServingError

__all__ = ["bounded", "deadline_exceeded", "latest"]

_local = threading.local()
_installed = False
_install_lock = threading.Lock()


def deadline_exceeded(detail: str = "Deadline exceeded") -> ServingError:
    return ServingError(grpc.StatusCode.DEADLINE_EXCEEDED, detail)


def latest(deadlines: Any) -> float | None:
    """The last of several requests' deadlines (None if any has none): a shared run (a batch) is
    stopped only once every request in it has given up, as TF Serving's batch uses the largest."""
    out = None
    for d in deadlines:
        if d is None:
            return None
        out = d if out is None else max(out, d)
    return out


def install() -> None:
    """Make TensorFlow's active CancellationManager per thread (idempotent)."""
    global _installed
    with _install_lock:
        if _installed:
            return
        from tensorflow.python.eager import cancellation

        shared = cancellation.context

        def context() -> Any:
            manager = getattr(_local, "manager", None)
            return manager if manager is not None else shared()

        cancellation.context = context
        _installed = True


class _Run:
    """One bounded run: its CancellationManager, and whether the watchdog cancelled it (TF also
    cancels a manager itself when a run fails, so `is_cancelled` does not say why)."""

    __slots__ = ("manager", "expired")

    def __init__(self, manager: Any) -> None:
        self.manager = manager
        self.expired = False


class _Watchdog:
    """One daemon thread that cancels managers whose deadline passed (a heap, lazily pruned)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Any]] = []
        self._live: set[int] = set()
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None

    def add(self, deadline: float, run: _Run) -> int:
        with self._cond:
            key = next(self._ids)
            heapq.heappush(self._heap, (deadline, key, run))
            self._live.add(key)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="deadlines", daemon=True)
                self._thread.start()
            if self._heap[0][1] == key:  # a new earliest deadline: the thread must wake sooner
                self._cond.notify()
            return key

    def remove(self, key: int) -> None:
        with self._cond:
            self._live.discard(key)
            # prune finished entries from the top, and everything when most entries are finished
            while self._heap and self._heap[0][1] not in self._live:
                heapq.heappop(self._heap)
            if len(self._heap) > 64 and len(self._live) < len(self._heap) // 2:
                self._heap = [e for e in self._heap if e[1] in self._live]
                heapq.heapify(self._heap)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._heap:
                    self._cond.wait()
                deadline, key, run = self._heap[0]
                wait = deadline - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
                if key in self._live:
                    run.expired = True
                else:
                    continue
            run.manager.start_cancel()


_watchdog = _Watchdog()


@contextlib.contextmanager
def bounded(deadline: float | None) -> Iterator[None]:
    """TensorFlow calls in this block (this thread) are cancelled at `deadline` (time.monotonic()
    seconds; None = never), and then raise DEADLINE_EXCEEDED. Past the deadline already, nothing runs."""
    if deadline is None:
        yield
        return
    if time.monotonic() >= deadline:
        raise deadline_exceeded()
    install()
    from tensorflow.python.eager import cancellation

    run = _Run(cancellation.CancellationManager())
    outer = getattr(_local, "manager", None)
    key = _watchdog.add(deadline, run)
    _local.manager = run.manager
    try:
        yield
    except Exception:  # TF's error for a cancelled run (CANCELLED, ABORTED; perhaps translated)
        if run.expired:
            raise deadline_exceeded() from None
        raise
    finally:
        _local.manager = outer
        _watchdog.remove(key)
