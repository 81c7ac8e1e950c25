"""Atomic file writes: a reader (a server polling its config, a resumed run) never sees half a file.

Every writer goes through a temporary file in the same folder and `os.replace`, which is atomic on
POSIX and Windows; the temporary file is removed when writing fails.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator

__all__ = ["atomic_open", "write_atomic", "write_json_atomic"]


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, *, newline: str | None = None) -> Iterator[IO[str]]:
    """A text file opened for writing that replaces `path` only when the block ends without error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline=newline) as fh:
            yield fh
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; other readers (a server's user) need to read it
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` atomically (UTF-8)."""
    with atomic_open(path) as fh:
        fh.write(text)


def write_json_atomic(path: str | os.PathLike, data: Any, *, indent: int | None = 1, **kwargs: Any) -> None:
    """Write `data` as JSON (one trailing newline) to `path` atomically."""
    write_atomic(path, json.dumps(data, indent=indent, **kwargs) + "\n")
