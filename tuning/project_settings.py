"""The settings a project was made with, saved beside keras-tuner's files, so that a rerun resumes
only the search it would repeat (a different budget or epoch count would mix two searches)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from cnnzoo.files import write_atomic
__all__ = ["check_settings", "save_settings"]


def check_settings(path: Path, settings: Mapping[str, Any], *, overwrite: bool,
                   error: type[Exception] = ValueError) -> None:
    """Raise `error` naming every difference when `path` holds other settings (nothing to resume,
    or `overwrite`: no check)."""
    if overwrite or not path.exists():
        return
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(saved, dict):
            raise ValueError
    except (OSError, ValueError):
        raise error(f"{path} is unreadable; pass --overwrite to start the project over") from None
    current = json.loads(json.dumps(settings))  # as it would be saved: tuples become lists
    # Keys in backticks: a CLI's flag_words names them as its flags (`epochs` -> --epochs).
    diff = [f"`{k}`: {saved.get(k)!r} -> {v!r}" for k, v in current.items() if saved.get(k) != v]
    if diff:
        raise error(f"project {str(path.parent)!r} was made with other settings "
                    f"({'; '.join(diff)}); pass --overwrite or choose another --project")


def save_settings(path: Path, settings: Mapping[str, Any]) -> None:
    write_atomic(path, json.dumps(dict(settings), indent=1) + "\n")
