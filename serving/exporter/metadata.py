"""What an exported version carries besides the SavedModel, in its `assets.extra/` folder:

    <version>/assets.extra/zoo.json                      cnn-zoo's metadata (rule, filters, classes...)
    <version>/assets.extra/tf_serving_warmup_requests    TF Serving's warmup (TFRecord of PredictionLog)
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

ASSETS_EXTRA = "assets.extra"
METADATA_FILENAME = "zoo.json"
WARMUP_FILENAME = "tf_serving_warmup_requests"


def metadata_path(version_path: str | os.PathLike) -> Path:
    return Path(version_path) / ASSETS_EXTRA / METADATA_FILENAME


def warmup_path(version_path: str | os.PathLike) -> Path:
    return Path(version_path) / ASSETS_EXTRA / WARMUP_FILENAME


def read_metadata(version_path: str | os.PathLike) -> dict[str, Any]:
    """The zoo.json metadata of an exported version; ValueError naming the file when it is missing,
    unreadable or not a JSON object (callers that can do without it catch ValueError only)."""
    path = metadata_path(version_path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read model metadata {str(path)!r}: {exc.strerror}") from None
    except (ValueError, RecursionError) as exc:  # bad JSON or UTF-8
        raise ValueError(f"model metadata {str(path)!r} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"model metadata {str(path)!r} must hold a JSON object, got {type(data).__name__}")
    return data


def write_metadata(version_path: str | os.PathLike, info: dict[str, Any]) -> Path:
    """Write zoo.json into a version folder (still the export's temporary folder: not atomic)."""
    path = metadata_path(version_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


__all__ = ["ASSETS_EXTRA", "METADATA_FILENAME", "WARMUP_FILENAME", "metadata_path", "warmup_path",
           "read_metadata", "write_metadata"]
