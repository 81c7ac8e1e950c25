"""Holding Ctrl-C while a file that a resume reads is being written."""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

__all__ = ["sigint_deferred"]


@contextlib.contextmanager
def sigint_deferred() -> Iterator[None]:
    """Hold Ctrl-C until the block ends: keras-tuner writes oracle.json and trial.json in place,
    so an interrupt in the middle of a write left a project that could not be resumed."""
    # Not from a worker thread (signal handlers belong to the main thread), and not where Ctrl-C
    # is ignored (a background job): holding it must not start delivering it.
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is signal.SIG_IGN):
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received:
            raise KeyboardInterrupt
