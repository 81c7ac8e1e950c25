"""Loopback ports for local servers, workers and tests."""
from __future__ import annotations

import socket
from collections.abc import Sequence

__all__ = ["free_port", "free_ports"]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on `host` now (another process may still take it before use)."""
    return free_ports(1, host)[0]


def free_ports(n: int, host: str = "127.0.0.1", preferred: Sequence[int] = ()) -> list[int]:
    """`n` distinct free TCP ports on `host`, all held open until every one is chosen.

    `preferred[i]`, when given, non-zero and free, is taken for the i-th port (a server's
    well-known port such as 8500); otherwise the system picks one."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for i, s in enumerate(socks):
            wanted = preferred[i] if i < len(preferred) else 0
            try:
                s.bind((host, wanted))
            except OSError:
                if not wanted:
                    raise
                s.bind((host, 0))  # taken (or not ours to take): any free port instead
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()
