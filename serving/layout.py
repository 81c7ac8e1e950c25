"""Atomic file writes: what every writer of a file that a server or a search may be reading uses.

The on-disk format of served models has one module per part: `serving.versions` (version
folders), `serving.metadata` (assets.extra: zoo.json and the warmup file), `serving.model_server_config`
(models.config) and `serving.batching_parameters` (the batching parameters file).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` through a temporary file and a rename, so a poller never reads half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


__all__ = ["write_atomic"]
